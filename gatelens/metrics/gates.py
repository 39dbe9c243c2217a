"""Gate-score sparsity: statistics of sigmoid gate scores s in (0, 1), accumulated as additive sums.

`batch_sums(scores, valid)` turns one batch of scores [batch, pos, head, g] (g = d_head for
elementwise gates, 1 for headwise) into per-head sums; sums of successive batches add up, and
`summarize` turns the total into per-head statistics. Memory never grows with the data.

Query dependence is a variance decomposition of each head's scores s[t, c] (token t, dimension c):
  total   = Var_{t,c}(s)
  token   = Var_t(mean_c s[t, c])   -- how much the gate moves from query to query
  channel = Var_c(mean_t s[t, c])   -- how much it differs between dimensions
reported as shares of the total.

Cost: each gated layer's scores are copied once, head-first in float64; every statistic is a contiguous
reduction of that copy or a sum of its fine histogram, whose bins are computed last, in place (float32
scores times 2000 are exact in float64, so the bins are exactly floor(2000 s)). The SDPA outputs'
histogram bins |y| on its float32 bit pattern (`bitbins`): no logarithm, no rounded edge.
`Gates` hooks each layer's gate module (scores) and listens to attention (the SDPA output y the
gate multiplies); `GatesResult` holds the per-head statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import GatelensError
from ..models.gate_logits import gate_logits, hook_gates
from . import bitbins
from .base import MAX, MIN, HeadLayer, HeadResult, Probe, check_finite

Tensor = torch.Tensor
N_BINS = 50          # histogram bins on [0, 1] (paper-style plots)
N_FINE = 2000        # fine bins for the median (resolution 5e-4); a multiple of N_BINS
SMALL = 1e-2         # "output below 1e-2 in magnitude" (the paper's appendix)
# |y| histogram in float32 bit-pattern space: bins 2^16 bit patterns wide (128 per octave, each <= 0.78% of
# its lower edge), from 2^-27 (7.5e-9) to 2^14, offset so that SMALL is a bin edge (the share below 1e-2 is exact).
OCT_MIN, OCT_MAX, SUB_BITS = -27, 14, 7
_SHIFT = 23 - SUB_BITS


def _float32_above(c: float) -> float:
    """The smallest float32 >= c: for float32 v, v < c exactly iff v < _float32_above(c) in float32."""
    f = torch.tensor(c, dtype=torch.float32)
    if float(f) < c:
        f = torch.nextafter(f, torch.tensor(float("inf")))
    return float(f)


SMALL32 = _float32_above(SMALL)
_SMALL_BITS = int(torch.tensor(SMALL32).view(torch.int32))
N_SMALL = -(-(_SMALL_BITS - bitbins.float_bits(OCT_MIN)) >> _SHIFT)   # bins below SMALL
_BASE = _SMALL_BITS - (N_SMALL << _SHIFT)                              # bit pattern of the first edge
N_LOG = N_SMALL + ((bitbins.float_bits(OCT_MAX) - _SMALL_BITS) >> _SHIFT)


def _head_first(x: Tensor, valid: Tensor) -> Tensor:
    """[batch, pos, head, g] -> [head, n_valid_tokens, g] contiguous in float64 (one copy)."""
    rows = x.reshape(-1, *x.shape[2:]) if bool(valid.all()) else x[valid]       # [tokens, head, g]
    out = torch.empty((rows.shape[1], rows.shape[0], rows.shape[2]), dtype=torch.float64, device=x.device)
    return out.copy_(rows.transpose(0, 1))


def fine_histogram_(s: Tensor) -> Tensor:
    """Per-head counts of floor(N_FINE s) for s [head, ...] in float64 (s = 1 falls in the last bin).

    Overwrites s: the bins are computed in place (float32 scores times N_FINE are exact in float64)."""
    h = s.shape[0]
    idx = s.view(h, -1).mul_(N_FINE).to(torch.int32).clamp_(0, N_FINE - 1)
    idx += (torch.arange(h, device=s.device, dtype=torch.int32) * N_FINE)[:, None]
    return torch.bincount(idx.view(-1), minlength=h * N_FINE).view(h, N_FINE).double()


def batch_sums(scores: Tensor, valid: Tensor) -> dict[str, Tensor]:
    """Additive per-head sums of one batch. scores: [batch, pos, head, g]; valid: [batch, pos] bool."""
    s = _head_first(scores, valid)                  # [h, tokens, g]
    h, n_valid, g = s.shape
    flat = s.view(h, -1)
    tok_mean = s.mean(-1)                                            # [h, tokens]
    first = scores[:, 0][valid[:, 0]].double()                       # [batch with a first token, h, g]
    big = torch.finfo(torch.float64).max
    empty = n_valid == 0
    full = lambda v: torch.full((h,), float(v), dtype=torch.float64, device=s.device)
    lo, hi = (full(big), full(-big)) if empty else (flat.amin(-1), flat.amax(-1))
    out = {
        "n": full(n_valid * g),
        "sum": flat.sum(-1),
        "sumsq": torch.linalg.vector_norm(flat, dim=-1).square() if n_valid else full(0),
        "tok_sum": tok_mean.sum(-1),
        "tok_sumsq": tok_mean.square().sum(-1),
        "n_tok": full(n_valid),
        "chan_sum": s.sum(1),                                        # [h, g]
        "first_sum": first.sum((0, 2)),
        "n_first": full(first.shape[0] * g),
        "min": lo,
        "max": hi,
    }
    fine = fine_histogram_(s)                                        # last: overwrites s
    # s < 0.1 iff floor(2000 s) < 200, etc.: exact for float32 s (no float32 lies between 0.1 and its float64)
    cum = fine.cumsum(-1)
    out.update({
        "below_01": cum[:, N_FINE // 10 - 1],
        "below_05": cum[:, N_FINE // 2 - 1],
        "above_09": cum[:, -1] - cum[:, N_FINE * 9 // 10 - 1],
        "hist": fine.view(h, N_BINS, N_FINE // N_BINS).sum(-1),
        "fine": fine,
    })
    return out


def fine_median(fine: Tensor) -> Tensor:
    """Per-head median from the fine histogram [head, N_FINE], linear inside the bin."""
    return (bitbins.median_position(fine) / N_FINE).squeeze(1)


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


def log_bin_position(v: Tensor) -> Tensor:
    """Fractional |y|-histogram bin of positive values v (float64), clamped to [0, N_LOG]."""
    return bitbins.position(v, _BASE, _SHIFT).clamp(0, N_LOG)


def log_bin_edges() -> Tensor:
    """The N_LOG + 1 bin edges of the |y| histogram (float64; bin 0 also holds smaller values, the last larger)."""
    return bitbins.value(torch.arange(N_LOG + 1, dtype=torch.float64), _BASE, _SHIFT)


def _abs_bins_(a: Tensor) -> Tensor:
    """|y| float32 [B, head, M] -> its histogram bin + head * N_LOG, in place on the bit pattern."""
    bits = bitbins.bins_(a.view(torch.int32), _BASE, _SHIFT, N_LOG)
    bits += (torch.arange(a.shape[1], device=a.device, dtype=torch.int32) * N_LOG)[None, :, None]
    return bits


def output_sums(y: Tensor, s: Tensor, valid: Tensor) -> dict[str, Tensor]:
    """Sums for the effect on W_O's input. y: SDPA output [batch, head, pos, d] (the kernel's layout);
    s: gate scores [batch, pos, head, g] (g = d, or 1 for a headwise gate); valid: [batch, pos] bool."""
    if bool(valid.all()):
        y, s = y.float(), s.transpose(1, 2).float()                  # [b, h, pos, d], [b, h, pos, g]
    else:
        y, s = y.transpose(1, 2)[valid].float(), s[valid].float()    # [tokens, h, d], [tokens, h, g]
    h = y.shape[1]
    buf = torch.mul(y, s)                                            # the gated output y * s (one buffer)
    z = buf.abs_().flatten(2) if buf.dim() == 4 else buf.abs_()      # [B, h, M]
    per_head = lambda x: x.sum(-1).sum(0).double()                   # [B, h, M] -> [h]
    out = {"n": torch.full((h,), float(z.shape[0] * z.shape[2]), dtype=torch.float64, device=y.device),
           "abs_z": per_head(z), "small_z": per_head(z < SMALL32)}
    a = torch.abs(y, out=buf).flatten(2) if buf.dim() == 4 else torch.abs(y, out=buf)    # |y|, same buffer
    out["abs_y"] = per_head(a)
    hist = torch.bincount(_abs_bins_(a).flatten(), minlength=h * N_LOG).view(h, N_LOG).double()
    out["y_hist"] = hist
    out["small_y"] = hist[:, :N_SMALL].sum(-1)                       # |y| < SMALL: the bins below its edge
    return out


def output_summary(t: dict[str, Tensor], mean_gate: Tensor) -> dict[str, Tensor]:
    """Per head: mean |y| and |y * gate|, share below 1e-2, and the same for y scaled by the mean gate."""
    n = t["n"].clamp(min=1)
    # |y| * mean_gate < SMALL  <=>  |y| < SMALL / mean_gate: read off the histogram of |y|, linear in a bin.
    edge = log_bin_position(SMALL / mean_gate.clamp(min=1e-12))
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


class Gates(Probe):
    """Gate scores sigma(logits) per gated layer and head: sums for sparsity, query dependence, W_O input.

    State per layer: the score sums of `batch_sums` (key = layer) and, for G1 gates, the output sums of
    `output_sums` (key = (layer, "out")).
    """

    name = "gates"
    in_training = True
    listens_to_attention = True
    exact_with = frozenset({"softcap", "learned_sink"})
    REDUCE = {"min": MIN, "max": MAX}

    @classmethod
    def applies(cls, loaded) -> bool:
        return loaded.info.gated

    def attach(self, loaded):
        if not loaded.info.gated:  # the one check, before any forward: measure.gates and `gatelens gates` rely on it
            raise GatelensError(f"{loaded.info.spec} has no attention gates; `gates` applies to gated models such as "
                                "mech-gated, a paper checkpoint (1B_gate_elementwise) or Qwen3-Next / Qwen3.5")
        super().attach(loaded)
        self.pending: dict[int, Tensor] = {}
        self.g1 = loaded.info.gate_position == "G1"
        return hook_gates(loaded, lambda layer: self._hook(loaded, layer))

    def _hook(self, loaded, layer):
        def hook(module, args, output):
            scores = torch.sigmoid(gate_logits(loaded, output, module).float())
            sums = batch_sums(scores, self.batch.valid().to(scores.device))
            check_finite(f"the gate scores of layer {layer}", sums["sum"])  # a NaN score makes its head's sum NaN
            self.add(layer, **sums)
            if self.g1:
                self.pending[layer] = scores
        return hook

    def on_attention(self, ev, batch):
        scores = self.pending.pop(ev.layer, None)
        if scores is None:
            return
        valid = batch.valid().to(ev.output.device)  # ev.output: the SDPA output the gate multiplies, [b, h, pos, d]
        self.add((ev.layer, "out"), **output_sums(ev.output, scores, valid))

    def finish(self, loaded, settings):
        layers = []
        for layer in sorted(k for k in self.acc if isinstance(k, int)):
            t = self.acc[layer]
            stats = summarize(t)
            if (layer, "out") in self.acc:
                stats.update(output_summary(self.acc[(layer, "out")], stats["mean"]))
            layers.append(HeadLayer(layer, {k: v.tolist() for k, v in stats.items()},
                                    extra={"n_scores": int(t["n"].sum()), "hist": t["hist"].sum(0).tolist()}))
        return GatesResult(model=loaded.info.to_dict(), settings=settings, layers=layers)


@dataclass(repr=False)
class GatesResult(HeadResult):
    """Sigmoid gate scores of every gated attention layer: sparsity, query dependence, effect on W_O's input."""

    COLUMNS: ClassVar = ("mean_gate",)
    LABELS: ClassVar = {"mean_gate": "mean gate score"}

    @property
    def mean_gate(self) -> float:
        """Mean gate score over all layers, heads, dimensions and tokens (the paper's 'gate score')."""
        return self.overall("mean")

    def columns(self) -> dict:
        return {"mean_gate": self.mean_gate}

    def headline(self) -> dict:
        return {"mean_gate": self.mean_gate, "summary": self.summary()}

    @property
    def note(self) -> str | None:
        """For hybrid models: which layers have gates at all."""
        m = self.model
        if len(m["attention_layers"]) < m["n_layers"]:
            return (f"hybrid model: only its {len(m['attention_layers'])} full-attention layers "
                    f"{m['attention_layers']} have gates; the other layers are linear attention")
        return None

    def tables(self) -> dict:
        return {"gates_heads": self.to_frame(), "gates_layers": self.layer_frame(), "gates_hist": self.hist_frame()}

    def display(self) -> dict:
        cols = {"layer": "layer", "mean": "mean", "median": "median", "frac_below_0.1": "<0.1",
                "frac_below_0.5": "<0.5", "frac_above_0.9": ">0.9", "token_var_share": "var: tokens",
                "first_token_mean": "1st token", "rest_mean": "others"}
        notes = []
        if "mean_abs_sdpa" in self.layers[0].heads:
            o = self.summary()
            notes.append(f"W_O input: mean |SDPA output| {o['mean_abs_sdpa']:.4g} -> gated {o['mean_abs_gated']:.4g} "
                         f"(mean-gate scaling {o['mean_abs_mean_scaled']:.4g}); share below 1e-2: "
                         f"{o['frac_small_sdpa']:.3f} -> {o['frac_small_gated']:.3f} "
                         f"(mean-gate scaling {o['frac_small_mean_scaled']:.3f})")
        if self.note:
            notes.append(self.note)
        m = self.model
        return {"title": f"Gate scores of {m['spec']} ({m['gate']}, {m['gate_position']})", "frame": self.layer_frame(),
                "columns": cols, "total": {"layer": "model", **{k: self.overall(k) for k in cols if k != "layer"}},
                "notes": notes}

    def hist_frame(self):
        import pandas as pd

        n = len(self.layers[0].extra["hist"])
        return pd.DataFrame([{"layer": ly.layer, "bin_lo": i / n, "bin_hi": (i + 1) / n, "count": c}
                             for ly in self.layers for i, c in enumerate(ly.extra["hist"])])


Gates.result_type = GatesResult
