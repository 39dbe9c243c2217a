"""Attention maps of chosen layers and heads, for people to look at.

Unlike the measurements, a map is an n x n picture; it is built for one sequence and one layer at
a time, query rows in chunks, and for long texts average-pooled into at most `max_size` x
`max_size` cells, so memory stays O(chunk x n + max_size^2). The first token keeps its own row and
column when pooled, so a sink stays visible as the stripe it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import data
from .errors import GatelensError
from .kernels import chunk_scores
from .measure import as_loaded, run
from .metrics.base import Probe, Result, check_finite
from .models.load import Loaded


@dataclass(repr=False)
class AttentionMap(Result):
    pattern: torch.Tensor        # [rows, cols]: attention weights, pooled when the text is long
    tokens: list[str]            # token labels (only when not pooled)
    layer: int
    head: int | None             # None: mean over heads
    pooled: int                  # tokens per cell (1 = exact map)
    model: dict
    first_token_share: float     # mean weight on key 0 over queries >= 1 (unpooled), of this one sequence
    n_tokens: int                # the sequence's length, BOS included (F-Attn, unlike this, averages many sequences)


class Pattern(Probe):
    listens_to_attention = True

    def __init__(self, layer: int, head: int | None, max_size: int = 512, chunk: int = 512):
        self.layer, self.head, self.max_size, self.chunk = layer, head, max_size, chunk
        self.result: tuple[torch.Tensor, float, int] | None = None

    def on_attention(self, ev, batch):
        if ev.layer != self.layer:
            return
        heads = slice(None) if self.head is None else slice(self.head, self.head + 1)
        q, k = ev.query[:1, heads].float(), ev.head_key(heads)[:1].float()
        n = q.shape[2]
        pool = max(1, -(-(n - 1) // (self.max_size - 1))) if n > self.max_size else 1
        cell = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.arange(n - 1) // pool])  # token -> cell
        size = int(cell[-1]) + 1
        counts = torch.bincount(cell, minlength=size).float()
        out = torch.zeros(size, size)
        first = torch.zeros(())
        for s in range(0, n, self.chunk):
            e = min(s + self.chunk, n)
            mask = None if ev.mask is None else ev.mask[:1]
            scores = chunk_scores(q, k, ev.scale, mask, mask is None, s, e)       # [1, h, c, n]
            # -inf is a masked key; NaN or +inf is a broken model, which softmax would turn into a blank map
            check_finite(f"the attention scores of layer {ev.layer}", scores.masked_fill(scores.isneginf(), 0))
            p = scores.softmax(-1).nan_to_num(0.0).mean(1)[0]                   # [c, n], mean over heads
            rows = torch.arange(s, e)
            first += p[rows >= 1, 0].sum()
            cols = torch.zeros(e - s, size).index_add_(1, cell, p) / counts  # mean weight per key in a cell
            out.index_add_(0, cell[s:e], cols)
        out /= counts[:, None]
        self.result = (out, float(first / max(n - 1, 1)), pool)

    def finish(self, loaded, settings):
        return self.result


def attention_map(model: Loaded | str, ids: torch.Tensor, layer: int, head: int | None = None,
                  max_size: int = 512) -> AttentionMap:
    """The attention map of one layer (one head, or the mean over heads) for one token sequence [pos]."""
    loaded = as_loaded(model)
    info = loaded.info
    if layer not in info.attention_layers:
        raise GatelensError(f"layer {layer} is not an attention layer of {info.spec}; attention layers: "
                            f"{_ranges(info.attention_layers)}")
    if head is not None and not 0 <= head < info.n_heads:
        raise GatelensError(f"--head {head} out of range: {info.spec} has {info.n_heads} heads (0..{info.n_heads - 1})")
    probe = Pattern(layer, head, max_size=max_size)
    run(loaded, data.batches([ids], 1), [probe])
    pattern, share, pool = probe.result
    tokens = [loaded.tokenizer.decode([int(t)]) for t in ids] if pool == 1 else []
    return AttentionMap(pattern, tokens, layer, head, pool, info.to_dict(), share, len(ids))


def text_map(model: Loaded | str, text: str | None = None, layer: int = 0, head: int | None = None,
             seq_len: int = 64, bos: bool = True, max_size: int = 512) -> AttentionMap:
    """Attention map for the first `seq_len` tokens of a text (or the model's default data)."""
    from .measure import prepare_inputs

    loaded = as_loaded(model)
    inputs = prepare_inputs(loaded, text=text, seq_len=seq_len, n_seqs=1, bos=bos)
    return attention_map(loaded, inputs.seqs[0], layer, head, max_size)


def _ranges(xs: list[int]) -> str:
    if not xs:
        return "none"
    return f"{xs[0]}..{xs[-1]}" if xs == list(range(xs[0], xs[-1] + 1)) else ", ".join(map(str, xs))


def attn_maps(models: list[str], text: str | None, layer: int = 0, head: int | None = None, seq_len: int = 64,
              bos: bool = True, max_size: int = 512, *, device: str = "cpu", dtype: str = "float32",
              every_head: bool = False) -> tuple[list, dict]:
    """`gatelens attn-map`: each model's map of one layer and head (or the head mean) on `text` (None: the model's
    own data) and, with `every_head` (the interactive view), each model's maps of the head mean and of every head of
    the layer, by model name (exact maps only: a text longer than `max_size` is refused)."""
    from pathlib import Path

    from . import measure

    loaded = [measure.as_loaded(m, device=device, dtype=dtype) for m in models]
    maps = [text_map(lm, text, layer, head, seq_len, bos, max_size) for lm in loaded]
    if every_head and any(mp.pooled != 1 for mp in maps):
        raise GatelensError(f"--html shows the exact map: give a text of at most --max-size {max_size} tokens "
                            "(or raise --max-size)")
    heads = {Path(lm.info.spec).name: [text_map(lm, text, layer, h, seq_len, bos, max_size)
                                       for h in [None, *range(lm.info.n_heads)]] for lm in loaded} if every_head else {}
    return maps, heads
