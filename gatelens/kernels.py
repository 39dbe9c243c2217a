"""Scaled-dot-product attention that also returns each query's log-sum-exp (LSE).

The fused SDPA kernels compute the LSE of every query row anyway; with it, the weight of
query i on key j is exp(scale * q_i . k_j + mask_ij - lse_i), so any single column of the
attention pattern (the first token's) costs one dot product per query and no n x n tensor.

`sdpa_with_lse` picks, in order:
  * CPU:  aten._scaled_dot_product_flash_attention_for_cpu  -> (out, lse); it reads KV head h // n_rep
          for query head h itself, so grouped-query attention needs no expanded K/V and one call
  * CUDA: aten._scaled_dot_product_flash_attention (no mask, fp16/bf16, head_dim <= 256)
          aten._scaled_dot_product_efficient_attention(compute_log_sumexp=True) otherwise
  * anything else, or if a private op is missing/fails: public F.scaled_dot_product_attention
    for the output plus `chunked_lse`, an exact LSE over query chunks in O(chunk * n) memory.
These are private ATen ops; tests/test_kernels.py checks this module against eager softmax.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

_LSE_CHUNK = 1024


def expand_kv(x: Tensor, n_rep: int) -> Tensor:
    """[batch, kv_head, pos, d] -> [batch, kv_head * n_rep, pos, d] (grouped-query attention)."""
    if n_rep == 1:
        return x
    b, h, n, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, n, d).reshape(b, h * n_rep, n, d)


def additive_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """Bool (True = attend) or additive float mask -> additive float mask (0 / -inf)."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def explicit_mask(mask: Tensor | None, causal: bool, nq: int, nk: int, device) -> Tensor:
    """The mask itself, or for None the bool mask [1, 1, q, k] it stands for: causal with the queries end-aligned
    with the keys, or every key visible."""
    if mask is not None:
        return mask
    if not causal:
        return torch.ones(1, 1, nq, nk, dtype=torch.bool, device=device)
    qi = torch.arange(nq, device=device)[:, None] + (nk - nq)
    return (torch.arange(nk, device=device)[None, :] <= qi)[None, None]


def chunked_lse(q: Tensor, k: Tensor, scale: float, mask: Tensor | None, is_causal: bool,
                chunk: int = _LSE_CHUNK) -> Tensor:
    """Exact log-sum-exp of every query row, [batch, head, query], in fp32, O(chunk * keys) memory.

    q: [batch, head, query, d]; k: [batch, head, key, d] (already expanded for GQA).
    """
    nq = q.shape[-2]
    out = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
    kf = k.float()
    for s in range(0, nq, chunk):
        e = min(s + chunk, nq)
        out[:, :, s:e] = torch.logsumexp(chunk_scores(q, kf, scale, mask, is_causal, s, e), dim=-1)
    return out


def softcap_logits(x: Tensor, softcap: float | None) -> Tensor:
    """Gemma 2's soft-capping of attention logits: softcap * tanh(x / softcap) (identity for None)."""
    return x if softcap is None else torch.tanh(x / softcap) * softcap


def softcapped_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *, is_causal: bool, scale: float,
                         softcap: float, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """Exact attention with soft-capped logits, query chunk by query chunk (O(chunk * keys) memory, no n x n):
    output [batch, head, query, d_v] and LSE [batch, head, query] (fp32). k, v: [batch, kv_head, key, d]."""
    n_rep = q.shape[1] // k.shape[1]
    kf, vf = expand_kv(k, n_rep).float(), expand_kv(v, n_rep).float()
    nq = q.shape[-2]
    out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=torch.float32, device=q.device)
    lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
    for s in range(0, nq, chunk):
        e = min(s + chunk, nq)
        scores = chunk_scores(q, kf, scale, mask, is_causal, s, e, softcap=softcap)
        lse[:, :, s:e] = torch.logsumexp(scores, dim=-1)
        out[:, :, s:e] = torch.exp(scores - lse[:, :, s:e, None]).nan_to_num_(0.0) @ vf
    return out.to(q.dtype), lse


def chunk_scores(q: Tensor, k: Tensor, scale: float, mask: Tensor | None, is_causal: bool, s: int, e: int,
                 softcap: float | None = None) -> Tensor:
    """Masked attention logits of queries s:e against every key, [batch, head, e - s, key] in fp32.

    q: [batch, head, query, d]; k: [batch, head, key, d] (expanded for GQA); mask: bool (True = attend)
    or additive, broadcastable to [batch, head, query, key]; is_causal: queries end-aligned with the keys.
    """
    nq, nk = q.shape[-2], k.shape[-2]
    scores = softcap_logits((q[:, :, s:e].float() @ k.float().transpose(-1, -2)) * scale, softcap)
    if mask is not None:
        m = mask[..., s:e, :]
        scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m.float()
    if is_causal:
        qi = torch.arange(s, e, device=q.device)[:, None] + (nk - nq)
        scores = scores.masked_fill(torch.arange(nk, device=q.device)[None, :] > qi, float("-inf"))
    return scores


_BIAS_ALIGN = 16  # elements; PyTorch's own SDPA pads its masks the same way before this kernel (pad_bias)


def efficient_bias(mask: Tensor | None, q: Tensor, k: Tensor) -> Tensor | None:
    """The mask as the memory-efficient kernel takes it: additive, in q's dtype, [batch, head, query, key], every
    stride but the last a multiple of 16 elements. The kernel refuses a bias whose rows do not start so aligned
    ("attn_bias is not correctly aligned (strideM)": key counts that are not a multiple of 4 in fp32, 8 in half),
    and the refusal would send every masked call to the slower public path; so rows are padded, then sliced back,
    at the mask's own broadcast shape (no [batch, head, query, key] copy)."""
    bias = additive_mask(mask, q.dtype)
    if bias is None:
        return None
    if bias.dtype != q.dtype:
        bias = bias.to(q.dtype)
    if bias.stride(-1) != 1 or any(st % _BIAS_ALIGN for st in bias.stride()[:-1]):
        nk = bias.shape[-1]
        padded = bias.new_zeros(*bias.shape[:-1], nk + -nk % _BIAS_ALIGN)[..., :nk]
        bias = padded.copy_(bias)
    return bias.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])


def _cuda_lse_op(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, scale: float):
    if mask is None and q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256:
        res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, is_causal, False, scale=scale)
        return res[0], res[1]
    bias = efficient_bias(mask, q, k)
    res = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True, 0.0, is_causal, scale=scale)
    return res[0], res[1][..., : q.shape[2]]  # the efficient kernel pads LSE rows to a multiple of 32


def sdpa_with_lse(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, is_causal: bool = False,
                  scale: float | None = None, force_fallback: bool = False) -> tuple[Tensor, Tensor]:
    """Attention output [batch, head, query, d] and per-query LSE [batch, head, query] (fp32).

    q: [batch, head, query, d]; k, v: [batch, kv_head, key, d], kv_head dividing head (grouped-query
    attention: the CPU kernel takes the KV heads as they are; elsewhere it runs one KV group at a time
    on stride-0 views, so no full copy of K and V is made either way).
    mask: None, bool (True = attend) or additive float, broadcastable to [batch, head, query, key].
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    n_rep = q.shape[1] // k.shape[1]
    # The fused kernels read the head dimension as contiguous: the CPU one returns a wrong output and LSE, silently,
    # for keys / values laid out [.., d, pos] and transposed (inkling2's short convolutions hand them over so)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    if not force_fallback and q.device.type == "cpu":
        try:
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                q, k, v, 0.0, is_causal, attn_mask=additive_mask(mask, q.dtype), scale=scale)
            return out, lse.float()
        except (RuntimeError, AttributeError, NotImplementedError):
            pass  # op missing in this torch build or unsupported input: per KV group / public path below
    if n_rep > 1:
        out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        b, _, nk, d = k.shape
        for j in range(k.shape[1]):
            hs = slice(j * n_rep, (j + 1) * n_rep)
            m = mask if mask is None or mask.shape[1] == 1 else mask[:, hs]
            out[:, hs], lse[:, hs] = sdpa_with_lse(
                q[:, hs], k[:, j:j + 1].expand(b, n_rep, nk, d), v[:, j:j + 1].expand(b, n_rep, nk, v.shape[-1]), m,
                is_causal=is_causal, scale=scale, force_fallback=force_fallback)
        return out, lse
    if not force_fallback and q.device.type == "cuda":
        try:
            out, lse = _cuda_lse_op(q, k, v, mask, is_causal, scale)
            return out, lse.float()
        except (RuntimeError, AttributeError, NotImplementedError):
            pass  # op missing in this torch build or unsupported input: take the public path below
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale)
    return out, chunked_lse(q, k, scale, mask, is_causal)


def key_weight(q: Tensor, k_j: Tensor, lse: Tensor, scale: float, mask_j: Tensor | None = None,
               softcap: float | None = None) -> Tensor:
    """Softmax weight of every query on one key j, [batch, head, query], from the LSE.

    q: [batch, head, query, d]; k_j: [batch, head, d]; mask_j: the mask's column j, broadcastable
    to [batch, head, query] (bool True = attend, or additive float).
    """
    logits = softcap_logits(torch.einsum("bhqd,bhd->bhq", q.float(), k_j.float()) * scale, softcap)
    if mask_j is not None:
        logits = logits.masked_fill(~mask_j, float("-inf")) if mask_j.dtype == torch.bool else logits + mask_j.float()
    return torch.exp(logits - lse)
