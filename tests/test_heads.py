"""Dormant heads against a reference from eager patterns, and the head ablation against zeroed W_O columns."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import gatelens
from factories import TEXT, capturing_eager
from gatelens.ablate import ablate
from gatelens.measure import run_probes
from gatelens.metrics.heads import Heads, dormant_reference
from gatelens.models.weights import ov_weights
from test_contribution import _gates


def test_hand_checked_dormant_share():
    # two heads, 3 tokens, W_O = identity (d = D = 1). Head 0 parks query 1 on key 0 (weight 0.9) whose value is 0:
    # its output there is 0.1 * 1 = 0.1, below half the layer's mean head output, so query 1 is dormant in head 0.
    p = torch.tensor([[[[1.0, 0, 0], [0.9, 0.1, 0], [0.2, 0.3, 0.5]],
                       [[1.0, 0, 0], [0.1, 0.9, 0], [0.1, 0.1, 0.8]]]])
    v = torch.tensor([0.0, 1.0, 2.0]).view(1, 1, 3, 1).expand(1, 2, 3, 1)
    r = dormant_reference(p, v, torch.ones(2, 1, 1))
    # outputs: head 0: 0.1, 1.3; head 1: 0.9, 1.7; layer mean over heads and queries 1-2: 1.0
    assert r["dormant"].tolist() == [0.5, 0.0]
    assert r["out_norm"].tolist() == pytest.approx([0.7, 1.3])
    assert r["out_ratio"].tolist() == pytest.approx([0.7, 1.3])
    assert r["f_attn"].tolist() == pytest.approx([0.55, 0.1])


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3_next"])
def test_heads_equal_eager(kind, tiny_dir):
    folder = tiny_dir(kind)
    loaded = gatelens.load(str(folder))
    calls: list = []
    ref = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=capturing_eager(calls)).eval()
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=2)
    opts = {"sink_weight": 0.08, "output_ratio": 0.9}  # tiny random heads spread attention: thresholds that bite
    result = run_probes(loaded, [Heads(**opts)], inputs, batch_size=2)[0]
    with torch.no_grad():
        ref(torch.stack(inputs.seqs))
    gates = _gates(loaded, inputs.seqs) if loaded.info.gated else {}
    info = loaded.info
    some = 0.0
    for ly, (pat, _, val) in zip(result.layers, calls):
        v = val.repeat_interleave(info.n_heads // info.n_kv_heads, 1)
        want = dormant_reference(pat, v, ov_weights(loaded, ly.layer)[1], gate=gates.get(ly.layer), **opts)
        for k, w in want.items():
            torch.testing.assert_close(torch.tensor(ly.heads[k], dtype=torch.float64), w, atol=1e-5, rtol=1e-5,
                                       msg=f"{k} of layer {ly.layer}")
        some += float(want["dormant"].sum())
    assert some > 0                                   # some query is dormant: the comparison bites
    ranked = result.ranked()
    assert list(ranked["dormant"]) == sorted(ranked["dormant"], reverse=True)
    assert result.to_dict()["most_dormant"][0]["dormant"] == pytest.approx(float(ranked["dormant"].iloc[0]))


def test_head_ablation_equals_zeroed_output_columns(tiny_dir):
    folder = tiny_dir("qwen2")
    loaded = gatelens.load(str(folder))
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=32, n_seqs=2)
    ids = torch.stack(inputs.seqs)
    r = ablate(loaded, "head", [1], inputs=inputs, batch_size=2, heads=[0, 2])
    assert [x.layers for x in r.runs] == ["", "1.h0", "1.h2", "all"]
    d = loaded.info.d_head

    def loss(zero):
        m = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
        with torch.no_grad():
            for h in zero:
                m.model.layers[1].self_attn.o_proj.weight[:, h * d:(h + 1) * d] = 0
            logits = m(ids).logits
        return float(torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:]))

    for run, zero in zip(r.runs, ([], [0], [2], [0, 2])):
        assert run.loss == pytest.approx(loss(zero), abs=1e-5), run.layers
    assert r.runs[3].loss != pytest.approx(r.runs[0].loss, abs=1e-4)
    assert r.settings["heads"] == [0, 2]


@pytest.mark.parametrize("heads,layers,match", [(None, [1], "needs --heads"), ([0], None, "needs --layers"),
                                                 ([9], [1], "has heads 0-3")])
def test_head_ablation_refuses_in_one_line(heads, layers, match, tiny_dir):
    loaded = gatelens.load(str(tiny_dir("qwen2")))
    with pytest.raises(gatelens.GatelensError, match=match):
        ablate(loaded, "head", layers, heads=heads, n_seqs=1, seq_len=8)
    with pytest.raises(gatelens.GatelensError, match="goes with --what head"):
        ablate(loaded, "sink", [1], heads=[0], n_seqs=1, seq_len=8)
