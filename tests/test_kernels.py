"""kernels.sdpa_with_lse wraps private ATen ops: checked against eager softmax on every run."""

import pytest
import torch

from gatelens.kernels import additive_mask, chunked_lse, efficient_bias, expand_kv, key_weight, sdpa_with_lse


def eager(q, k, v, scale, mask=None, causal=False):
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    n, m = s.shape[-2:]
    if causal:
        s = s.masked_fill(torch.ones(n, m, dtype=torch.bool).triu(1 + m - n), float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.double()
    return s.softmax(-1), torch.logsumexp(s, -1)


@pytest.mark.parametrize("fallback", [False, True])
@pytest.mark.parametrize("causal", [True, False])
def test_output_and_lse_match_eager(fallback, causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 41, 16, generator=g) for _ in range(3))
    out, lse = sdpa_with_lse(q, k, v, is_causal=causal, scale=0.4, force_fallback=fallback)
    p, lse_ref = eager(q, k, v, 0.4, causal=causal)
    torch.testing.assert_close(out.double(), p @ v.double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(lse.double(), lse_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(key_weight(q, k[:, :, 0], lse, 0.4).double(), p[..., 0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("fallback", [False, True])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masks_hide_key_zero(fallback, kind):
    """A sliding window or padding mask that hides key 0 gives weight exactly 0 there."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 30, 8, generator=g) for _ in range(3))
    mask = torch.ones(30, 30, dtype=torch.bool).tril() & ~torch.ones(30, 30, dtype=torch.bool).tril(-10)
    m = mask[None, None] if kind == "bool" else torch.zeros(1, 1, 30, 30).masked_fill(~mask, float("-inf"))
    out, lse = sdpa_with_lse(q, k, v, m, scale=0.3, force_fallback=fallback)
    p, _ = eager(q, k, v, 0.3, mask=mask)
    torch.testing.assert_close(out.double(), p @ v.double(), atol=1e-5, rtol=0)
    w = key_weight(q, k[:, :, 0], lse, 0.3, m[..., 0])
    torch.testing.assert_close(w.double(), p[..., 0], atol=1e-6, rtol=0)
    assert (w[..., 10:] == 0).all()


def test_chunked_lse_chunks_agree():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(1, 2, 50, 8, generator=g), torch.randn(1, 2, 50, 8, generator=g)
    torch.testing.assert_close(chunked_lse(q, k, 0.5, None, True, chunk=7), chunked_lse(q, k, 0.5, None, True, chunk=64))


def test_bf16_inputs_give_fp32_lse_close_to_fp32():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 64, 16, generator=g) for _ in range(3))
    _, lse32 = sdpa_with_lse(q, k, v, is_causal=True)
    _, lse16 = sdpa_with_lse(q.bfloat16(), k.bfloat16(), v.bfloat16(), is_causal=True)
    assert lse16.dtype == torch.float32
    torch.testing.assert_close(lse16, lse32, atol=0.05, rtol=0)


def test_expand_kv_repeats_each_kv_head_for_its_group():
    k = torch.arange(2 * 3).float().view(1, 2, 3, 1)
    e = expand_kv(k, 2)
    assert e.shape == (1, 4, 3, 1)
    assert torch.equal(e[0, 0], e[0, 1]) and torch.equal(e[0, 2], e[0, 3]) and torch.equal(e[0, 0], k[0, 0])


@pytest.mark.parametrize("fallback", [False, True])
def test_grouped_query_attention_runs_per_kv_group(fallback):
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, 6, 33, 8, generator=g)
    k, v = torch.randn(2, 2, 33, 8, generator=g), torch.randn(2, 2, 33, 8, generator=g)
    out, lse = sdpa_with_lse(q, k, v, is_causal=True, scale=0.3, force_fallback=fallback)
    p, lse_ref = eager(q, expand_kv(k, 3), expand_kv(v, 3), 0.3, causal=True)
    torch.testing.assert_close(out.double(), p @ expand_kv(v, 3).double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(lse.double(), lse_ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fallback", [False, True])
def test_grouped_query_attention_with_a_padding_mask(fallback):
    """GQA and a per-sequence padding mask together (the batched path): output and LSE as eager."""
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 4, 20, 8, generator=g)
    k, v = torch.randn(2, 2, 20, 8, generator=g), torch.randn(2, 2, 20, 8, generator=g)
    mask = torch.ones(2, 1, 20, 20, dtype=torch.bool).tril()
    mask[1, :, :, 12:] = False                                       # sequence 1 is 12 tokens long
    out, lse = sdpa_with_lse(q, k, v, mask, scale=0.35, force_fallback=fallback)
    p, lse_ref = eager(q, expand_kv(k, 2), expand_kv(v, 2), 0.35, mask=mask)
    torch.testing.assert_close(out.double(), p @ expand_kv(v, 2).double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(lse.double(), lse_ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fallback", [False, True])
def test_keys_and_values_with_a_strided_head_dimension(fallback):
    """Keys / values laid out [.., d, pos] and transposed (inkling2's short convolutions): the CPU kernel alone gets
    them wrong, so they are made contiguous first."""
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 24, 16, generator=g)
    k, v = (torch.randn(2, 2, 16, 24, generator=g).transpose(-1, -2) for _ in range(2))
    assert k.stride(-1) != 1
    mask = torch.randn(2, 4, 24, 24, generator=g).masked_fill(~torch.ones(24, 24, dtype=torch.bool).tril(), -torch.inf)
    out, lse = sdpa_with_lse(q, k, v, mask, scale=0.25, force_fallback=fallback)
    kk, vv = expand_kv(k, 2), expand_kv(v, 2)
    p, lse_ref = eager(q, kk, vv, 0.25, mask=mask)
    torch.testing.assert_close(out.double(), p @ vv.double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(lse.double(), lse_ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("nk", [17, 30, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_efficient_bias_rows_are_aligned_for_the_memory_efficient_kernel(nk, dtype):
    """The CUDA memory-efficient kernel refuses a bias whose row stride is not a multiple of 4 (fp32) / 8 (half)
    elements, which sent every masked call at such lengths to the slow path; the bias handed to it is padded to
    16-element rows, keeps the mask's values and broadcasts without a [batch, head, query, key] copy."""
    g = torch.Generator().manual_seed(6)
    q, k = torch.randn(2, 4, nk, 8, generator=g).to(dtype), torch.randn(2, 4, nk, 8, generator=g).to(dtype)
    window = torch.ones(nk, nk, dtype=torch.bool).tril() & ~torch.ones(nk, nk, dtype=torch.bool).tril(-5)
    padded = window[None, None].repeat(2, 1, 1, 1)
    padded[1, ..., nk - 3:] = False
    wide = torch.zeros(1, 1, nk, nk + 5, dtype=dtype)[..., :nk]          # a slice of a wider additive mask
    for mask in (window[None, None], padded, wide):
        bias = efficient_bias(mask, q, k)
        assert bias.shape == (2, 4, nk, nk) and bias.dtype == dtype and bias.stride(-1) == 1
        assert all(st % 16 == 0 for st in bias.stride()[:-1]), bias.stride()
        assert bias.untyped_storage().nbytes() <= 2 * nk * 32 * bias.element_size()  # rows of 32 at most, per sequence
        torch.testing.assert_close(bias, additive_mask(mask, dtype).expand(2, 4, nk, nk), rtol=0, atol=0)
    assert efficient_bias(None, q, k) is None
