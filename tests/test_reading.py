"""gatelens.read: every command's JSON back to its result object, equal to what was measured, and plottable."""

import json

import pytest
import torch
from typer.testing import CliRunner

import gatelens
from gatelens.cli import app

M = "mech-baseline"
SMALL = ["--n-seqs", "2", "--seq-len", "64"]


def _run(tmp_path, *argv):
    out = tmp_path / argv[0]
    r = CliRunner().invoke(app, [*argv, *SMALL, "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("argv", [("sink", M), ("massive", M), ("gates", "mech-gated"), ("rank", M), ("sinks", M),
                                  ("norms", M), ("heads", M), ("ablate", M, "--what", "sink"),
                                  ("compare", M, "mech-gated")])
def test_every_command_reads_back_to_the_same_json(argv, tmp_path):
    out = _run(tmp_path, *argv)
    written = json.loads((out / f"{argv[0]}.json").read_text())
    r = gatelens.read(out)
    again = r.to_dict()
    for key in again:                                  # what the object says is what was written
        if key not in ("provenance", "files"):
            assert json.dumps(again[key], sort_keys=True, default=str) == \
                json.dumps(written[key], sort_keys=True, default=str), key


def test_sinks_read_back_plots_the_measured_profile_and_sink_score(tmp_path):
    from gatelens import plots
    from gatelens.sinks import sinks

    measured = sinks(M, seq_len=64, n_seqs=2)
    out = _run(tmp_path, "sinks", M)
    r = gatelens.read(out / "sinks.json")
    torch.testing.assert_close(r.received.profile(), measured.received.profile(), atol=1e-12, rtol=0)
    torch.testing.assert_close(r.received.sink_score(), measured.received.sink_score(), atol=1e-12, rtol=0,
                               equal_nan=True)                    # NaN: positions too late to be scored
    assert r.received.top_not_first == measured.received.top_not_first
    assert list(plots.figures(r)) == ["sinks_received", "sinks_top_not_first", "sinks_sink_score",
                                      "sinks_norm_weighted"]         # yesterday's run, drawn without measuring


def test_compare_reads_back_to_the_same_table(tmp_path):
    out = _run(tmp_path, "compare", M, "mech-gated")
    c = gatelens.read(out)
    written = json.loads((out / "compare.json").read_text())["models"]
    assert json.dumps(c.to_frame().to_dict(orient="records"), default=str) == json.dumps(written, default=str)


@pytest.mark.parametrize("make,match", [(lambda p: p, "holds no result JSON"),
                                        (lambda p: p / "nope.json", "does not exist"),
                                        (lambda p: (p / "x.json").write_text("{}") and p / "x.json", "not a result"),
                                        (lambda p: (p / "sink.json").write_text("[1") and p / "sink.json", "not a JSON"),
                                        (lambda p: (p / "sink.json").write_text("{}") and p / "sink.json",
                                         "not the JSON of `gatelens sink`")])
def test_bad_paths_are_one_line_errors(make, match, tmp_path):
    with pytest.raises(gatelens.GatelensError, match=match):
        gatelens.read(make(tmp_path))


def test_a_length_sweep_is_refused_in_one_line(tmp_path):
    out = tmp_path / "s"
    r = CliRunner().invoke(app, ["sink", M, "--n-seqs", "2", "--seq-len", "32,64", "--out", str(out)])
    assert r.exit_code == 0, r.output
    with pytest.raises(gatelens.GatelensError, match="--seq-len sweep"):
        gatelens.read(out)
