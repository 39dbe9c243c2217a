"""Massive activations (Sun et al. 2024; the paper's M-Act): huge values in the residual stream.

A value h[t, c] of a hidden state is massive when |h| > abs_threshold (100) and |h| > ratio (1000)
x the median |value| of that sequence's hidden state at that layer. Medians (per sequence, and the
layer's over all tokens) come from log-binned histograms: fixed memory, relative error < 0.4%.
The bins are read off the float32 bit pattern of |h| (exponent and top 8 mantissa bits: 256 bins per
octave, each at most 0.39% of its lower edge wide), so binning takes two integer ops and no logarithm.
"""

from __future__ import annotations

import torch

from . import bitbins

Tensor = torch.Tensor
ABS_THRESHOLD = 100.0
RATIO = 1000.0
# |h| bins for the medians: 2^-27 (7.5e-9) .. 2^24 (1.7e7), 256 per octave; smaller values go to the first bin,
# larger ones to the last.
OCT_MIN, OCT_MAX, SUB_BITS = -27, 24, 8
N_BINS = (OCT_MAX - OCT_MIN) << SUB_BITS
_SHIFT = 23 - SUB_BITS
_BASE = bitbins.float_bits(OCT_MIN)           # the first edge


def limits(median: Tensor, abs_threshold: float = ABS_THRESHOLD, ratio: float = RATIO) -> Tensor:
    """Per-sequence magnitude above which a value is massive: max(abs_threshold, ratio x median) [batch]."""
    return torch.clamp(ratio * median, min=abs_threshold)


def massive_mask(a: Tensor, valid: Tensor, median: Tensor, abs_threshold: float = ABS_THRESHOLD,
                 ratio: float = RATIO) -> Tensor:
    """|hidden| [batch, pos, d_model] -> bool [batch, pos, d_model]: massive values of each sequence.

    `median` [batch] is each sequence's median |value| over its valid positions and all channels
    (Sun et al. take it per input); padded positions are never massive.
    """
    return (a > limits(median, abs_threshold, ratio)[:, None, None]) & valid[..., None]


def massive_tokens(a: Tensor, token_max: Tensor, valid: Tensor, limit: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The sparse form of `massive_mask`: (batch index [m], position [m], flags [m, d_model]) of the
    tokens holding at least one massive value; only those tokens' rows are compared."""
    bi, pi = ((token_max > limit[:, None]) & valid).nonzero(as_tuple=True)
    return bi, pi, a[bi, pi] > limit[bi, None]


def log_bins(a: Tensor) -> Tensor:
    """Bin (int32) of each |value| a >= 0 (zeros and tiny values go to the first bin)."""
    return bitbins.bins_(a.float().contiguous().view(torch.int32).clone(), _BASE, _SHIFT, N_BINS)


def sequence_histograms(a: Tensor, valid: Tensor) -> Tensor:
    """Counts of |values| per sequence in the log bins, [batch, N_BINS]; padded positions left out."""
    b = a.shape[0]
    idx = log_bins(a)
    if b > 1:
        idx += (torch.arange(b, device=a.device, dtype=torch.int32) * N_BINS)[:, None, None]
    if not bool(valid.all()):
        idx = torch.where(valid[..., None], idx, b * N_BINS)                      # padding -> a spare bin
    return torch.bincount(idx.flatten(), minlength=b * N_BINS + 1)[: b * N_BINS].view(b, N_BINS)


def log_histogram(a: Tensor) -> Tensor:
    """Counts of |values| `a` in the fixed log10 bins, [N_BINS]."""
    return torch.bincount(log_bins(a).flatten(), minlength=N_BINS)


def histogram_median(counts: Tensor) -> float:
    """Median |value| from `log_histogram` counts, interpolated linearly inside its bin."""
    return float(histogram_medians(counts[None])[0])


def histogram_medians(counts: Tensor) -> Tensor:
    """Row-wise medians of log-bin histograms [rows, N_BINS] -> [rows] (NaN for an empty row)."""
    c = counts.double()
    cum = c.cumsum(-1)
    half = cum[:, -1:] / 2
    i = torch.searchsorted(cum, half).clamp(max=N_BINS - 1)
    before = torch.where(i > 0, cum.gather(1, (i - 1).clamp(min=0)), torch.zeros_like(half))
    frac = (half - before) / c.gather(1, i).clamp(min=1)
    med = bitbins.value(i + frac, _BASE, _SHIFT)
    return torch.where(cum[:, -1:] > 0, med, torch.full_like(med, float("nan"))).squeeze(1)


def topk_values(a: Tensor, valid: Tensor, k: int, token_max: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Top-k of |values| `a` over valid tokens: (magnitudes [k'], flat indices into [batch, pos, d_model]).

    The k largest values lie within the k tokens with the largest maxima, so only those are sorted.
    """
    b, n, d = a.shape
    token_max = a.amax(-1).masked_fill(~valid, -1.0).flatten() if token_max is None else \
        token_max.masked_fill(~valid, -1.0).flatten()                            # [b * n]
    tok = token_max.topk(min(k, token_max.numel())).indices
    tok = tok[token_max[tok] >= 0]
    cand = a.view(b * n, d)[tok]                                                # [k', d]
    vals, j = cand.flatten().topk(min(k, cand.numel()))
    flat = tok[j // d] * d + j % d
    return vals, flat


def unravel(flat: int, shape) -> tuple[int, ...]:
    out = []
    for size in reversed(shape):
        out.append(flat % size)
        flat //= size
    return tuple(reversed(out))


def m_act(layer_maxima: list[float]) -> tuple[float, float]:
    """(max over layers, mean over layers) of each layer's max |hidden|: the two readings of M-Act."""
    return max(layer_maxima), sum(layer_maxima) / len(layer_maxima)


def first_token_norm_ratio(hidden: Tensor, valid: Tensor) -> tuple[float, float]:
    """Sum of the L2 norms of the position-0 hidden states, and the sum over the other valid positions."""
    norms = hidden.float().norm(dim=-1)  # [batch, pos]
    return float(norms[:, 0].sum()), float((norms[:, 1:] * valid[:, 1:]).sum())

