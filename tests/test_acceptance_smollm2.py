"""Acceptance on real pretrained weights: SmolLM2-135M-Instruct (Llama, 30 layers, 9 heads / 3 KV)."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import gatelens
from gatelens.metrics.sink import f_attn_reference

pytestmark = [pytest.mark.acceptance, pytest.mark.slow]


@pytest.fixture(scope="module")
def smollm2():
    return gatelens.load("smollm2-135m")


def test_f_attn_per_layer_equals_hf_eager_on_8x256(smollm2):
    inputs = gatelens.prepare_inputs(smollm2, seq_len=256, n_seqs=8)
    result = gatelens.sink(smollm2, inputs, batch_size=4)
    ref = AutoModelForCausalLM.from_pretrained(smollm2.info.path, attn_implementation="eager").eval()
    ids = torch.stack(inputs.seqs)
    per_layer = []
    with torch.no_grad():
        for chunk in ids.split(4):
            per_layer.append([f_attn_reference(a) for a in ref(chunk, output_attentions=True).attentions])
    assert len(result.layers) == 30
    for i, ly in enumerate(result.layers):
        want = torch.stack([p[i] for p in per_layer]).mean(0).double()  # equal-size chunks: plain mean
        torch.testing.assert_close(torch.tensor(ly.heads["f_attn"], dtype=torch.float64), want, atol=1e-4, rtol=0)
    assert result.f_attn > 0.3  # a real attention sink


def test_second_load_uses_the_safetensors_cache(smollm2):
    import time

    t = time.perf_counter()
    again = gatelens.load("smollm2-135m")
    assert time.perf_counter() - t < 10
    assert again.info.fingerprint == smollm2.info.fingerprint


def test_massive_finds_what_a_slow_reference_finds(smollm2):
    inputs = gatelens.prepare_inputs(smollm2, seq_len=256, n_seqs=8)
    result = gatelens.measure.massive(smollm2, inputs, batch_size=4)
    ids = torch.stack(inputs.seqs)
    outs: dict[int, list] = {}
    hooks = [layer.register_forward_hook(lambda m, a, o, i=i: outs.setdefault(i, []).append(o.detach()))
             for i, layer in enumerate(smollm2.layers())]
    try:
        with torch.no_grad():
            for chunk in ids.split(4):
                smollm2.model(chunk)
    finally:
        for h in hooks:
            h.remove()
    for ly in result.layers:
        a = torch.cat(outs[ly.layer]).abs()
        want = a.max().item()
        assert abs(ly.max_abs - want) <= 1e-3 * want
        seq, pos, ch = (int(x) for x in torch.unravel_index(a.argmax(), a.shape))
        assert (ly.top[0].seq, ly.top[0].pos, ly.top[0].channel) == (seq, pos, ch)
    assert result.m_act > 1000 and result.n_massive > 0
    # the massive values sit in one channel, on the first token
    top = result.channel_frame().iloc[0]
    assert top["n_massive"] >= 0.5 * result.n_massive
    assert sum(ly.massive_at_first for ly in result.layers) >= 0.5 * result.n_massive
