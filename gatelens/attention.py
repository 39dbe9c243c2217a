"""gatelens' attention implementation for transformers: SDPA that can report each query's LSE.

Registered with transformers' documented extension points (`AttentionInterface` and
`AttentionMaskInterface`, the latter reusing the SDPA mask) under the name ATTN_NAME, so every
family that dispatches through `ALL_ATTENTION_FUNCTIONS` (Llama, Qwen2/3, GPT-2, GPT-NeoX,
Qwen3-Next, Qwen3.5 ...) runs through it without patching any forward. With no listener it is
transformers' own SDPA path; while a measurement listens, it runs `kernels.sdpa_with_lse` and
hands the listener an `AttentionEvent` (queries after RoPE, keys expanded over KV groups, LSE, mask).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.utils.hooks import RemovableHandle

from .kernels import additive_mask, explicit_mask, sdpa_with_lse, softcapped_attention

ATTN_NAME = "gatelens_sdpa"
# The same function under a name without "sdpa": transformers refuses any "*sdpa*" name for models that declare no
# SDPA support (Gemma 2's soft-capping, gpt-oss's sinks), which gatelens computes exactly on its own path.
ATTN_NAME_EXACT = "gatelens_exact"

Tensor = torch.Tensor


@dataclass
class AttentionEvent:
    layer: int
    query: Tensor         # [batch, head, query, d_head], after RoPE / q_norm
    key: Tensor           # [batch, kv_head, key, d_head]: query head h reads KV head h // n_rep
    lse: Tensor           # [batch, head, query], fp32
    scale: float
    mask: Tensor | None   # None (plain causal) or bool/additive [batch|1, 1|head, query, key]
    output: Tensor        # [batch, head, query, d_head]: SDPA output before any output gate
    n_rep: int = 1        # query heads per KV head (grouped-query attention)
    value: Tensor | None = None  # [batch, kv_head, key, d_head]: values as SDPA read them (after any edit)
    softcap: float | None = None  # logits are softcap * tanh(scale q.k / softcap) (Gemma 2): see kernels.key_weight
    sink_logit: Tensor | None = None  # [batch|1, head, query] learned sink logits in the denominator (in lse)

    def head_key(self, heads: slice = slice(None)) -> Tensor:
        """Keys of the given query heads, [batch, head(s), key, d_head] (KV heads repeated per group)."""
        idx = torch.arange(self.query.shape[1], device=self.key.device)[heads] // self.n_rep
        return self.key[:, idx]

    def first_key(self) -> Tensor:
        """Key of position 0 for every query head, [batch, head, d_head]."""
        return self.key[:, :, 0].repeat_interleave(self.n_rep, dim=1)


_listeners: list[Callable[[AttentionEvent], None]] = []
# Causal edits (gatelens.ablate), by handle id: fn(layer, query, key, value, mask, causal) -> (value, mask, causal),
# applied before SDPA; mask / causal as below (a mask that replaces plain causal attention must itself be causal).
_edits: OrderedDict[int, Callable] = OrderedDict()   # an OrderedDict: the handles hold a weak reference


@contextmanager
def listening(fn: Callable[[AttentionEvent], None]) -> Iterator[None]:
    _listeners.append(fn)
    try:
        yield
    finally:
        _listeners.remove(fn)


def add_edit(fn: Callable) -> RemovableHandle:
    """Apply `fn` to every attention layer's value / mask before SDPA until the returned handle's `remove()`
    (the same handle a module hook returns)."""
    handle = RemovableHandle(_edits)
    _edits[handle.id] = fn
    return handle


def gatelens_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                       **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    sink = kwargs.get("s_aux", kwargs.get("sinks"))   # learned sink logits (gpt-oss: s_aux [head]; inkling2: sinks)
    softcap = kwargs.get("softcap")
    bias = kwargs.pop("position_bias", None)          # added to the logits (inkling, inkling2): [b|1, h|1, q, k]
    # DSA indexers (deepseek_v32, glm_moe_dsa, axk2 ...) hand any implementation but eager / sdpa the keys each query
    # keeps, [b, q, top-k], instead of masking the others: SDPA would ignore them, attending to every key
    indices = kwargs.pop("indices", None)
    layer = getattr(module, "gatelens_layer", getattr(module, "layer_idx", None))  # set by models.discover
    # SDPA ignores sinks, position biases and sparse indices and refuses soft-capping: never hand it those
    exact_here = sink is None and softcap is None and bias is None and indices is None
    if exact_here and (not (_listeners or _edits) or query.shape[2] < 2 or layer is None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    n_rep = query.shape[1] // key.shape[1]
    mask = None if attention_mask is None else attention_mask[:, :, :, : key.shape[-2]]
    causal = mask is None and (is_causal if is_causal is not None else getattr(module, "is_causal", True))
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    causal = bool(causal)
    if indices is not None:  # the same mask eager / sdpa get: keys the indexer did not select are hidden
        mask, causal = with_selected_keys(mask, causal, indices, query.shape[2], key.shape[2]), False
    if bias is not None:  # folded into an additive mask: every probe reading the event's mask sees the same logits
        mask, causal = with_position_bias(mask, causal, bias, query), False
    for edit in _edits.values() if layer is not None else ():
        value, mask, causal = edit(int(layer), query, key, value, mask, causal)
    if softcap is None:
        out, lse = sdpa_with_lse(query, key, value, mask, is_causal=causal, scale=scale)
    else:
        out, lse = softcapped_attention(query, key, value, mask, is_causal=causal, scale=scale, softcap=softcap)
    sink_logit = None
    if sink is not None:  # softmax over [logits, sink]: the same output scaled by exp(lse - lse'), lse' with the sink
        sink_logit = (sink.reshape(1, -1, 1) if sink.dim() == 1 else sink.reshape(sink.shape[:3])).float()
        total = torch.logaddexp(lse, sink_logit.to(lse.device))
        out = (out.float() * torch.exp(lse - total)[..., None]).to(out.dtype)
        lse = total
    if layer is not None and query.shape[2] >= 2:
        event = AttentionEvent(int(layer), query, key, lse, scale, mask, out, n_rep, value, softcap, sink_logit)
        for fn in _listeners:
            fn(event)
    return out.transpose(1, 2).contiguous(), None


def with_selected_keys(mask: Tensor | None, causal: bool, indices: Tensor, nq: int, nk: int) -> Tensor:
    """The mask (bool or additive; a causal bool one for None) with every key outside indices [b, q, top-k] hidden."""
    keep = torch.zeros(*indices.shape[:-1], nk, dtype=torch.bool, device=indices.device)
    keep = keep.scatter(-1, indices.long(), True)[:, None]                                   # [b, 1, q, k]
    mask = explicit_mask(mask, causal, nq, nk, indices.device)
    return mask & keep if mask.dtype == torch.bool else mask.masked_fill(~keep, float("-inf"))


def with_position_bias(mask: Tensor | None, causal: bool, bias: Tensor, query: Tensor) -> Tensor:
    """An additive mask [b, h, q, k] (query's dtype) holding the position bias plus the mask or the causal mask
    (queries end-aligned with the keys); masked entries stay -inf."""
    nq, nk = bias.shape[-2], bias.shape[-1]
    return additive_mask(explicit_mask(mask, causal, nq, nk, query.device), query.dtype) + bias.to(query.dtype)


_registered = False


def register() -> None:
    """Make ATTN_NAME a valid `attn_implementation` for transformers (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    for name in (ATTN_NAME, ATTN_NAME_EXACT):
        AttentionInterface.register(name, gatelens_attention)
        AttentionMaskInterface.register(name, sdpa_mask)
    _registered = True
