import os

os.environ["HF_HUB_OFFLINE"] = "1"          # no test may touch the network
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ.setdefault("TQDM_DISABLE", "1")
if "GATELENS_CACHE" not in os.environ:  # a cache of the run's own: the suite leaves nothing in ~/.cache
    import atexit
    import shutil
    import tempfile

    os.environ["GATELENS_CACHE"] = tempfile.mkdtemp(prefix="gatelens-test-cache-")
    atexit.register(shutil.rmtree, os.environ["GATELENS_CACHE"], ignore_errors=True)

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

import factories  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Build each tiny checkpoint once per session: tiny_dir('llama') -> folder."""
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("ckpt")

    def get(kind: str) -> Path:
        if kind not in cache:
            folder = root / kind
            if kind.startswith("paper_"):
                factories.make_paper(kind.removeprefix("paper_"), folder)
            else:
                factories.make_hf(kind, folder)
            cache[kind] = folder
        return cache[kind]

    return get
