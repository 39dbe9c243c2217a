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
                 "sink_vs_length", "gates_paper_elementwise_hist", "gates_paper_elementwise_heatmap",
                 "received_per_key", "norm_weighted", "sink_ablation"):
        assert f"tiny_{name}" in stems, name
        assert (figs / f"tiny_{name}.pdf").exists() and (figs / f"tiny_{name}.meta.json").exists()
    first = {p.name: p.read_bytes() for p in figs.glob("*.csv")}
    assert len(first) >= 8
    everything = {p.name: p.read_bytes() for p in figs.iterdir()}
    # provenance of numbers that did not change is kept (as if made elsewhere); changed numbers get a fresh one
    import json

    kept, fresh = figs / "tiny_sink_per_layer.meta.json", figs / "tiny_massive_per_layer.meta.json"
    for meta in (kept, fresh):
        m = json.loads(meta.read_text())
        m["versions"]["torch"] = "elsewhere"
        meta.write_text(json.dumps(m))
    (figs / "tiny_massive_per_layer.csv").write_text("changed\n")
    r = runner.invoke(app, ["figures", "--config", str(tmp_path / "figures.toml")])
    assert r.exit_code == 0
    assert {p.name: p.read_bytes() for p in figs.glob("*.csv")} == first
    assert json.loads(kept.read_text())["versions"]["torch"] == "elsewhere"
    assert json.loads(fresh.read_text())["versions"]["torch"] != "elsewhere"
    assert {p.name: p.read_bytes() for p in figs.iterdir() if p not in (kept, fresh)} == \
        {n: b for n, b in everything.items() if n not in (kept.name, fresh.name)}

    whole = json.loads((figs / "MANIFEST.json").read_text())
    r = runner.invoke(app, ["figures", "--config", str(tmp_path / "figures.toml"), "--only", "rank"])
    assert r.exit_code == 0
    assert json.loads((figs / "MANIFEST.json").read_text()) == whole  # a partial run drops no entry


def test_missing_config_is_one_clean_line(tmp_path):
    r = CliRunner().invoke(app, ["figures", "--config", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "not found" in r.stderr and "Traceback" not in r.output


def test_style_theme_is_seaborns_paper_whitegrid():
    """plots.style writes seaborn's theme out as rcParams (so a figure does not import seaborn); it must not drift."""
    import seaborn as sns

    from gatelens.plots import style

    want = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=0.9)}
    want.pop("image.cmap")  # seaborn's "rocket": every gatelens heatmap names its own colour map
    assert set(style.THEME) == set(want)
    for k, v in want.items():
        assert style.THEME[k] == (pytest.approx(v) if isinstance(v, float) else v), k
    assert [tuple(c) for c in style.PALETTE] == [tuple(c) for c in sns.color_palette("colorblind")]


def test_style_heatmap_cells_and_labels():
    import numpy as np

    from gatelens.plots import style

    grid = np.array([[0.1, 0.9], [np.nan, 0.5], [0.0, 1.0]])   # [layer, head]
    fig, ax = style.heatmap(grid, "viridis", "share", [0, 1, 2])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(["0.10", "0.90", "0.50", "0.00", "1.00"])   # the NaN cell stays blank
    assert ax.get_ylim() == (3.0, 0.0)   # layer 0 at the top


def test_a_figures_config_with_an_unknown_group_key_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from gatelens.cli import app

    cfg = tmp_path / "f.toml"
    cfg.write_text('[[group]]\nname = "x"\nmodels = ["mech-baseline"]\nper_sed = "a.json"\n')
    r = CliRunner().invoke(app, ["figures", "--config", str(cfg)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'per_sed'" in lines[0] and "per_seed" in lines[0]
