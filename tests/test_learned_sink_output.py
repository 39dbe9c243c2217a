"""Learned sinks in what users read: the `gatelens sink` heatmap and per-layer figure, the tables and `compare`."""

import json

import pytest
from typer.testing import CliRunner

from gatelens.cli import app
from gatelens import coverage
from gatelens.plots import sink as sink_plots

runner = CliRunner()


@pytest.fixture(scope="module")
def gpt_oss(tmp_path_factory):
    return coverage.build_tiny("gpt_oss", tmp_path_factory.mktemp("sinks") / "gpt_oss")


def test_sink_command_writes_the_learned_sink_beside_f_attn(tmp_path, gpt_oss):
    folder = gpt_oss
    out = tmp_path / "out"
    r = runner.invoke(app, ["sink", str(folder), "--text", _text(tmp_path), "--seq-len", "24", "--n-seqs", "2",
                            "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert 0 < d["learned_sink"] < 1
    for ext in ("png", "pdf"):
        assert (out / f"learned_sink_heatmap.{ext}").stat().st_size > 0
    heads = (out / "sink_heads.csv").read_text().splitlines()[0]
    assert "learned_sink" in heads
    assert "| learned_sink |" in (out / "sink_layers.md").read_text()


def test_per_layer_figure_draws_the_learned_sink_only_where_there_is_one(gpt_oss, tiny_dir):
    import gatelens

    with_sink = gatelens.load(str(gpt_oss))
    plain = gatelens.load(str(tiny_dir("llama")))
    text = "a sink absorbs attention. " * 20
    results = [gatelens.sink(m, gatelens.prepare_inputs(m, text=text, seq_len=24, n_seqs=2)) for m in (with_sink, plain)]
    labels = [line.get_label() for line in sink_plots.per_layer(results).axes[0].lines]
    assert sum("learned sink" in x for x in labels) == 1
    assert f"learned sink {results[0].learned_sink:.3f}" in " ".join(labels)
    assert "learned_sink_heatmap" in sink_plots.figures(results[0])
    assert "learned_sink_heatmap" not in sink_plots.figures(results[1])


def test_compare_has_a_learned_sink_column(gpt_oss, tiny_dir):
    from gatelens.compare import compare_models

    c = compare_models([str(tiny_dir("llama")), str(gpt_oss)], text="a sink absorbs attention. " * 20, seq_len=24,
                       n_seqs=2)
    df = c.to_frame()
    assert "learned_sink" in df.columns
    assert df["learned_sink"].isna().iloc[0] and 0 < df["learned_sink"].iloc[1] < 1


def _text(tmp_path):
    p = tmp_path / "text.txt"
    p.write_text("a sink absorbs attention. " * 20)
    return str(p)
