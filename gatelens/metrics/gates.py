"""Gate-score sparsity: statistics of sigmoid gate scores s in (0, 1), accumulated as additive sums.

`batch_sums(scores, valid)` turns one batch of scores [batch, pos, head, g] (g = d_head for
elementwise gates, 1 for headwise) into per-head sums; sums of successive batches add up, and
`summarize` turns the total into per-head statistics. Memory never grows with the data.

Query dependence is a variance decomposition of each head's scores s[t, c] (token t, dimension c):
  total   = Var_{t,c}(s)
  token   = Var_t(mean_c s[t, c])   -- how much the gate moves from query to query
  channel = Var_c(mean_t s[t, c])   -- how much it differs between dimensions
reported as shares of the total.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor
N_BINS = 50          # histogram bins on [0, 1] (paper-style plots)
N_FINE = 2000        # fine bins for the median (resolution 5e-4)
SMALL = 1e-2         # "output below 1e-2 in magnitude" (the paper's appendix)
LOG_MIN, LOG_MAX, N_LOG = -8.0, 4.0, 1200  # log10 |y| bins for the share of small SDPA outputs

SUM_KEYS = ("n", "sum", "sumsq", "below_01", "below_05", "above_09", "hist", "fine", "tok_sum", "tok_sumsq",
            "n_tok", "chan_sum", "first_sum", "n_first", "min", "max")


def _valid_rows(x: Tensor, valid: Tensor) -> Tensor:
    """[batch, pos, head, g] -> [n_valid_tokens, head, g] in float64 (no copy of the selection when nothing is padded)."""
    rows = x.reshape(-1, *x.shape[2:]) if bool(valid.all()) else x[valid]
    return rows.double()


def _head_bincount(idx: Tensor, n_bins: int) -> Tensor:
    """Per-head histogram of bin indices idx [tokens, head, g] -> [head, n_bins] float64, in one bincount."""
    h = idx.shape[1]
    offset = (torch.arange(h, device=idx.device) * n_bins)[None, :, None]
    return torch.bincount((idx + offset).flatten(), minlength=h * n_bins).view(h, n_bins).double()


def batch_sums(scores: Tensor, valid: Tensor) -> dict[str, Tensor]:
    """Additive per-head sums of one batch. scores: [batch, pos, head, g]; valid: [batch, pos] bool."""
    s = _valid_rows(scores, valid)                                  # [tokens, h, g] float64
    n_valid, h, g = s.shape
    fine = _head_bincount((s.clamp(0, 1 - 1e-12) * N_FINE).long(), N_FINE)
    # floor(50 s) == floor(floor(2000 s) / 40) exactly (float32 scores are exact in float64 times 50 or 2000)
    hist = fine.view(h, N_BINS, N_FINE // N_BINS).sum(-1)
    tok_mean = s.mean(-1)                                           # [tokens, h]
    first = scores[:, 0][valid[:, 0]].double()                      # [batch with a first token, h, g]
    big = torch.finfo(torch.float64).max
    empty = n_valid == 0
    return {
        "n": torch.full((h,), float(n_valid * g), dtype=torch.float64, device=s.device),
        "sum": s.sum((0, 2)),
        "sumsq": s.square().sum((0, 2)),
        "below_01": (s < 0.1).sum((0, 2)).double(),
        "below_05": (s < 0.5).sum((0, 2)).double(),
        "above_09": (s > 0.9).sum((0, 2)).double(),
        "hist": hist,
        "fine": fine,
        "tok_sum": tok_mean.sum(0),
        "tok_sumsq": tok_mean.square().sum(0),
        "n_tok": torch.full((h,), float(n_valid), dtype=torch.float64, device=s.device),
        "chan_sum": s.sum(0),                                       # [h, g]
        "first_sum": first.sum((0, 2)),
        "n_first": torch.full((h,), float(first.shape[0] * g), dtype=torch.float64, device=s.device),
        "min": torch.full((h,), big, dtype=torch.float64, device=s.device) if empty else s.amin((0, 2)),
        "max": torch.full((h,), -big, dtype=torch.float64, device=s.device) if empty else s.amax((0, 2)),
    }


def add(total: dict[str, Tensor] | None, new: dict[str, Tensor]) -> dict[str, Tensor]:
    if total is None:
        return {k: v.clone() for k, v in new.items()}
    for k, v in new.items():
        if k == "min":
            total[k] = torch.minimum(total[k], v)
        elif k == "max":
            total[k] = torch.maximum(total[k], v)
        else:
            total[k] += v
    return total


def fine_median(fine: Tensor) -> Tensor:
    """Per-head median from the fine histogram [head, N_FINE], linear inside the bin."""
    cum = fine.cumsum(-1)
    half = cum[:, -1:] / 2
    i = torch.searchsorted(cum, half).clamp(max=N_FINE - 1)          # [h, 1]
    before = torch.where(i > 0, cum.gather(1, (i - 1).clamp(min=0)), torch.zeros_like(half))
    frac = (half - before) / fine.gather(1, i).clamp(min=1)
    return ((i + frac) / N_FINE).squeeze(1)


def summarize(t: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per-head statistics [head] from accumulated sums."""
    n = t["n"].clamp(min=1)
    mean = t["sum"] / n
    var = (t["sumsq"] / n - mean.square()).clamp(min=0)
    n_tok = t["n_tok"].clamp(min=1)
    tok_mean = t["tok_sum"] / n_tok
    tok_var = (t["tok_sumsq"] / n_tok - tok_mean.square()).clamp(min=0)
    chan_mean = t["chan_sum"] / n_tok[:, None]                       # [h, g]
    chan_var = chan_mean.var(-1, unbiased=False) if chan_mean.shape[-1] > 1 else torch.zeros_like(mean)
    rest_n = (t["n"] - t["n_first"]).clamp(min=1)
    safe = var.clamp(min=1e-30)
    return {
        "mean": mean, "std": var.sqrt(), "median": fine_median(t["fine"]), "min": t["min"], "max": t["max"],
        "frac_below_0.1": t["below_01"] / n, "frac_below_0.5": t["below_05"] / n, "frac_above_0.9": t["above_09"] / n,
        "token_var_share": tok_var / safe, "channel_var_share": chan_var / safe,
        "first_token_mean": t["first_sum"] / t["n_first"].clamp(min=1),
        "rest_mean": (t["sum"] - t["first_sum"]) / rest_n,
    }


def log_bins(a: Tensor) -> Tensor:
    x = torch.log10(a.clamp(min=10 ** LOG_MIN))
    return ((x - LOG_MIN) / (LOG_MAX - LOG_MIN) * N_LOG).long().clamp(0, N_LOG - 1)


def output_sums(y: Tensor, s: Tensor, valid: Tensor) -> dict[str, Tensor]:
    """Sums for the effect on W_O's input. y: SDPA output [batch, pos, head, d]; s: scores [.., head, g]."""
    a = _valid_rows(y, valid).abs_()                                 # |y| [tokens, h, d] float64
    z = a * _valid_rows(s, valid)                                    # |y * s|, the gate broadcast over d if headwise
    n_valid, h, d = a.shape
    return {
        "n": torch.full((h,), float(n_valid * d), dtype=torch.float64, device=a.device),
        "abs_y": a.sum((0, 2)),
        "abs_z": z.sum((0, 2)),
        "small_y": (a < SMALL).sum((0, 2)).double(),
        "small_z": (z < SMALL).sum((0, 2)).double(),
        "y_hist": _head_bincount(log_bins(a), N_LOG),
    }


def output_summary(t: dict[str, Tensor], mean_gate: Tensor) -> dict[str, Tensor]:
    """Per head: mean |y| and |y * gate|, share below 1e-2, and the same for y scaled by the mean gate."""
    n = t["n"].clamp(min=1)
    # |y| * mean_gate < SMALL  <=>  |y| < SMALL / mean_gate: read off the log histogram of |y|.
    edge = ((torch.log10(SMALL / mean_gate.clamp(min=1e-12)) - LOG_MIN) / (LOG_MAX - LOG_MIN) * N_LOG)
    cum = torch.cat([torch.zeros_like(t["y_hist"][:, :1]), t["y_hist"].cumsum(-1)], -1)
    lo = edge.floor().clamp(0, N_LOG).long()
    hi = (lo + 1).clamp(max=N_LOG)
    frac = (edge - lo).clamp(0, 1)
    small_lin = cum.gather(1, lo[:, None]).squeeze(1) * (1 - frac) + cum.gather(1, hi[:, None]).squeeze(1) * frac
    return {
        "mean_abs_sdpa": t["abs_y"] / n, "mean_abs_gated": t["abs_z"] / n,
        "mean_abs_mean_scaled": t["abs_y"] / n * mean_gate,
        "frac_small_sdpa": t["small_y"] / n, "frac_small_gated": t["small_z"] / n,
        "frac_small_mean_scaled": small_lin / n,
    }
