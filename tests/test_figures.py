"""`gatelens figures` on a tiny pair: every analysis writes PNG + PDF + CSV + provenance; reruns reproduce CSVs."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatelens.cli import app

pytestmark = pytest.mark.slow  # trains, runs notebooks or analyses, or starts processes: not in the quick tier

ROOT = Path(__file__).resolve().parents[1]


def test_figures_regenerate_identically(tiny_dir, tmp_path):
    (tmp_path / "analyses").symlink_to(ROOT / "analyses")
    models = [str(tiny_dir("qwen3")), str(tiny_dir("paper_elementwise"))]
    (tmp_path / "figures.toml").write_text(
        f'out = "figs"\nbatch_size = 2\n[[group]]\nname = "tiny"\nmodels = {models!r}\n'.replace("'", '"')
        + "seq_len = 24\nn_seqs = 3\nlengths = [12, 24]\nattn_layers = [1]\nattn_seq_len = 12\n")
    runner = CliRunner()
    r = runner.invoke(app, ["figures", "--config", str(tmp_path / "figures.toml")])
    assert r.exit_code == 0, r.output
    figs = tmp_path / "figs"
    stems = {p.stem for p in figs.glob("*.png")}
    for name in ("table", "sink_per_layer", "massive_per_layer", "attention_L1", "rank_ov", "rank_outputs",
                 "sink_vs_length", "gates_paper_elementwise_hist", "gates_paper_elementwise_heatmap"):
        assert f"tiny_{name}" in stems, name
        assert (figs / f"tiny_{name}.pdf").exists() and (figs / f"tiny_{name}.meta.json").exists()
    first = {p.name: p.read_bytes() for p in figs.glob("*.csv")}
    assert len(first) >= 8
    r = runner.invoke(app, ["figures", "--config", str(tmp_path / "figures.toml")])
    assert r.exit_code == 0
    assert {p.name: p.read_bytes() for p in figs.glob("*.csv")} == first
    import json

    whole = json.loads((figs / "MANIFEST.json").read_text())
    r = runner.invoke(app, ["figures", "--config", str(tmp_path / "figures.toml"), "--only", "rank"])
    assert r.exit_code == 0
    assert json.loads((figs / "MANIFEST.json").read_text()) == whole  # a partial run drops no entry


def test_missing_config_is_one_clean_line(tmp_path):
    r = CliRunner().invoke(app, ["figures", "--config", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "not found" in r.stderr and "Traceback" not in r.output
