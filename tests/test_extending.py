"""The doc's worked example (docs/architecture.md: the attention-entropy metric), added the documented way — a
package of its own declaring a `gatelens.metrics` entry point — and then, without touching any gatelens file:
its command, compare (a plain model; a soft-capped and a learned-sink model, where it is skipped with a note),
figures for a group that names it, and one training evaluation that logs it."""

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatelens import metrics
from gatelens.cli import app

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


@pytest.fixture
def entropy(tmp_path, monkeypatch):
    """The doc's module as an installed package with an entry point, found by metrics.discover()."""
    text = DOC.read_text()
    code = re.search(r"### Adding a metric: a worked example.*?```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("from ..kernels import", "from gatelens.kernels import").replace(
        "from .base import", "from gatelens.metrics.base import")             # a package of its own: absolute imports
    site = tmp_path / "site"
    (site / "gl_entropy").mkdir(parents=True)
    (site / "gl_entropy" / "__init__.py").write_text(code)
    info = site / "gl_entropy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gl-entropy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text('[gatelens.metrics]\nentropy = "gl_entropy:Entropy"\n'.replace('"', ""))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(metrics, "METRICS", dict(metrics.METRICS))     # restored after the test
    for mod in [m for m in sys.modules if m.startswith("gl_entropy")]:
        monkeypatch.delitem(sys.modules, mod)
    import gatelens.compare
    import gatelens.measure
    import gatelens.train.trainer
    for module in (gatelens.measure, gatelens.compare):
        monkeypatch.setattr(module, "METRICS", metrics.METRICS)
    assert metrics.discover() == ["entropy"]
    return metrics.METRICS["entropy"]


def _ok(*argv):
    r = CliRunner().invoke(app, [str(a) for a in argv])
    assert r.exit_code == 0, r.output + r.stderr
    return r


def test_its_command(entropy, tmp_path):
    out = tmp_path / "m"
    r = _ok("measure", "entropy", "mech-baseline", "--n-seqs", 2, "--seq-len", 64, "--out", out)
    d = json.loads((out / "entropy.json").read_text())
    assert 0 < d["summary"]["entropy"] < 6                      # nats over at most 64 keys: below ln 64
    assert {p.name for p in out.iterdir()} >= {"entropy_heads.csv", "entropy_layers.csv", "entropy_entropy.png"}
    assert "entropy of mech-baseline" in r.output


def test_compare_on_a_plain_model_and_with_a_note_where_it_is_not_exact(entropy, tmp_path):
    from gatelens import coverage

    out = tmp_path / "c"
    r = _ok("compare", "mech-baseline", "mech-gated", "--n-seqs", 2, "--seq-len", 64, "--out", out)
    d = json.loads((out / "compare.json").read_text())
    assert all(0 < m["entropy"] < 6 for m in d["models"]) and "attention entropy (nats)" in r.output
    gemma = coverage.build_tiny("gemma2", tmp_path / "gemma2")        # soft-capped logits
    oss = coverage.build_tiny("gpt_oss", tmp_path / "gpt_oss")        # learned sink logits
    r = _ok("compare", gemma, oss, "--n-seqs", 2, "--seq-len", 24, "--out", tmp_path / "c2")
    d = json.loads((tmp_path / "c2" / "compare.json").read_text())
    assert [m["entropy"] for m in d["models"]] == [None, None] and d["models"][0]["f_attn"] is not None
    words = " ".join(r.output.split())
    assert "entropy not measured (not exact with softcap attention)" in words
    assert "entropy not measured (not exact with learned sink attention)" in words
    assert d["details"][1]["skipped"] == {"entropy": "not exact with learned sink attention"}


def test_figures_for_a_group_that_names_it(entropy, tmp_path):
    root = tmp_path / "proj"
    (root / "analyses").mkdir(parents=True)
    (root / "analyses" / "metrics.py").write_text((DOC.parent.parent / "analyses" / "metrics.py").read_text())
    (root / "figures.toml").write_text('out = "figs"\nanalyses = ["metrics"]\n[[group]]\nname = "g"\n'
                                       'models = ["mech-baseline"]\nseq_len = 64\nn_seqs = 2\nmetrics = ["entropy"]\n')
    _ok("figures", "--config", root / "figures.toml")
    made = {p.name for p in (root / "figs").iterdir()}
    assert {"g_mech-baseline_entropy_heads.csv", "g_mech-baseline_entropy_entropy.png"} <= made


def test_one_training_evaluation_logs_it(entropy, tmp_path):
    import csv

    from gatelens.train import TrainConfig, train

    cfg = TrainConfig(out=str(tmp_path / "t"), data="bigram-backcopy", task_params={"vocab": 16, "n_triggers": 3},
                      d_model=32, n_layers=1, n_heads=2, ffn=64, seq_len=32, batch_size=4, steps=2, eval_every=2,
                      eval_seqs=2, warmup_steps=1)
    train(cfg)
    rows = list(csv.DictReader(open(tmp_path / "t" / "train_log.csv")))
    assert 0 < float(rows[-1]["entropy_entropy"]) < 4             # ln 32 = 3.47 at most


def test_a_broken_third_party_metric_is_one_line_not_a_crash(tmp_path, monkeypatch, caplog):
    site = tmp_path / "site"
    info = site / "gl_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gl-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[gatelens.metrics]\nbroken = gl_broken_missing:Nope\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(metrics, "METRICS", dict(metrics.METRICS))
    with pytest.raises(metrics.GatelensError, match="metric 'broken' .* failed to load: ModuleNotFoundError"):
        metrics.discover()
    with caplog.at_level("WARNING", logger="gatelens"):
        assert metrics.discover(strict=False) == []
    assert [r.getMessage().count("\n") for r in caplog.records] == [0] and "broken" not in metrics.METRICS
