"""Attention received per key position: which tokens are sinks, beyond the first one.

The attention key j receives in a head: the mean, over the counted queries that see it (positions
i >= 1 allowed to attend j by the causal / sliding-window / padding mask), of the softmax weight a_ij.
At j = 0 under plain causal attention this is F-Attn. Sinks are not only position 0: the first
delimiters ("." and "\\n", Sun et al. 2024) and mid-sequence tokens (Yu et al. 2024) can collect it too.

Column sums of the pattern need every weight, so they cost one more attention-sized matmul; they are
exact and never hold the n x n pattern: `key_sums` recomputes the logits tile by tile (queries x keys,
at most TILE elements per KV group) and turns them into weights with the per-query log-sum-exp the
kernel already returned, a_ij = exp(scale q_i.k_j + mask_ij - lse_i). Tiles wholly above the causal
diagonal or outside the mask are skipped.

Top keys per head are distinct positions, each with the sequence where it received most. Keys seen by fewer
than `min_queries` counted queries (default: a quarter of the sequence's; the last positions) are not ranked:
their mean is over too few queries (a local head's diagonal weight would make the last key its top key).
Sink score of every position (Gu et al. 2024, "When attention sink emerges in language models", arXiv 2410.10781,
their `compute_attention_sink`): key k is a sink of a (sequence, layer, head) when alpha_k, the mean weight it
receives from the queries that see it, exceeds eps (0.3); the score of position k is the share of (sequence, layer,
head) in which it is one. As everywhere in gatelens query 0 is not counted (it can only attend to key 0; Gu et al.
count it, which adds (1 - alpha_0) / T at k = 0), so the score at k = 0 equals `Sink`'s sink rate; keys not ranked
(seen by fewer than `min_queries` queries) are not scored either, or the diagonal of a local head would make the last
positions sinks.
`Received` streams, per layer and head, the per-position sums (the profile over positions), the top-k
(sequence, position) keys, how often the top key is not position 0, and per token id the attention its
occurrences at positions >= 1 receive and how often one is a head's top key; `ReceivedResult` reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..errors import GatelensError
from ..kernels import sdpa_with_lse
from .base import HeadLayer, HeadResult, Probe, check_finite
from .sink import DEFAULT_EPS, check_eps, query_mask

Tensor = torch.Tensor
TILE = 1 << 20          # logits per tile and KV group (4 MiB in fp32); a few temporaries of this size live at once
DEFAULT_TOP_K = 5
DEFAULT_MIN_QUERIES = None   # a quarter of each sequence's counted queries


def _allowed(mask: Tensor) -> Tensor:
    """bool (True = attend) from a bool or additive mask."""
    return mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2


def query_counts(mask: Tensor | None, valid: Tensor, n_heads: int, nk: int, chunk: int = 1024) -> Tensor:
    """Number of counted queries (valid [b, nq]) allowed to see each key, [b, h, nk] float64."""
    b, nq = valid.shape
    v = valid.double()
    if mask is None:  # causal, end-aligned: key j is seen by queries i >= j - (nk - nq)
        after = v.flip(-1).cumsum(-1).flip(-1)                                      # valid queries at >= i
        first = torch.arange(nk, device=v.device) - (nk - nq)
        cnt = torch.where(first < nq, after[:, first.clamp(0, nq - 1)], 0.0)
        return cnt[:, None].expand(b, n_heads, nk)
    cnt = torch.zeros(b, mask.shape[1], nk, dtype=torch.float64, device=v.device)
    for s in range(0, nq, chunk):
        e = min(s + chunk, nq)
        cnt += (_allowed(mask[..., s:e, :]) & valid[:, None, s:e, None]).sum(-2)
    return cnt.expand(b, n_heads, nk)


NEG = -1e30   # the logit of an uncounted query in the transposed attention (weight exactly 0)


FUSED_BUDGET = 1 << 24   # elements per buffer of the fused path (64 MiB in fp32): heads are taken that many at once


def _head_chunks(b: int, h: int, n: int, d: int):
    step = max(1, min(h, FUSED_BUDGET // max(1, b * n * (d + 1))))
    return [slice(s, min(s + step, h)) for s in range(0, h, step)]


def column_sums_transposed(query: Tensor, key: Tensor, lse: Tensor, scale: float, valid: Tensor) -> Tensor:
    """Column sums of a plain causal pattern (no mask, no soft cap) with fused attention calls.

    sum_i a_ij = sum_{i >= j} exp(scale k_j.q_i - lse_i) is the softmax denominator of an attention in which
    the keys ask and the queries answer, with -lse_i as a bias per answering query; the bias rides one extra
    dimension ([scale k_j, 1] . [q_i, -lse_i]) and reversing both sequences turns i >= j into causal. The
    kernel's LSE of that attention is log sum_i a_ij: no tile loop, the cost of one attention call.
    query [b, h, n, d]; key [b, kv, n, d]; lse [b, h, n]; valid [b, n] -> [b, h, n] float64.
    """
    b, h, n, d = query.shape
    rep = h // key.shape[1]
    col = torch.empty(b, h, n, dtype=torch.float64, device=query.device)
    for hs in _head_chunks(b, h, n, d):
        heads = torch.arange(hs.start, hs.stop, device=query.device)
        qp = torch.empty(b, len(heads), n, d + 1, dtype=torch.float32, device=query.device)
        qp[..., :d] = key[:, heads // rep].flip(2) * scale
        qp[..., d] = 1.0
        kp = torch.empty_like(qp)
        kp[..., :d] = query[:, hs].flip(2)
        kp[..., d] = torch.where(valid[:, None], -lse[:, hs].float(), NEG).flip(2)
        _, lt = sdpa_with_lse(qp, kp, torch.zeros_like(qp), None, is_causal=True, scale=1.0)
        col[:, hs] = lt.flip(2).double().exp()
    return col


def row_sums_fused(query: Tensor, key: Tensor, scale: float, row_values: Tensor, valid: Tensor) -> Tensor:
    """sum_j a_ij x_j for plain causal attention: the kernel's own output with x_j as the value.
    row_values [b, h, n] -> [b, h, n] float64 (0 for uncounted queries)."""
    b, h, n, d = query.shape
    rep = h // key.shape[1]
    out = torch.empty(b, h, n, dtype=torch.float64, device=query.device)
    for hs in _head_chunks(b, h, n, d):
        heads = torch.arange(hs.start, hs.stop, device=query.device)
        vp = torch.zeros(b, len(heads), n, d, dtype=query.dtype, device=query.device)
        vp[..., 0] = row_values[:, hs]
        o, _ = sdpa_with_lse(query[:, hs], key[:, heads // rep], vp, None, is_causal=True, scale=scale)
        out[:, hs] = o[..., 0].double()
    return torch.where(valid[:, None], out, 0.0)


def key_sums(query: Tensor, key: Tensor, lse: Tensor, scale: float, mask: Tensor | None, valid: Tensor,
             row_values: Tensor | None = None, tile: int = TILE,
             softcap: float | None = None, fused: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
    """Exact column sums of the attention pattern over the counted queries, tile by tile.

    query [b, h, nq, d]; key [b, kv, nk, d] (query head h reads KV head h // (h / kv)); lse [b, h, nq];
    mask: None (plain causal, queries end-aligned with the keys) or bool / additive [b|1, 1|h, nq, nk];
    valid [b, nq]: the counted queries; row_values [b, h, nk]: optional per-key numbers x_j; softcap: logits
    capped as softcap * tanh(scale q.k / softcap) before the mask (Gemma 2). Learned sink logits need nothing
    here: they are inside the LSE, and the weights on real keys are what is summed.
    Returns (sum_i a_ij [b, h, nk] float64, number of counted queries allowed to see j [b, h, nk] float64,
    and with row_values sum_j a_ij x_j [b, h, nq] float64, over all keys, for every counted query, else None).

    Plain causal attention (no mask, no soft cap, queries and keys alike long) takes the fused path: one attention
    call per head for the column sums (`column_sums_transposed`) and one for the row sums. Otherwise, per tile:
    one matmul of the pre-scaled queries, minus the LSE, exp in place (an uncounted query's LSE is set to +inf, so
    its weights are 0), the mask only on tiles that need it, one sum over queries.
    """
    if fused and mask is None and softcap is None and query.shape[2] == key.shape[2]:
        vq = valid.to(query.device)
        col = column_sums_transposed(query, key, lse, scale, vq)
        row = None if row_values is None else row_sums_fused(query, key, scale, row_values, vq)
        return col, query_counts(None, vq, query.shape[1], key.shape[2]), row
    b, h, nq, _ = query.shape
    kv, nk = key.shape[1], key.shape[2]
    rep = h // kv
    off = nk - nq
    dev = query.device
    vq = valid.to(dev)
    col = torch.zeros(b, h, nk, dtype=torch.float64, device=dev)
    row = None if row_values is None else torch.zeros(b, h, nq, dtype=torch.float64, device=dev)
    tk = min(nk, 2048)
    tq = max(64, tile // max(1, b * rep * tk))
    lse_eff = torch.where(vq[:, None], lse.float(), float("inf"))                   # [b, h, nq]
    additive = mask is not None and mask.dtype != torch.bool
    for g in range(kv):
        hs = slice(g * rep, (g + 1) * rep)
        qg = query[:, hs].float() * scale                                            # [b, G, nq, d]
        kg = key[:, g:g + 1].float().transpose(-1, -2)                               # [b, 1, d, nk]
        xg = None if row_values is None else row_values[:, hs].float()
        mh = slice(None) if mask is None or mask.shape[1] == 1 else hs
        for qs in range(0, nq, tq):
            qe = min(qs + tq, nq)
            if not bool(vq[:, qs:qe].any()):
                continue
            lq = lse_eff[:, hs, qs:qe, None]                                         # [b, G, tq, 1]
            k_end = min(nk, qe + off) if mask is None else nk
            for ks in range(0, k_end, tk):
                ke = min(ks + tk, k_end)
                if mask is not None:
                    mt = mask[:, mh, qs:qe, ks:ke]
                    bt = ~_allowed(mt)
                    if bool(bt.all()):
                        continue
                p = torch.matmul(qg[:, :, qs:qe], kg[..., ks:ke])                    # [b, G, tq, tk]
                if softcap is not None:
                    p.div_(softcap).tanh_().mul_(softcap)
                if additive:
                    p += mt.float()
                p.sub_(lq)
                if mask is not None:
                    p.masked_fill_(bt, float("-inf"))
                elif ke - 1 > qs + off:                                              # the tile crosses the diagonal
                    p.masked_fill_(torch.arange(ks, ke, device=dev)[None, :]
                                   > torch.arange(qs, qe, device=dev)[:, None] + off, float("-inf"))
                p.exp_()
                col[:, hs, ks:ke] += p.sum(2)
                if xg is not None:
                    row[:, hs, qs:qe] += torch.matmul(p, xg[:, :, ks:ke, None]).squeeze(-1)
    return col, query_counts(mask, vq, h, nk), row


def received_reference(pattern: Tensor, allowed: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Slow reference from a full pattern [b, h, q, k] and the mask `allowed` [b|1, 1|h, q, k] (bool):
    per (sequence, head, key) the summed weight over counted queries and their count, [b, h, k] each."""
    b, h, n, _ = pattern.shape
    lengths = torch.full((b,), n) if lengths is None else lengths
    keep = allowed.expand(b, h, n, n) & query_mask(lengths, n)[:, None, :, None]
    return torch.where(keep, pattern.double(), 0.0).sum(2), keep.double().sum(2)


def ranked_keys(cnt: Tensor, lengths: Tensor, min_queries: int | None) -> Tensor:
    """Which keys are ranked, bool [b, h, nk]: real positions seen by >= min(min_queries, the most any key
    of that sequence and head is seen by) counted queries; min_queries None: a quarter of the sequence's queries."""
    nk = cnt.shape[-1]
    lengths = lengths.to(cnt.device)
    real = torch.arange(nk, device=cnt.device)[None, None, :] < lengths[:, None, None]
    want = ((lengths - 1) // 4).clamp(min=1).double()[:, None, None] if min_queries is None else float(min_queries)
    need = torch.minimum(cnt.amax(-1, keepdim=True), torch.as_tensor(want, dtype=cnt.dtype)).clamp(min=1.0)
    return real & (cnt >= need)


def _pad_sum(a: Tensor, b: Tensor) -> Tensor:
    """Sums of per-position tensors [..., n] of different lengths (sequences of different lengths)."""
    if a.shape[-1] < b.shape[-1]:
        a, b = b, a
    out = a.clone()
    out[..., : b.shape[-1]] += b
    return out


def _top_per_head(k: int):
    """Reducer keeping, per head, the k positions with the largest received (value, head, seq, pos, token id),
    each position once (its best sequence), ties in a fixed order."""
    def reduce(a, b):
        rows = sorted(a + b, key=lambda t: (t[1], -t[0], t[2], t[3]))
        out, kept = [], set()
        for r in rows:
            if (r[1], r[3]) in kept or sum(1 for h, _ in kept if h == r[1]) >= k:
                continue
            kept.add((r[1], r[3]))
            out.append(r)
        return out
    return reduce


def _share(passed: Tensor, scored: Tensor) -> Tensor:
    """Sink score per position from its counts: passed / scored, NaN where nothing was scored."""
    return torch.where(scored > 0, passed / scored.clamp(min=1), float("nan"))


def check_received_options(top_k: int, min_queries: int | None, seq_len: int | None = None) -> None:
    """top_k and min_queries in range; with the (longest) sequence length, min_queries within what a key can
    reach: key 0 is seen by the most counted queries, the seq_len - 1 positions after it."""
    if top_k < 1:
        raise GatelensError(f"--top-k {top_k}: give at least 1")
    if min_queries is not None and min_queries < 1:
        raise GatelensError(f"--min-queries {min_queries}: give at least 1 (keys seen by fewer queries are not ranked)")
    if min_queries is not None and seq_len is not None and min_queries > seq_len - 1:
        raise GatelensError(f"--min-queries {min_queries}: no key is seen by more than {seq_len - 1} queries in "
                            f"sequences of {seq_len} tokens; give at most {seq_len - 1}, or leave it out (a quarter "
                            "of each sequence's)")


class Received(Probe):
    """Attention received per key position, per layer and head; top keys; per-token totals."""

    name = "received"
    listens_to_attention = True
    exact_with = frozenset({"learned_sink", "softcap"})
    fused = True   # plain causal attention through the fused column sums (False: LSE tiles always; benchmarks)

    def __init__(self, top_k: int = DEFAULT_TOP_K, min_queries: int | None = DEFAULT_MIN_QUERIES,
                 eps: float = DEFAULT_EPS):
        super().__init__()
        check_received_options(top_k, min_queries)
        self.top_k, self.min_queries, self.eps = top_k, min_queries, check_eps(eps)
        per_position = ("pos_sum", "pos_count", "pos_sink", "pos_scored", "tok_sum", "tok_n", "tok_top")
        self.REDUCE = {"top": _top_per_head(top_k), **dict.fromkeys(per_position, _pad_sum)}

    def on_attention(self, ev, batch):
        lengths = batch.lengths.to(ev.query.device)
        n = ev.query.shape[2]
        valid = query_mask(lengths, n)
        col, cnt, _ = key_sums(ev.query, ev.key, ev.lse, ev.scale, ev.mask, valid, softcap=getattr(ev, "softcap", None),
                               fused=self.fused)
        check_finite(f"attention of layer {ev.layer}", col)
        self.update(ev.layer, col, cnt, lengths, batch)

    def update(self, layer: int, col: Tensor, cnt: Tensor, lengths: Tensor, batch) -> None:
        """Fold one batch's column sums col, counts cnt [b, h, nk] into the state."""
        b, h, nk = col.shape
        rec = col / cnt.clamp(min=1)
        ranked = ranked_keys(cnt, lengths, self.min_queries)
        scored = rec.masked_fill(~ranked, -1.0)
        vals, idx = scored.topk(min(self.top_k, nk), dim=-1)                       # [b, h, k]
        ids = batch.input_ids.to(col.device)
        at = ids.gather(1, idx.flatten(1)).view_as(idx).tolist()
        v, j = vals.tolist(), idx.tolist()
        top = [(v[i][hh][r], hh, batch.seq_id(i), j[i][hh][r], at[i][hh][r])
               for i in range(b) for hh in range(h) for r in range(len(v[i][hh])) if v[i][hh][r] >= 0]
        best = idx[..., 0]                                                           # [b, h]
        counted = ranked.any(-1)                                                     # [b, h]
        self.add(layer, pos_sum=col.sum(0).cpu(), pos_count=cnt.sum(0).cpu(), top=self.REDUCE["top"]([], top),
                 top_not_first=((best != 0) & counted).sum(0).double().cpu(), n_seqs=counted.sum(0).double().cpu(),
                 pos_sink=((rec > self.eps) & ranked).sum(0).double().cpu(), pos_scored=ranked.sum(0).double().cpu())
        # per token id, positions >= 1 only (position 0 has its own number): received summed over heads, counts
        later = ranked.clone()
        later[..., 0] = False
        tok = ids[:, None, :nk].expand(b, h, nk)                                     # [b, h, nk]
        won = torch.zeros_like(later).scatter_(-1, best[..., None], True) & later & counted[..., None]
        self.add("tokens", tok_sum=torch.bincount(tok[later], weights=rec[later]).cpu(),
                 tok_n=torch.bincount(tok[later]).double().cpu(), tok_top=torch.bincount(tok[won]).double().cpu())

    def finish(self, loaded, settings):
        tok = loaded.tokenizer
        text = lambda t: tok.decode([t])  # noqa: E731
        layers, profiles, scores = [], {}, {}
        for layer in sorted(k for k in self.acc if isinstance(k, int)):
            a = self.acc[layer]
            rec = a["pos_sum"] / a["pos_count"].clamp(min=1)                        # [h, n]
            profiles[layer] = (a["pos_sum"], a["pos_count"])
            scores[layer] = (a["pos_sink"], a["pos_scored"])
            h = rec.shape[0]
            tops = [[{"seq": s, "pos": p, "token": text(t), "received": v}
                     for v, hh, s, p, t in a["top"] if hh == head] for head in range(h)]
            first = torch.where(a["pos_count"][:, 0] > 0, rec[:, 0], torch.full((h,), float("nan"), dtype=rec.dtype))
            layers.append(HeadLayer(layer, {"received_first": first.tolist(),
                                            "top_not_first": (a["top_not_first"] / a["n_seqs"].clamp(min=1)).tolist(),
                                            "top_received": [ts[0]["received"] if ts else float("nan") for ts in tops]},
                                    head_extra={"top": tops}))
        tokens = self._token_rows(text, sum(ly.n_heads for ly in layers))
        return ReceivedResult(model=loaded.info.to_dict(),
                              settings={**settings, "top_k": self.top_k, "min_queries": self.min_queries,
                                        "eps": self.eps},
                              layers=layers, tokens=tokens, profiles=profiles, scores=scores)

    def _token_rows(self, text, per: int) -> list[dict]:
        """Per token string (ids decoding alike merged): mean received over occurrences x layers x heads; `per`:
        the (layer, head) pairs, so that n / per is the number of its ranked occurrences."""
        t = self.acc.get("tokens")
        if t is None:
            return []
        n = max(len(t[k]) for k in ("tok_sum", "tok_n", "tok_top"))
        tot, cnt, top = (torch.nn.functional.pad(t[k], (0, n - len(t[k]))) for k in ("tok_sum", "tok_n", "tok_top"))
        rows: dict[str, list] = {}
        for tid in (cnt > 0).nonzero().flatten().tolist():
            r = rows.setdefault(text(tid), [0.0, 0, 0])
            r[0] += float(tot[tid])
            r[1] += int(cnt[tid])
            r[2] += int(top[tid])
        out = [{"token": k, "received": v[0] / v[1], "occurrences": round(v[1] / max(per, 1)), "n": v[1],
                "top_heads": v[2]} for k, v in rows.items()]
        return sorted(out, key=lambda r: (-r["received"], r["token"]))


@dataclass(repr=False)
class ReceivedResult(HeadResult):
    """Attention received per key: per layer and head the share at position 0 and the top keys; per token string
    (positions >= 1) the mean received over its occurrences, layers and heads and how often it is a head's top key."""

    tokens: list[dict] = field(default_factory=list)
    profiles: dict = field(default_factory=dict)      # layer -> (sum over sequences [head, pos], counts [head, pos])
    scores: dict = field(default_factory=dict)        # layer -> (sequences where alpha_k > eps [head, pos], scored)

    COLUMNS: ClassVar = ("top_not_first",)
    LABELS: ClassVar = {"top_not_first": "heads whose top key is not 0"}
    RATIOS: ClassVar = ()

    @property
    def top_not_first(self) -> float:
        """Share of (sequence, layer, head) whose top key is not position 0."""
        return self.overall("top_not_first")

    def profile(self, layer: int | None = None) -> Tensor:
        """Received per key position [head, pos] of one layer, or [pos] averaged over layers and heads."""
        if layer is not None:
            s, c = self.profiles[layer]
            return s / c.clamp(min=1)
        return torch.stack([self.profile(ly).mean(0) for ly in self.profiles]).mean(0)

    def _score_totals(self) -> tuple[Tensor, Tensor]:
        """Per key position [pos]: (sequence, layer, head) in which alpha_k > eps, and those scored."""
        n = max(c.shape[-1] for _, c in self.scores.values())
        pad = lambda t: torch.nn.functional.pad(t, (0, n - t.shape[-1])).sum(0)  # noqa: E731
        return sum(pad(s) for s, _ in self.scores.values()), sum(pad(c) for _, c in self.scores.values())

    def sink_score(self) -> Tensor:
        """Gu et al.'s sink score of every key position [pos]: the share of scored (sequence, layer, head) in which
        the position's received attention alpha_k exceeds eps (NaN where no key was scored)."""
        return _share(*self._score_totals())

    def sink_positions(self, k: int = 10) -> list[dict]:
        """The (at most k) positions with the highest sink score above 0: the positions that pass eps."""
        score = self.sink_score()
        order = sorted((p for p in range(len(score)) if score[p] > 0), key=lambda p: (-float(score[p]), p))
        return [{"pos": p, "sink_score": float(score[p])} for p in order[:k]]

    def sink_score_frame(self):
        """Sink score per key position (Gu et al. 2024) with the number of scored (sequence, layer, head)."""
        import pandas as pd

        passed, scored = self._score_totals()
        score = _share(passed, scored)
        return pd.DataFrame({"pos": range(len(score)), "sink_score": score.tolist(), "n_scored": scored.tolist()})

    def sink_tokens(self, k: int = 5, min_occurrences: int = 5) -> list[dict]:
        """The k token strings (positions >= 1, seen at least min_occurrences times) receiving most attention."""
        return [r for r in self.tokens if r["occurrences"] >= min_occurrences][:k]

    def top_key_tokens(self, k: int = 5) -> list[dict]:
        """The k token strings (positions >= 1) that are most often a head's top key."""
        return sorted([r for r in self.tokens if r["top_heads"]], key=lambda r: (-r["top_heads"], r["token"]))[:k]

    def headline(self) -> dict:
        return {"received_first": self.overall("received_first"), "top_not_first": self.top_not_first,
                "sink_tokens": self.sink_tokens(10), "top_key_tokens": self.top_key_tokens(10),
                "sink_score": {"eps": self.settings.get("eps", DEFAULT_EPS), "first": float(self.sink_score()[0]),
                               "positions": self.sink_positions(10)}}

    def key_frame(self):
        """One row per (layer, head, rank) of the top keys."""
        import pandas as pd

        return pd.DataFrame([{"layer": ly.layer, "head": h, "rank": r, **t} for ly in self.layers
                             for h, ts in enumerate(ly.head_extra["top"]) for r, t in enumerate(ts)],
                            columns=["layer", "head", "rank", "seq", "pos", "token", "received"])

    def token_frame(self):
        import pandas as pd

        return pd.DataFrame(self.tokens, columns=["token", "received", "occurrences", "n", "top_heads"])

    def position_frame(self):
        """Received per key position, mean over layers and heads, with the counted queries."""
        import pandas as pd

        prof = self.profile()
        count = next(iter(self.profiles.values()))[1][0]
        return pd.DataFrame({"pos": range(len(prof)), "received": prof.tolist(), "n_queries": count.tolist()})

    def tables(self) -> dict:
        return {"received_heads": self.to_frame(), "received_layers": self.layer_frame(),
                "received_keys": self.key_frame(), "received_tokens": self.token_frame(),
                "received_positions": self.position_frame(), "sink_score_positions": self.sink_score_frame()}

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["tokens"] = self.tokens
        # per layer: received per position (mean over heads) and the sink-score counts (summed over heads), so that
        # `gatelens.read` gives back a result whose profile() and sink_score() are the ones measured
        d["positions"] = {str(layer): {"received": self.profile(layer).mean(0).tolist(),
                                       "sink_passed": self.scores[layer][0].sum(0).tolist(),
                                       "sink_scored": self.scores[layer][1].sum(0).tolist()}
                          for layer in self.profiles}
        return d

    @classmethod
    def from_dict(cls, d: dict):
        r = super().from_dict({k: v for k, v in d.items() if k != "positions"})
        for layer, p in d.get("positions", {}).items():
            rec = torch.tensor(p["received"], dtype=torch.float64)[None]
            r.profiles[int(layer)] = (rec, torch.ones_like(rec))          # [1, pos]: the head mean, count 1
            r.scores[int(layer)] = (torch.tensor(p["sink_passed"], dtype=torch.float64)[None],
                                    torch.tensor(p["sink_scored"], dtype=torch.float64)[None])
        return r

    def display(self) -> dict:
        s = self.settings
        sinks = ", ".join(f"{r['token']!r} {r['received']:.3f}" for r in self.sink_tokens(5)) or "none"
        tops = ", ".join(f"{r['token']!r} {r['top_heads']}" for r in self.top_key_tokens(5)) or "none"
        return {"title": f"Attention received of {self.model['spec']} ({s['input']}, {s['n_seqs']} x {s['seq_len']})",
                "frame": self.layer_frame(),
                "columns": {"layer": "layer", "received_first": "received @0", "top_not_first": "top key not 0",
                            "top_received": "top key received"},
                "total": {"layer": "model", "received_first": self.overall("received_first"),
                          "top_not_first": self.top_not_first},
                "notes": [f"sink score (Gu et al. 2024: share of sequence x layer x head whose received attention "
                          f"exceeds {self.settings.get('eps', DEFAULT_EPS):g}): position 0 "
                          f"{float(self.sink_score()[0]):.3f}; other positions passing: "
                          + (", ".join(f"{p['pos']} {p['sink_score']:.3f}" for p in self.sink_positions(6)
                                       if p["pos"] != 0) or "none"),
                          f"tokens (>= 5 occurrences) receiving most attention besides position 0: {sinks}",
                          f"tokens most often a head's top key besides position 0 (sequence x layer x head): {tops}"]}


Received.result_type = ReceivedResult
