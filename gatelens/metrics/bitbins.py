"""Log-spaced histogram bins read off float32 bit patterns, shared by the |value| histograms (and their medians).

For a float32 v >= 0 the bit pattern, read as an integer, grows monotonically with v and linearly inside
each octave [2^e, 2^(e+1)). A bin of 2^shift consecutive bit patterns therefore spans a fixed fraction of
an octave (2^(shift-23)), and binning |v| takes a subtraction and a shift: no logarithm, and no edge is
rounded. `base` is the bit pattern of the first edge; everything below it falls in bin 0.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def float_bits(e: int) -> int:
    """Bit pattern of the float32 2^e."""
    return (127 + e) << 23


def bins_(bits: Tensor, base: int, shift: int, n_bins: int) -> Tensor:
    """Bins of non-negative float32 values given as their int32 bit patterns, in place: (bits - base) >> shift,
    clamped to [0, n_bins - 1] (below base: bin 0; above the last edge: the last bin)."""
    return bits.sub_(base).bitwise_right_shift_(shift).clamp_(0, n_bins - 1)


def position(v: Tensor, base: int, shift: int) -> Tensor:
    """Fractional bin of positive float64 values v: their bit pattern taken as continuous (linear in an octave)."""
    mant, exp = torch.frexp(v)                                       # v = mant * 2^exp, mant in [0.5, 1)
    bits = (exp.double() + 126 + (2 * mant - 1)) * 2.0 ** 23
    return (bits - base) / (1 << shift)


def value(pos: Tensor, base: int, shift: int) -> Tensor:
    """Inverse of `position`: the value at fractional bin position pos (float64)."""
    bits = (base + pos * (1 << shift)) / 2.0 ** 23
    exp = torch.floor(bits)
    return torch.ldexp(1 + (bits - exp), (exp - 127).to(torch.int32))


def median_position(counts: Tensor) -> Tensor:
    """Fractional bin of the median of each histogram row [rows, n_bins] (float64), linear inside its bin -> [rows, 1]."""
    cum = counts.cumsum(-1)
    half = cum[:, -1:] / 2
    i = torch.searchsorted(cum, half).clamp(max=counts.shape[-1] - 1)
    before = torch.where(i > 0, cum.gather(1, (i - 1).clamp(min=0)), torch.zeros_like(half))
    return i + (half - before) / counts.gather(1, i).clamp(min=1)
