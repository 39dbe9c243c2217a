"""Acceptance on real weights: attention received per key and the sink's contribution of SmolLM2-135M against
transformers' eager attention (full patterns), 2 x 64 tokens of the evaluation sample (real text: the first token
is a sink there, delimiters collect attention too). Tolerance 1e-4, as the F-Attn acceptance test: 30 layers with
activations in the tens of thousands reach eager and SDPA through different summation orders."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import gatelens
from factories import nosink_attention
from gatelens.measure import run_probes
from gatelens.metrics.contribution import Contribution, contribution_reference
from gatelens.metrics.received import Received, received_reference
from gatelens.models.weights import ov_weights

pytestmark = [pytest.mark.acceptance, pytest.mark.slow]


def test_received_and_contribution_equal_eager(tmp_path):
    loaded = gatelens.load("smollm2-135m")
    info = loaded.info
    inputs = gatelens.prepare_inputs(loaded, seq_len=64, n_seqs=2)
    rec, con = run_probes(loaded, [Received(top_k=3), Contribution()], inputs, batch_size=2)
    ids = torch.stack(inputs.seqs)
    ref = AutoModelForCausalLM.from_pretrained(info.path, attn_implementation="eager").eval()
    vals = {}
    for i, layer in enumerate(ref.model.layers):
        layer.self_attn.v_proj.register_forward_hook(
            lambda m, a, o, i=i: vals.__setitem__(i, o.view(*o.shape[:2], info.n_kv_heads, info.d_head).transpose(1, 2)))
    with torch.no_grad():
        pats = ref(ids, output_attentions=True).attentions
    allowed = torch.ones(64, 64, dtype=torch.bool).tril()[None, None]
    assert len(rec.layers) == len(con.layers) == 30
    for i, (r, c) in enumerate(zip(rec.layers, con.layers)):
        s, n = received_reference(pats[i], allowed)
        got_s, got_n = rec.profiles[i]
        torch.testing.assert_close(got_s / got_n, (s.sum(0) / n.sum(0)), atol=1e-4, rtol=0)
        v = vals[i].repeat_interleave(info.n_heads // info.n_kv_heads, 1)
        want = contribution_reference(pats[i], v, ov_weights(loaded, i)[1], pats[i] @ v)
        for k, w in want.items():
            torch.testing.assert_close(torch.tensor(c.heads[k], dtype=torch.float64), w, atol=1e-4, rtol=1e-4,
                                       msg=f"{k} of layer {i}")


def test_sink_removal_equals_masked_eager():
    """The README's smollm2 finding (key 0 masked in layer 18 alone costs far more than in all 30 layers at once)
    is checked against transformers' eager model with the mask edited in its attention function."""
    from gatelens.ablate import ablate

    loaded = gatelens.load("smollm2-135m")
    inputs = gatelens.prepare_inputs(loaded, seq_len=64, n_seqs=2)
    ids = torch.stack(inputs.seqs)
    r = ablate(loaded, "sink", [18], inputs=inputs, batch_size=2)      # none, layer 18, all layers
    assert [x.layers for x in r.runs] == ["", "18", "all"]
    for run, layers in zip(r.runs[1:], ([18], list(range(30)))):
        ref = AutoModelForCausalLM.from_pretrained(loaded.info.path, attn_implementation=nosink_attention(layers)).eval()
        with torch.no_grad():
            logits = ref(ids).logits
        want = float(torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:]))
        assert run.loss == pytest.approx(want, abs=1e-4), run.layers


def test_sink_score_norms_and_dormant_heads_equal_eager():
    """The sink literature's measurements on real weights against references from transformers' eager forward:
    patterns, keys after RoPE, values and hidden states captured from the model itself (1e-4)."""
    from factories import capturing_eager
    from gatelens.metrics.heads import Heads, dormant_reference
    from gatelens.metrics.norms import Norms, norms_reference
    from test_received import _sink_score_reference

    loaded = gatelens.load("smollm2-135m")
    info = loaded.info
    inputs = gatelens.prepare_inputs(loaded, seq_len=64, n_seqs=2)
    rec, norms, heads = run_probes(loaded, [Received(), Norms(), Heads()], inputs, batch_size=2)
    ids = torch.stack(inputs.seqs)
    calls: list = []
    ref = AutoModelForCausalLM.from_pretrained(info.path, attn_implementation=capturing_eager(calls)).eval()
    hid = {}
    for i, layer in enumerate(ref.model.layers):
        layer.register_forward_hook(lambda m, a, o, i=i: hid.__setitem__(i, o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        ref(ids)
    lengths = torch.tensor([64, 64])
    allowed = torch.ones(64, 64, dtype=torch.bool).tril()[None, None]
    pats = [p for p, _, _ in calls]
    want = _sink_score_reference([[p[s:s + 1] for p in pats] for s in range(2)], [allowed] * 30, [64, 64], 0.3, 15)
    torch.testing.assert_close(rec.sink_score(), want, atol=1e-4, rtol=0, equal_nan=True)
    assert float(want[0]) > 0.3                                       # a real sink: the comparison bites
    for i, (p, k, v) in enumerate(calls):
        for q, x in (("hidden", hid[i][:, None]), ("key", k), ("value", v)):
            w = norms_reference(x, lengths)
            got = norms.layers[i][q]
            torch.testing.assert_close(got["position"], w["position"], atol=1e-4, rtol=1e-4, msg=f"{q} {i}")
            assert got["ratio"] == pytest.approx(float(w["ratio"]), rel=1e-4), f"{q} of layer {i}"
        vv = v.repeat_interleave(info.n_heads // info.n_kv_heads, 1)
        d = dormant_reference(p, vv, ov_weights(loaded, i)[1], lengths)
        for key, w in d.items():
            got = torch.tensor(heads.layers[i].heads[key], dtype=torch.float64)
            # a dormant share counts queries on either side of two thresholds: allow one query's flip per head
            tol = 1.5 / 63 if key == "dormant" else 1e-4
            torch.testing.assert_close(got, w, atol=tol, rtol=1e-4, msg=f"{key} of layer {i}")
    assert heads.dormant > 0.05


def test_massive_ablation_equals_edited_eager():
    """massive-zero in all layers against the eager model with the same sites (found by the massive rule on its own
    hidden states) zeroed by forward hooks."""
    from gatelens.ablate import ablate
    from test_ablate import _massive_reference

    loaded = gatelens.load("smollm2-135m")
    inputs = gatelens.prepare_inputs(loaded, seq_len=64, n_seqs=2)
    ids = torch.stack(inputs.seqs)
    r = ablate(loaded, "massive-zero", [], inputs=inputs, batch_size=2)
    clean, want, n_sites = _massive_reference(loaded.info.path, ids, range(30), "massive-zero", 100.0, 1000.0)
    assert n_sites > 0 and sum(r.settings["massive_sites"].values()) == n_sites
    assert r.runs[0].loss == pytest.approx(clean, abs=1e-4)
    assert r.runs[1].loss == pytest.approx(want, abs=1e-4) and r.runs[1].loss_change > 1.0
