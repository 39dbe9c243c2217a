"""Per-query trace (`gatelens.measure.by_query`): hand-checked split, and agreement with the streaming probes."""

import math

import pytest
import torch

import gatelens
from gatelens.measure import by_query, gates
from gatelens.metrics.queries import QueryTrace
from gatelens import tasks


def test_split_by_hand():
    t = QueryTrace(model={}, settings={}, first_token=[torch.tensor([1.0, 0.5, 0.1, 0.3]), torch.tensor([1.0, 0.2])],
                   gate=[torch.tensor([0.9, 0.8, 0.0, 0.4]), torch.tensor([0.7, 0.6])])
    s = t.split([torch.tensor([False, False, True, False]), torch.tensor([False, True])])
    assert s["selected"]["n"] == 2 and s["rest"]["n"] == 2          # query 0 never counts
    assert s["selected"]["first_token"] == pytest.approx((0.1 + 0.2) / 2)
    assert s["rest"]["first_token"] == pytest.approx((0.5 + 0.3) / 2)
    assert s["selected"]["gate"] == pytest.approx((0.0 + 0.6) / 2)
    assert s["rest"]["gate"] == pytest.approx((0.8 + 0.4) / 2)
    none = QueryTrace(model={}, settings={}, first_token=[torch.tensor([1.0, 0.5])], gate=None)
    s = none.split([torch.tensor([False, False])])
    assert math.isnan(s["selected"]["first_token"]) and s["rest"]["gate"] is None


@pytest.mark.parametrize("name", ["mech-baseline", "mech-gated"])
def test_trace_agrees_with_streaming_probes(name):
    loaded = gatelens.load(name)
    inputs = gatelens.prepare_inputs(loaded, seq_len=64, n_seqs=3)
    trace = by_query(loaded, inputs, batch_size=2)
    assert [len(t) for t in trace.first_token] == [len(x) for x in inputs.seqs]
    # 1 layer, 1 head, equal lengths: F-Attn is the plain mean over queries >= 1
    f_attn = float(torch.cat([t[1:] for t in trace.first_token]).mean())
    assert f_attn == pytest.approx(gatelens.sink(loaded, inputs).f_attn, abs=1e-6)
    if loaded.info.gated:
        mean_gate = float(torch.cat(trace.gate).mean())
        assert mean_gate == pytest.approx(gates(loaded, inputs).mean_gate, abs=1e-6)
        split = trace.split([tasks.active_queries(x, loaded.info.eval_data["params"]) for x in inputs.seqs])
        assert split["selected"]["gate"] > 10 * split["rest"]["gate"]   # the gate opens where there is work
    else:
        assert trace.gate is None
