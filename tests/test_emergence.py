"""Sink emergence across training: the checkpoints a run keeps, each measured like any model."""

import json

import pytest
import torch

import gatelens
from gatelens.emergence import checkpoints, emergence
from gatelens.measure import massive, sink
from gatelens.train import TrainConfig, train

TINY = dict(data="bigram-backcopy", task_params={"vocab": 16, "n_triggers": 3}, d_model=32, n_layers=1, n_heads=2,
            ffn=64, seq_len=32, batch_size=4, steps=6, eval_every=3, eval_seqs=2, warmup_steps=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("emergence")
    for gate in ("none", "elementwise"):
        train(TrainConfig(out=str(root / gate), gate=gate, ckpt_every=3, keep_checkpoints=True, **TINY))
    return root


def test_a_run_keeps_step_zero_and_every_checkpoint(runs):
    got = checkpoints(runs / "none")
    assert [(s, t) for s, t, _ in got] == [(0, 0), (3, 3 * 4 * 32), (6, 6 * 4 * 32)]
    last = got[-1][2]
    final = runs / "none"
    # the last checkpoint is the final model: same weights
    a = gatelens.load(str(last)).model.state_dict()
    b = gatelens.load(str(final)).model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((last / "checkpoint.json").read_text()) == {"step": 6, "tokens": 768}


def test_emergence_rows_equal_each_checkpoint_measured_alone(runs):
    r = emergence([str(runs / "none"), str(runs / "elementwise")], seq_len=32, n_seqs=2)
    df = r.to_frame()
    assert list(df["run"]) == ["none"] * 3 + ["elementwise"] * 3 and list(df["step"]) == [0, 3, 6] * 2
    for (step, _, folder), row in zip(checkpoints(runs / "elementwise"), df[df.run == "elementwise"].itertuples()):
        s, m = sink(str(folder), seq_len=32, n_seqs=2), massive(str(folder), seq_len=32, n_seqs=2)
        assert row.step == step and row.f_attn == pytest.approx(s.f_attn, abs=1e-9)
        assert row.m_act == pytest.approx(m.m_act, rel=1e-9) and 0 < row.mean_gate < 1
    assert df[df.run == "none"]["mean_gate"].isna().all()
    assert df["f_attn"].nunique() > 1                                 # training moved it: the curve is not flat


def test_a_plain_model_spec_is_one_point(runs):
    r = emergence(["mech-baseline"], seq_len=64, n_seqs=2)
    assert len(r.rows) == 1 and r.rows[0]["step"] is None and r.rows[0]["run"] == "mech-baseline"


def test_emergence_command_writes_figure_and_json(runs, tmp_path):
    from typer.testing import CliRunner

    from gatelens.cli import app

    out = tmp_path / "e"
    res = CliRunner().invoke(app, ["emergence", str(runs / "none"), str(runs / "elementwise"), "--seq-len", "32",
                                   "--n-seqs", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    d = json.loads((out / "emergence.json").read_text())
    assert len(d["rows"]) == 6 and {"run", "step", "tokens", "f_attn", "m_act", "mean_gate"} <= d["rows"][0].keys()
    assert (out / "emergence.png").exists() and (out / "emergence.pdf").exists() and (out / "emergence.csv").exists()
