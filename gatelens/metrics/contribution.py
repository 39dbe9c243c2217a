"""What the sink contributes: value drain and norm-based attention (Gu et al. 2024; Kobayashi et al. 2020).

A weight on a key whose value is near zero writes almost nothing. Per head h with values v_j and W_O^h:
  value_ratio   ||v_0|| / median_{j>=1} ||v_j||              (per sequence, then summed: ratio of sums)
  image_ratio   ||v_0 W_O^h|| / median_{j>=1} ||v_j W_O^h||   (the value's image in the residual stream)
  f_attn        mean over queries i >= 1 of a_i0                 (plain F-Attn, for reference)
  f_attn_norm   mean over queries i >= 1 of a_i0 ||v_0 W_O|| / sum_j a_ij ||v_j W_O||
                (the norm-weighted F-Attn: key 0's share of the norms of the terms a_ij v_j W_O)
  first_share   sum_i ||a_i0 v_0 W_O|| / sum_i ||y_i W_O||      (key 0's term against the head's output)
and for G1-gated models (gate s_i on the SDPA output y_i, per head or per head and dimension)
  first_share_gated   sum_i ||a_i0 (s_i * v_0) W_O|| / sum_i ||(s_i * y_i) W_O||.
For a headwise gate the norm-weighted share is unchanged by the gate (s_i cancels); an elementwise gate makes
the terms' norms depend on both i and j, so only the output share is given after the gate. A value gate (G2)
acts before attention: its values are already the gated ones. Biases are left out (as in `rank`).

||x W_O^h|| comes from the d x d Gram matrix W_O^h W_O^h^T; the sums over keys sum_j a_ij ||v_j W_O|| from the
same LSE-recomputed tiles as `received` (`key_sums`): O(n) memory, no n x n pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..models.gate_logits import gate_logits, hook_gates
from .base import HeadLayer, HeadResult, Probe, check_finite
from .received import key_sums
from .sink import query_mask

Tensor = torch.Tensor


def image_norms(x: Tensor, gram: Tensor) -> Tensor:
    """||x W_O^h|| from x [b, h, n, d] and gram = W_O^h W_O^h^T [h, d, d] -> [b, h, n] (float64)."""
    x = x.double()
    return torch.einsum("bhnd,hde,bhne->bhn", x, gram.double().to(x.device), x).clamp(min=0).sqrt()


def first_weights(query: Tensor, key0: Tensor, lse: Tensor, scale: float, mask: Tensor | None,
                  softcap: float | None = None) -> Tensor:
    """Weight of every query on key 0 [b, h, n] (float64), soft-capped logits included."""
    logits = torch.einsum("bhqd,bhd->bhq", query.float(), key0.float()) * scale
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    if mask is not None:
        m = mask[..., 0]
        logits = logits.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else logits + m.float()
    return torch.exp(logits - lse).double()


def sequence_medians(norms: Tensor, lengths: Tensor) -> Tensor:
    """Median over positions 1 <= j < length of each sequence, [b, h, n] -> [b, h] (lower median, as torch)."""
    out = torch.full(norms.shape[:2], float("nan"), dtype=norms.dtype, device=norms.device)
    for i, m in enumerate(lengths.tolist()):
        if m > 1:
            out[i] = norms[i, :, 1:m].median(-1).values
    return out


def contribution_reference(pattern: Tensor, values: Tensor, w_o: Tensor, output: Tensor, lengths: Tensor | None = None,
                           gate: Tensor | None = None) -> dict[str, Tensor]:
    """Slow reference from the full pattern [b, h, n, n], values [b, h, n, d] (per query head), W_O [h, d, D],
    SDPA output [b, h, n, d] and gate scores [b, h, n, g] (or None): per-head statistics [h]."""
    b, h, n, _ = pattern.shape
    lengths = torch.full((b,), n) if lengths is None else lengths
    p, v, w = pattern.double().nan_to_num(), values.double(), w_o.double()
    img = torch.einsum("bhnd,hdD->bhnD", v, w).norm(dim=-1)                        # [b, h, n]
    terms = p * img[:, :, None, :]                                                  # [b, h, i, j]
    valid = query_mask(lengths, n)[:, None, :].double()                             # [b, 1, n]
    nq = valid.sum((0, 2))
    out_norm = torch.einsum("bhnd,hdD->bhnD", output.double(), w).norm(dim=-1)
    med_v = sequence_medians(v.norm(dim=-1), lengths)
    med_i = sequence_medians(img, lengths)
    res = {"value_ratio": v[:, :, 0].norm(dim=-1).sum(0) / med_v.sum(0), "image_ratio": img[:, :, 0].sum(0) / med_i.sum(0),
           "f_attn": (p[..., 0] * valid).sum((0, 2)) / nq,
           "f_attn_norm": (terms[..., 0] / terms.sum(-1) * valid).nan_to_num().sum((0, 2)) / nq,
           "first_share": (terms[..., 0] * valid).sum((0, 2)) / (out_norm * valid).sum((0, 2))}
    if gate is not None:
        s = gate.double()
        first_g = torch.einsum("bhnd,hdD->bhnD", p[..., 0, None] * s * v[:, :, :1], w).norm(dim=-1)
        out_g = torch.einsum("bhnd,hdD->bhnD", s * output.double(), w).norm(dim=-1)
        res["first_share_gated"] = (first_g * valid).sum((0, 2)) / (out_g * valid).sum((0, 2))
    return res


class HeadOutputs(Probe):
    """Base of the probes that weigh each head's output in the residual stream: W_O^h W_O^h^T per attention layer
    (`self.grams`) and, for G1-gated models, the gate scores of the layer being measured (`self.pending`)."""

    reads_weights = True

    def attach(self, loaded):
        super().attach(loaded)
        from ..models.weights import ov_weights

        self.grams = {}
        for layer in loaded.info.attention_layers:
            w_o = ov_weights(loaded, layer)[1].double()                               # [h, d, D]
            self.grams[layer] = w_o @ w_o.transpose(-1, -2)
        self.pending: dict[int, Tensor] = {}
        self.g1 = loaded.info.gate_position == "G1"
        return hook_gates(loaded, lambda layer: self._hook(loaded, layer)) if self.g1 else []

    def _hook(self, loaded, layer):
        def hook(module, args, output):
            self.pending[layer] = torch.sigmoid(gate_logits(loaded, output, module).double())   # [b, pos, h, g]
        return hook

    def gate_scores(self, layer: int) -> Tensor | None:
        """The G1 gate scores of `layer`'s current forward, [b, h, n, g] (None: no G1 gate)."""
        s = self.pending.pop(layer, None)
        return None if s is None else s.transpose(1, 2)


class Contribution(HeadOutputs):
    """Per head: norms of key 0's value and of its W_O image against the median token's, norm-weighted F-Attn,
    key 0's share of the head output's norm (after the gate too, for G1-gated models)."""

    name = "contribution"
    listens_to_attention = True
    exact_with = frozenset({"learned_sink", "softcap"})

    def on_attention(self, ev, batch):
        lengths = batch.lengths.to(ev.query.device)
        b, h, n, d = ev.query.shape
        valid = query_mask(lengths, n)                                                  # [b, n]
        gram = self.grams[ev.layer].to(ev.query.device)
        v = ev.value[:, torch.arange(h, device=ev.query.device) // ev.n_rep]            # [b, h, n, d]
        vn = v.double().norm(dim=-1)
        img = image_norms(v, gram)                                                      # [b, h, n]
        softcap = getattr(ev, "softcap", None)
        a0 = first_weights(ev.query, ev.first_key(), ev.lse, ev.scale, ev.mask, softcap)          # [b, h, n]
        _, _, denom = key_sums(ev.query, ev.key, ev.lse, ev.scale, ev.mask, valid, row_values=img, softcap=softcap)
        check_finite(f"attention of layer {ev.layer}", denom)
        vq = valid[:, None].double()
        term0 = a0 * img[:, :, :1]                                                      # ||a_i0 v_0 W_O||
        share = torch.where(denom > 0, term0 / denom.clamp(min=1e-300), 0.0)
        out_norm = image_norms(ev.output, gram)
        fields = dict(value_first=vn[:, :, 0].sum(0), value_median=sequence_medians(vn, lengths).sum(0),
                      image_first=img[:, :, 0].sum(0), image_median=sequence_medians(img, lengths).sum(0),
                      f_attn=(a0 * vq).sum((0, 2)), f_attn_norm=(share * vq).sum((0, 2)), n=float(valid.sum()),
                      first_term=(term0 * vq).sum((0, 2)), out_norm=(out_norm * vq).sum((0, 2)))
        s = self.gate_scores(ev.layer)                                                  # [b, h, n, g]
        if s is not None:
            first_g = image_norms(s * v[:, :, :1].double(), gram) * a0
            out_g = image_norms(s * ev.output.double(), gram)
            fields.update(first_term_gated=(first_g * vq).sum((0, 2)), out_norm_gated=(out_g * vq).sum((0, 2)))
        self.add(ev.layer, **{k: x.cpu() if isinstance(x, Tensor) else x for k, x in fields.items()})

    def finish(self, loaded, settings):
        layers = []
        for layer in sorted(self.acc):
            a = self.acc[layer]
            n = max(a["n"], 1)
            heads = {"f_attn": a["f_attn"] / n, "f_attn_norm": a["f_attn_norm"] / n,
                     "value_ratio": a["value_first"] / a["value_median"],
                     "image_ratio": a["image_first"] / a["image_median"],
                     "first_share": a["first_term"] / a["out_norm"]}
            if "first_term_gated" in a:
                heads["first_share_gated"] = a["first_term_gated"] / a["out_norm_gated"]
            layers.append(HeadLayer(layer, {k: v.tolist() for k, v in heads.items()}))
        return ContributionResult(model=loaded.info.to_dict(), settings=settings, layers=layers)


@dataclass(repr=False)
class ContributionResult(HeadResult):
    """Value drain and norm-weighted F-Attn per layer and head of one model on one input set."""

    COLUMNS: ClassVar = ("f_attn_norm", "first_share", "first_share_gated")
    LABELS: ClassVar = {"f_attn_norm": "norm-weighted F-Attn", "first_share": "key-0 share of head output",
                        "first_share_gated": "  ... after the gate"}
    RATIOS: ClassVar = ("f_attn_norm",)

    def columns(self) -> dict:
        return {k: self.overall(k) for k in self.COLUMNS}

    def headline(self) -> dict:
        return {"summary": self.summary()}

    def tables(self) -> dict:
        return {"contribution_heads": self.to_frame(), "contribution_layers": self.layer_frame()}

    def display(self) -> dict:
        s = self.settings
        cols = {"layer": "layer", "f_attn": "F-Attn", "f_attn_norm": "norm-weighted", "first_share": "key-0 share",
                "value_ratio": "|v0|/median", "image_ratio": "|v0 W_O|/median"}
        if "first_share_gated" in self.keys():
            cols["first_share_gated"] = "key-0 share gated"
        return {"title": f"Sink contribution of {self.model['spec']} ({s['input']}, {s['n_seqs']} x {s['seq_len']})",
                "frame": self.layer_frame(), "columns": cols, "total": {"layer": "model", **self.summary()},
                "notes": ["norm-weighted: key 0's share of sum_j ||a_ij v_j W_O|| (Kobayashi et al. 2020); key-0 share: "
                          "||a_i0 v_0 W_O|| against the head output's norm, summed over queries"]}


Contribution.result_type = ContributionResult
