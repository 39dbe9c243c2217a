"""docs/architecture.md is true: its worked example runs as written (a new metric is one module plus one registry
line), and every file, module and name it points at exists."""

import importlib
import pkgutil
import re
import types
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

import gatelens
from factories import TEXT
from gatelens import metrics

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
EXAMPLE = "gatelens/metrics/entropy.py"   # the worked example's new module: the doc writes it, the test execs it


def _example_module():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    module = types.ModuleType("gatelens.metrics.entropy")
    module.__package__ = "gatelens.metrics"
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    return module


def test_worked_example_metric_matches_eager_pattern_and_joins_the_registry(tiny_dir, monkeypatch):
    entropy = _example_module()
    folder = tiny_dir("llama")
    loaded = gatelens.load(str(folder))
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=3)
    got = gatelens.measure.run_probes(loaded, [entropy.Entropy()], inputs, batch_size=2)[0]
    ref = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        patterns = ref(torch.stack(inputs.seqs), output_attentions=True).attentions
    for ly, p in zip(got.layers, patterns):
        want = -(p * p.clamp(min=1e-30).log()).sum(-1).mean((0, 2))                   # [head]
        torch.testing.assert_close(torch.tensor(ly.heads["entropy"], dtype=torch.float64), want.double(), atol=1e-5, rtol=0)
    monkeypatch.setitem(metrics.METRICS, "entropy", entropy.Entropy)                  # the registry line
    standard = gatelens.measure.standard_metrics(loaded, inputs, batch_size=2)
    assert standard.entropy.overall("entropy") == got.overall("entropy")
    assert standard.row()["entropy"] == got.overall("entropy")


def _prose() -> str:
    """The doc without its Python example (which defines names of its own)."""
    return re.sub(r"```python\n.*?```", "", DOC.read_text(), flags=re.S)


def _modules() -> dict[str, list[str]]:
    """Every gatelens module by the names the doc may call it: `measure`, `discover`, `metrics.base` ..."""
    names: dict[str, list[str]] = {}
    for m in pkgutil.walk_packages(gatelens.__path__, "gatelens."):
        parts = m.name.split(".")
        for i in range(len(parts)):
            names.setdefault(".".join(parts[i:]), []).append(m.name)
    names["gatelens"] = ["gatelens"]
    return {k: [v for v in vs if v == f"gatelens.{k}"] or vs for k, vs in names.items()}   # `data`: gatelens.data


def _resolves(dotted: str, modules: dict[str, list[str]]) -> bool:
    """Whether a name that starts with a gatelens module (its longest such start) goes on as attributes of it;
    a name that starts with none (`Probe.add`, `self.acc`) is not checked here."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        for module in modules.get(".".join(parts[:n]), []):
            obj = importlib.import_module(module)
            try:
                for attr in parts[n:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                continue
            return True
        if ".".join(parts[:n]) in modules:
            return False
    return True


def test_every_file_the_architecture_doc_names_exists():
    files = set(re.findall(r"(?<![\w/<>.-])([\w/]+\.py)\b", _prose())) - {EXAMPLE}
    dirs = set(re.findall(r"`(\w+/)`", _prose()))
    assert files and dirs
    missing = [f for f in sorted(files) if not (ROOT / f).exists() and not (ROOT / "gatelens" / f).exists()
               and not any((ROOT / "gatelens").rglob(f))]
    missing += [d for d in sorted(dirs) if not (ROOT / "gatelens" / d).is_dir()]
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_every_gatelens_name_the_architecture_doc_names_exists():
    """`module.name` in backticks or in the data-flow diagram, and `module.py` (`name`, `name`, ...) lists."""
    prose, modules = _prose(), _modules()
    diagram = re.search(r"## How data flows\n+```\n(.*?)```", prose, re.S).group(1)
    chain = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+"
    dotted = set(re.findall(rf"`({chain})(?:\(\))?`", prose)) | set(re.findall(rf"(?<![\w.])({chain})", diagram))
    dotted = {d for d in dotted if d.rsplit(".", 1)[1] not in ("py", "md", "toml", "json", "csv", "txt")}
    listed = {f"{path[:-3].replace('/', '.')}.{name}"
              for path, names in re.findall(r"`([\w/]+\.py)` \(((?:`\w+`,? ?)+)", prose)
              for name in re.findall(r"`(\w+)`", names)}
    assert dotted and listed                 # the patterns still read the doc
    wrong = sorted(d for d in dotted | listed if not _resolves(d, modules))
    assert not wrong, f"docs/architecture.md names what gatelens does not have: {wrong}"
