"""Beyond one process and one device: torchrun + gloo, and an explicit accelerate device map."""

import json
import os
import subprocess
import sys

import pytest
import torch

import gatelens
from factories import TEXT

pytestmark = pytest.mark.slow  # trains, runs notebooks or analyses, or starts processes: not in the quick tier

DEVICE_MAP = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
              "model.layers.1": "disk", "model.norm": "cpu", "lm_head": "cpu"}


def _all(loaded, inputs):
    return [r for r in gatelens.measure.standard_metrics(loaded, inputs, batch_size=2).results.values() if r is not None]


@pytest.mark.parametrize("kind", ["qwen3", "paper_elementwise"])
def test_split_device_map_matches_single_device(kind, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GATELENS_CACHE", str(tmp_path))
    single = gatelens.load(str(tiny_dir(kind)))
    split = gatelens.load(str(tiny_dir(kind)), device_map=DEVICE_MAP)
    assert hasattr(split.model.model.layers[1], "_hf_hook")  # accelerate's offload hooks are in the path
    inputs = gatelens.prepare_inputs(single, text=TEXT, seq_len=40, n_seqs=4)
    a, b = _all(single, inputs), _all(split, inputs)
    for x, y in zip(a, b):
        fx, fy = pd_flat(x.to_dict()), pd_flat(y.to_dict())
        assert fx.keys() == fy.keys()
        for k in fx:
            assert fx[k] == pytest.approx(fy[k], abs=1e-5, rel=1e-5), k


def pd_flat(d, prefix=""):
    """Every number inside a result dict, keyed by its path (model/settings blocks left out)."""
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if k in ("model", "settings"):
                continue
            out.update(pd_flat(v, f"{prefix}/{k}"))
    elif isinstance(d, (list, tuple)):
        for i, v in enumerate(d):
            out.update(pd_flat(v, f"{prefix}/{i}"))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[prefix] = float(d)
    return out


def test_two_gloo_processes_match_one_process(tiny_dir, tmp_path):
    folder = str(tiny_dir("paper_headwise"))
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    args = ["compare", folder, folder, "--text", str(text), "--seq-len", "40", "--n-seqs", "5", "--batch-size", "2",
            "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "gatelens", *args, "--out", str(tmp_path / "a")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29533", "-m", "gatelens", *args, "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = pd_flat(json.loads(one.stdout)["details"]), pd_flat(json.loads(two.stdout)["details"])
    assert a.keys() == b.keys() and len(a) > 100
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-6, rel=1e-6), k
    assert torch.tensor(0).item() == 0
