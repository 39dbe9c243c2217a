"""Sink contribution (value drain, norm-weighted F-Attn) against a reference built from eager patterns.

Values are read off v_proj with a plain forward hook, patterns from transformers' eager attention (or the paper
format's eager re-implementation), W_O from the weights; every statistic is recomputed from those with the full
n x n pattern and compared to the streaming probe to 1e-5."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import gatelens
from factories import HF_FAMILIES, TEXT, capturing_eager
from gatelens.measure import run_probes
from gatelens.metrics.contribution import Contribution, contribution_reference
from gatelens.models.weights import ov_weights


def test_hand_checked_value_drain():
    # one head, d = D = 1, W_O = 1; values 0 (key 0), 2, 4. Query 1: a = (0.5, 0.5): terms 0 and 1, share 0.
    p = torch.tensor([[[[1.0, 0, 0], [0.5, 0.5, 0], [0.25, 0.25, 0.5]]]])
    v = torch.tensor([0.0, 2.0, 4.0]).view(1, 1, 3, 1)
    r = contribution_reference(p, v, torch.ones(1, 1, 1), p @ v)
    assert r["f_attn"].item() == pytest.approx(0.375)
    assert r["f_attn_norm"].item() == 0.0 and r["value_ratio"].item() == 0.0 and r["first_share"].item() == 0.0
    v = torch.tensor([2.0, 2.0, 2.0]).view(1, 1, 3, 1)     # equal norms: the norm-weighted share is F-Attn
    r = contribution_reference(p, v, torch.ones(1, 1, 1), p @ v)
    assert r["f_attn_norm"].item() == pytest.approx(0.375) and r["value_ratio"].item() == 1.0


def _values(loaded, seqs, n_kv, d):
    """v_proj outputs per layer [b, kv, n, d] from a plain forward (hooks on the projections only)."""
    vals, hooks = {}, []
    for layer in loaded.info.attention_layers:
        proj = loaded.attention(layer).v_proj
        hooks.append(proj.register_forward_hook(
            lambda m, a, o, layer=layer: vals.__setitem__(layer, o.view(o.shape[0], o.shape[1], n_kv, d).transpose(1, 2))))
    with torch.no_grad():
        loaded.model(torch.stack(seqs))
    for h in hooks:
        h.remove()
    return vals


def _gates(loaded, seqs):
    from gatelens.models.gate_logits import gate_logits, hook_gates

    got = {}
    hooks = hook_gates(loaded, lambda layer: lambda m, a, o: got.__setitem__(layer, torch.sigmoid(gate_logits(loaded, o))))
    with torch.no_grad():
        loaded.model(torch.stack(seqs))
    for h in hooks:
        h.remove()
    return {k: v.transpose(1, 2) for k, v in got.items()}   # [b, h, n, g]


def _check(result, loaded, patterns, seqs, gated=False, vals=None):
    info = loaded.info
    vals = vals or _values(loaded, seqs, info.n_kv_heads, info.d_head)
    gates = _gates(loaded, seqs) if gated else {}
    lengths = torch.tensor([len(s) for s in seqs])
    for ly, pat in zip(result.layers, patterns):
        v = vals[ly.layer].repeat_interleave(info.n_heads // info.n_kv_heads, 1)
        ref = contribution_reference(pat, v, ov_weights(loaded, ly.layer)[1], pat.nan_to_num() @ v, lengths,
                                     gates.get(ly.layer))
        assert set(ref) == set(ly.heads)
        for k, want in ref.items():
            torch.testing.assert_close(torch.tensor(ly.heads[k], dtype=torch.float64), want, atol=1e-5, rtol=1e-5,
                                       msg=f"{k} of layer {ly.layer}")


@pytest.mark.parametrize("kind", HF_FAMILIES)
def test_probe_equals_eager_on_hf_models(kind, tiny_dir):
    """Every family of the table (separate, fused QKV, Conv1D, NeoX rows; sliding windows; Qwen3-Next / Qwen3.5 gates)."""
    folder = tiny_dir(kind)
    loaded = gatelens.load(str(folder))
    calls: list = []
    ref_model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=capturing_eager(calls)).eval()
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=2)
    result = run_probes(loaded, [Contribution()], inputs, batch_size=2)[0]
    with torch.no_grad():
        ref_model(torch.stack(inputs.seqs))
    assert len(calls) == len(loaded.info.attention_layers)
    pats = [w for w, _, _ in calls]
    vals = {layer: v for layer, (_, _, v) in zip(loaded.info.attention_layers, calls)}
    _check(result, loaded, pats, inputs.seqs, gated=loaded.info.gated, vals=vals)


def test_probe_equals_eager_on_the_paper_gated_format(tiny_dir):
    from safetensors.torch import load_file

    from test_models import paper_forward

    folder = tiny_dir("paper_elementwise")
    cfg = json.loads((folder / "config.json").read_text())
    loaded = gatelens.load(str(folder))
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=2)
    result = run_probes(loaded, [Contribution()], inputs, batch_size=2)[0]
    _, pats = paper_forward(load_file(str(folder / "model.safetensors")), cfg, torch.stack(inputs.seqs))
    assert "first_share_gated" in result.layers[0].heads
    _check(result, loaded, [p.float() for p in pats], inputs.seqs, gated=True)


def test_contribution_rows_and_json(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("qwen3")))
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=24, n_seqs=2)
    r = run_probes(loaded, [Contribution()], inputs, batch_size=2)[0]
    d = r.to_dict()
    assert {"f_attn", "f_attn_norm", "first_share", "value_ratio", "image_ratio"} <= d["summary"].keys()
    assert r.columns()["first_share_gated"] is None
    assert set(r.tables()) == {"contribution_heads", "contribution_layers"}
