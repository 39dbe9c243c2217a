"""Attention maps equal transformers' eager attention; pooling keeps the first token's column exact."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import gatelens
from factories import TEXT
from gatelens.patterns import attention_map


@pytest.mark.parametrize("kind", ["llama", "qwen3_sliding"])
def test_map_equals_eager_pattern(kind, tiny_dir):
    loaded = gatelens.load(str(tiny_dir(kind)))
    ids = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=1).seqs[0]
    ref = AutoModelForCausalLM.from_pretrained(tiny_dir(kind), attn_implementation="eager").eval()
    with torch.no_grad():
        att = ref(ids[None], output_attentions=True).attentions
    for layer in (0, 1):
        m = attention_map(loaded, ids, layer, head=1)
        torch.testing.assert_close(m.pattern, att[layer][0, 1], atol=1e-5, rtol=0)
        mean = attention_map(loaded, ids, layer)
        torch.testing.assert_close(mean.pattern, att[layer][0].mean(0), atol=1e-5, rtol=0)
        assert mean.first_token_share == pytest.approx(att[layer][0, :, 1:, 0].mean().item(), abs=1e-5)
        assert len(m.tokens) == 40


def test_pooled_map_keeps_first_column(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("llama")))
    ids = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=200, n_seqs=1).seqs[0]
    full = attention_map(loaded, ids, 0, max_size=512).pattern
    pooled = attention_map(loaded, ids, 0, max_size=34)
    k = pooled.pooled                      # ceil(199 / 33) = 7 tokens per cell after the first token
    size = 1 + -(-199 // k)
    assert k == 7 and pooled.pattern.shape == (size, size) and size <= 34 and pooled.tokens == []
    # first column: mean over each block of query rows of the exact weights on key 0
    rows = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.arange(199) // k])
    want = torch.zeros(size).index_add_(0, rows, full[:, 0]) / torch.bincount(rows, minlength=size)
    torch.testing.assert_close(pooled.pattern[:, 0], want, atol=1e-6, rtol=0)


def test_bad_layer_and_head(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("qwen3_5")))
    ids = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=16, n_seqs=1).seqs[0]
    with pytest.raises(gatelens.GatelensError, match="not an attention layer"):
        attention_map(loaded, ids, 0)
    with pytest.raises(gatelens.GatelensError, match="out of range"):
        attention_map(loaded, ids, 1, head=9)


def test_transformerlens_bridge_sees_the_same_pattern_and_leaves_ours_working(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("qwen3")))
    ids = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=24, n_seqs=1).seqs[0]
    before = attention_map(loaded, ids, 1).pattern
    bridge = loaded.bridge()
    _, cache = bridge.run_with_cache(ids[None])
    torch.testing.assert_close(cache["blocks.1.attn.hook_pattern"][0].mean(0), before, atol=1e-5, rtol=0)
    torch.testing.assert_close(attention_map(loaded, ids, 1).pattern, before)  # the bridge wrapped a copy


def test_bridge_refuses_models_that_transformerlens_would_misread():
    """The zoo's mechanism twins drop norms Qwen3 always has: TransformerLens would rebuild them wrongly."""
    for name in ("mech-baseline", "mech-gated"):
        with pytest.raises(gatelens.GatelensError, match="TransformerLens does not know"):
            gatelens.load(name).bridge()
