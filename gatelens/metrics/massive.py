"""Massive activations (Sun et al. 2024; the paper's M-Act): huge values in the residual stream.

A value h[t, c] of a hidden state is massive when |h| > abs_threshold (100) and |h| > ratio (1000)
x the median |value| of that sequence's hidden state at that layer. Medians (per sequence, and the
layer's over all tokens) come from log-binned histograms: fixed memory, relative error < 0.4%.
The bins are read off the float32 bit pattern of |h| (exponent and top 8 mantissa bits: 256 bins per
octave, each at most 0.39% of its lower edge wide), so binning takes two integer ops and no logarithm.
`Massive` hooks every decoder layer's output; `MassiveResult` is per layer (not per head).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch

from ..errors import GatelensError
from . import bitbins
from .base import Probe, Result, check_finite, hidden

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
    """Counts of |values| `a` in the fixed log bins, [N_BINS]."""
    return torch.bincount(log_bins(a).flatten(), minlength=N_BINS)


def histogram_median(counts: Tensor) -> float:
    """Median |value| from `log_histogram` counts, interpolated linearly inside its bin."""
    return float(histogram_medians(counts[None])[0])


def histogram_medians(counts: Tensor) -> Tensor:
    """Row-wise medians of log-bin histograms [rows, N_BINS] -> [rows] (NaN for an empty row)."""
    c = counts.double()
    med = bitbins.value(bitbins.median_position(c), _BASE, _SHIFT)
    return torch.where(c.sum(-1, keepdim=True) > 0, med, torch.full_like(med, float("nan"))).squeeze(1)


def topk_values(a: Tensor, valid: Tensor, k: int, token_max: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Top-k of |values| `a` over valid tokens: (magnitudes [k'], flat indices into [batch, pos, d_model]).

    The k largest values lie within the k tokens with the largest maxima, so only those are sorted.
    """
    b, n, d = a.shape
    token_max = a.amax(-1).masked_fill(~valid, -1.0).flatten() if token_max is None else \
        token_max.masked_fill(~valid, -1.0).flatten()                            # [b * n]
    tok = token_max.topk(min(k, token_max.numel())).indices
    tok = tok[token_max[tok] >= 0]
    cand = a.reshape(b * n, d)[tok]                                             # [k', d]
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



def check_thresholds(abs_threshold: float, ratio: float, top_k: int) -> None:
    if not abs_threshold > 0 or not ratio > 0:
        raise GatelensError("--abs-threshold and --ratio must be positive (Sun et al.: 100 and 1000)")
    if top_k < 1:
        raise GatelensError(f"--top-k {top_k}: give at least 1")


def _top(k: int):
    """Reducer keeping the k largest (|h|, seq, pos, channel, token id), ties in a fixed order."""
    return lambda a, b: sorted(a + b, key=lambda t: (-t[0], t[1], t[2], t[3]))[:k]


class Massive(Probe):
    """Per layer: max / median / top-k |hidden| with positions, channels and tokens; massive-value counts."""

    name = "massive"

    def __init__(self, top_k: int = 5, abs_threshold: float = ABS_THRESHOLD, ratio: float = RATIO):
        super().__init__()
        check_thresholds(abs_threshold, ratio, top_k)
        self.top_k, self.abs_threshold, self.ratio = top_k, abs_threshold, ratio
        self.REDUCE = {"top": _top(top_k)}

    def attach(self, loaded):
        super().attach(loaded)
        return [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(loaded.layers())]

    def _hook(self, layer: int):
        def hook(module, args, output):
            self.update(layer, hidden(output), self.batch)
        return hook

    def update(self, layer: int, h: Tensor, batch) -> None:
        valid = batch.valid().to(h.device)
        ids = batch.input_ids
        a = h.detach().float().abs()
        token_max = a.amax(-1)                                              # [batch, pos]
        check_finite(f"the hidden state after layer {layer}", token_max)  # inf/NaN if any value of a token is
        vals, idx = topk_values(a, valid, self.top_k, token_max)
        top = []
        for v, flat in zip(vals.tolist(), idx.tolist()):
            b, pos, ch = unravel(flat, h.shape)
            top.append((v, batch.seq_id(b), pos, ch, int(ids[b, pos])))
        hists = sequence_histograms(a, valid)                               # [batch, bins]
        limit = limits(histogram_medians(hists).to(a.dtype), self.abs_threshold, self.ratio)
        bi, pi, flags = massive_tokens(a, token_max, valid, limit)          # only tokens holding one
        per_token = flags.sum(-1).cpu()
        tokens: dict[int, int] = {}
        for b, pos, c in zip(bi.tolist(), pi.tolist(), per_token.tolist()):
            tid = int(ids[b, pos])
            tokens[tid] = tokens.get(tid, 0) + c
        first, other = first_token_norm_ratio(h, valid)
        self.add(layer, top=self.REDUCE["top"]([], top), hist=hists.sum(0).cpu(), channels=flags.sum(0).cpu(),
                 tokens=tokens, n_massive=int(per_token.sum()),
                 at_first=int(per_token[(pi == 0).cpu()].sum()), first_norm=first, other_norm=other,
                 n_first=h.shape[0], n_other=int(valid[:, 1:].sum()))

    def finish(self, loaded, settings):
        tok = loaded.tokenizer
        text = lambda tid: tok.decode([tid])  # noqa: E731
        layers = []
        for layer in sorted(self.acc):
            a = self.acc[layer]
            chans = a["channels"]
            ch = [(int(c), int(chans[c])) for c in chans.argsort(descending=True, stable=True)[:5] if chans[c] > 0]
            toks = sorted(a["tokens"].items(), key=lambda t: (-t[1], t[0]))[:5]
            layers.append(LayerMassive(
                layer=layer, max_abs=a["top"][0][0], median_abs=histogram_median(a["hist"]),
                top=[Activation(v, s, p, c, text(t)) for v, s, p, c, t in a["top"]], n_massive=a["n_massive"],
                top_channels=ch, top_tokens=[(text(t), n) for t, n in toks], massive_at_first=a["at_first"],
                first_norm=a["first_norm"] / max(a["n_first"], 1), other_norm=a["other_norm"] / max(a["n_other"], 1)))
        return MassiveResult(model=loaded.info.to_dict(),
                             settings={**settings, "top_k": self.top_k, "abs_threshold": self.abs_threshold,
                                       "ratio": self.ratio}, layers=layers)


@dataclass
class Activation:
    value: float      # |h|
    seq: int
    pos: int
    channel: int
    token: str


@dataclass
class LayerMassive:
    layer: int
    max_abs: float
    median_abs: float
    top: list[Activation]
    n_massive: int
    top_channels: list[tuple[int, int]]       # (channel, count of massive values)
    top_tokens: list[tuple[str, int]]         # (token text, count of massive values)
    massive_at_first: int                     # massive values at position 0
    first_norm: float                         # mean L2 norm of the hidden state at position 0
    other_norm: float                         # mean L2 norm at positions >= 1

    @property
    def ratio(self) -> float:
        return self.max_abs / self.median_abs if self.median_abs > 0 else float("inf")


@dataclass(repr=False)
class MassiveResult(Result):
    """Largest |values| of the residual stream after each layer (the paper's M-Act)."""

    model: dict
    settings: dict
    layers: list[LayerMassive] = field(default_factory=list)

    COLUMNS: ClassVar = ("m_act", "m_act_layer_mean")
    LABELS: ClassVar = {"m_act": "M-Act (max over layers)", "m_act_layer_mean": "M-Act (mean over layers)"}
    RATIOS: ClassVar = ("m_act", "m_act_layer_mean")

    @property
    def m_act(self) -> float:
        """Maximum over layers of each layer's max |hidden| (one reading of the paper's M-Act)."""
        return m_act([ly.max_abs for ly in self.layers])[0]

    @property
    def m_act_layer_mean(self) -> float:
        """Mean over layers of each layer's max |hidden| (the other reading; fits the paper's appendix curve)."""
        return m_act([ly.max_abs for ly in self.layers])[1]

    @property
    def n_massive(self) -> int:
        return sum(ly.n_massive for ly in self.layers)

    def columns(self) -> dict:
        return {"m_act": self.m_act, "m_act_layer_mean": self.m_act_layer_mean}

    def tables(self) -> dict:
        return {"massive_layers": self.to_frame(), "massive_channels": self.channel_frame()}

    def display(self) -> dict:
        s = self.settings
        return {"title": f"Max |hidden| per layer of {self.model['spec']}", "frame": self.to_frame(),
                "columns": {"layer": "layer", "max_abs": "max |h|", "median_abs": "median |h|", "ratio": "ratio",
                            "n_massive": "# massive", "pos": "pos", "token": "token", "channel": "channel"},
                "total": {"layer": "model", "max_abs": self.m_act},
                "notes": [f"M-Act: max over layers {self.m_act:.2f}, mean over layers {self.m_act_layer_mean:.2f}; "
                          f"{self.n_massive} massive values (|h| > {s['abs_threshold']:g} and > {s['ratio']:g} x median)"]}

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{"layer": ly.layer, "max_abs": ly.max_abs, "median_abs": ly.median_abs,
                              "ratio": ly.ratio, "n_massive": ly.n_massive, "pos": ly.top[0].pos,
                              "token": ly.top[0].token, "channel": ly.top[0].channel,
                              "first_token_norm": ly.first_norm, "other_norm": ly.other_norm}
                             for ly in self.layers])

    def channel_frame(self):
        """Channels that carry massive values, summed over layers."""
        import pandas as pd

        counts: dict[int, int] = {}
        layers: dict[int, int] = {}
        for ly in self.layers:
            for ch, c in ly.top_channels:
                counts[ch] = counts.get(ch, 0) + c
                layers[ch] = layers.get(ch, 0) + 1
        rows = [{"channel": ch, "n_massive": c, "n_layers": layers[ch]} for ch, c in counts.items()]
        return pd.DataFrame(rows, columns=["channel", "n_massive", "n_layers"]).sort_values(
            ["n_massive", "channel"], ascending=[False, True], ignore_index=True)

    @classmethod
    def from_dict(cls, d: dict) -> MassiveResult:
        return cls(d["model"], d["settings"], [
            LayerMassive(ly["layer"], ly["max_abs"], ly["median_abs"], [Activation(**a) for a in ly["top"]],
                         ly["n_massive"], [(c["channel"], c["count"]) for c in ly["channels"]],
                         [(t["token"], t["count"]) for t in ly["tokens"]], ly["massive_at_first_token"],
                         ly["first_token_norm"], ly["other_norm"]) for ly in d["layers"]])

    def to_dict(self) -> dict:
        return {
            "m_act": self.m_act,
            "m_act_layer_mean": self.m_act_layer_mean,
            "n_massive": self.n_massive,
            "layers": [{"layer": ly.layer, "max_abs": ly.max_abs, "median_abs": ly.median_abs, "ratio": ly.ratio,
                        "n_massive": ly.n_massive, "massive_at_first_token": ly.massive_at_first,
                        "first_token_norm": ly.first_norm, "other_norm": ly.other_norm,
                        "top": [asdict(a) for a in ly.top],
                        "channels": [{"channel": c, "count": n} for c, n in ly.top_channels],
                        "tokens": [{"token": t, "count": n} for t, n in ly.top_tokens]}
                       for ly in self.layers],
            "model": self.model,
            "settings": self.settings,
        }


Massive.result_type = MassiveResult
