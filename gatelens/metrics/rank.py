"""Effective rank of W_V^h W_O^h and of the head outputs, computed from d_head x d_head factors.

For head h, W_V^h (d_model x d) and W_O^h (d x d_model) give the OV circuit W_V^h W_O^h, a
d_model x d_model matrix of rank <= d. With QR factors W_V^h = Q1 R1 and (W_O^h)^T = Q2 R2 its
nonzero singular values are those of the d x d matrix R1 R2^T: no d_model^2 product is formed.

Head outputs o^h = z^h W_O^h over N tokens: with the Gram matrix G = Z^T Z (d x d) accumulated over
tokens, the singular values of O (N x d_model) are sqrt(eig(G^{1/2} W_O W_O^T G^{1/2})).

Effective rank (Roy & Vetterli 2007): exp(-sum p_i ln p_i), p_i = sigma_i / sum sigma.
Stable rank: sum sigma^2 / max sigma^2. Numerical rank: #{sigma_i > tol * max sigma}.
`Rank` reads the weights through the family table and, on tokens, accumulates G per head (gate on,
and for G1 gates also the ungated outputs, for the linearised gate); `RankResult` holds the ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import GatelensError
from ..models.gate_logits import gate_logits, hook_gates
from .base import HeadLayer, HeadResult, Probe, check_finite

Tensor = torch.Tensor
DEFAULT_TOL = 1e-3


def ov_singular_values(w_v: Tensor, w_o: Tensor) -> Tensor:
    """Singular values of W_V W_O per head. w_v: [head, d_model, d]; w_o: [head, d, d_model] -> [head, d]."""
    r1 = torch.linalg.qr(w_v.double()).R                      # [h, d, d]
    r2 = torch.linalg.qr(w_o.double().transpose(-1, -2)).R   # [h, d, d]
    return torch.linalg.svdvals(r1 @ r2.transpose(-1, -2))


def output_singular_values(gram: Tensor, w_o: Tensor) -> Tensor:
    """Singular values of Z W_O from G = Z^T Z. gram: [head, d, d]; w_o: [head, d, d_model] -> [head, d]."""
    evals, evecs = torch.linalg.eigh(gram.double())
    root = evecs @ torch.diag_embed(evals.clamp(min=0).sqrt()) @ evecs.transpose(-1, -2)   # G^{1/2}
    w = w_o.double()
    m = root @ (w @ w.transpose(-1, -2)) @ root
    return torch.linalg.eigvalsh(m).clamp(min=0).sqrt().flip(-1)


def effective_rank(s: Tensor) -> Tensor:
    """exp(entropy of s / sum s) along the last dim; 0 for an all-zero vector."""
    total = s.sum(-1, keepdim=True)
    p = s / total.clamp(min=1e-300)
    ent = -(p * torch.log(p.clamp(min=1e-300))).sum(-1)
    return torch.where(total.squeeze(-1) > 0, ent.exp(), torch.zeros_like(ent))


def stable_rank(s: Tensor) -> Tensor:
    return s.square().sum(-1) / s.amax(-1).square().clamp(min=1e-300)


def numerical_rank(s: Tensor, tol: float = DEFAULT_TOL) -> Tensor:
    return (s > tol * s.amax(-1, keepdim=True)).sum(-1)


def head_gram(z: Tensor, valid: Tensor) -> Tensor:
    """Sum over valid tokens of z z^T per head. z: [batch, pos, head, d]; valid: [batch, pos] -> [head, d, d]."""
    zv = z.double() * valid[..., None, None]
    return torch.einsum("bphi,bphj->hij", zv, z.double())


def check_tol(tol: float) -> float:
    if not 0 < tol < 1:
        raise GatelensError(f"--tol {tol:g} is outside (0, 1): numerical rank counts sigma > tol x max sigma")
    return tol


class Rank(Probe):
    """Effective rank of W_V W_O per head (weights) and of the head outputs z W_O over tokens.

    For G1-gated models the outputs are measured with the gate on, and with the gate replaced by
    its mean score per head and dimension (linearised), which removes the non-linearity.
    With `tokens=False` only the weights are read (no forward pass needed).
    """

    name = "rank"
    listens_to_attention = True
    exact_with = frozenset({"softcap", "learned_sink"})
    reads_weights = True

    def __init__(self, tol: float = DEFAULT_TOL, tokens: bool = True):
        super().__init__()
        self.tol, self.tokens = check_tol(tol), tokens

    def attach(self, loaded):
        super().attach(loaded)
        self.pending: dict[int, Tensor] = {}
        self.g1 = loaded.info.gate_position == "G1"
        if not (self.g1 and self.tokens):
            return []
        return hook_gates(loaded, lambda layer: self._hook(loaded, layer))

    def _hook(self, loaded, layer):
        def hook(module, args, output):
            s = torch.sigmoid(gate_logits(loaded, output, module).double())
            valid = self.batch.valid().to(s.device)
            self.pending[layer] = s
            self.add(layer, gate_sum=(s * valid[..., None, None]).sum((0, 1)), gate_n=float(valid.sum()))
        return hook

    def on_attention(self, ev, batch):
        if not self.tokens:
            return
        y = ev.output.transpose(1, 2)
        check_finite(f"the attention output of layer {ev.layer}", y)  # eigh of a NaN Gram matrix fails unreadably
        valid = batch.valid().to(y.device)
        self.add(ev.layer, gram_y=head_gram(y, valid))
        s = self.pending.pop(ev.layer, None)
        if s is not None:
            self.add(ev.layer, gram_z=head_gram(y * s, valid))

    def finish(self, loaded, settings):
        from ..models.weights import ov_weights

        layers = []
        for layer in loaded.info.attention_layers:
            w_v, w_o = ov_weights(loaded, layer)
            check_finite(f"W_V / W_O of layer {layer}", torch.cat([w_v.flatten(), w_o.flatten()]))
            sv = ov_singular_values(w_v, w_o)
            heads = {"ov_effective_rank": effective_rank(sv), "ov_stable_rank": stable_rank(sv),
                     "ov_numerical_rank": numerical_rank(sv, self.tol).double()}
            a = self.acc.get(layer, {})
            if "gram_y" in a:
                gy = a["gram_y"]
                gz = a.get("gram_z", gy)
                heads["out_effective_rank"] = effective_rank(output_singular_values(gz, w_o))
                if "gram_z" in a:
                    gbar = a["gate_sum"] / a["gate_n"]                       # [head, g]: mean gate per dim
                    gbar = gbar.expand(gy.shape[0], gy.shape[1])
                    glin = gbar[:, :, None] * gy * gbar[:, None, :]           # diag(g) G_y diag(g)
                    heads["out_effective_rank_linearized"] = effective_rank(output_singular_values(glin, w_o))
            layers.append(HeadLayer(layer, {k: v.tolist() for k, v in heads.items()},
                                    head_extra={"ov_singular_values": sv.tolist()}))
        return RankResult(model=loaded.info.to_dict(), settings={**settings, "tol": self.tol}, layers=layers)


@dataclass(repr=False)
class RankResult(HeadResult):
    """Effective rank of each head's W_V W_O (weights) and of its actual outputs (tokens)."""

    COLUMNS: ClassVar = ("ov_effective_rank", "out_effective_rank", "out_effective_rank_linearized")
    RATIOS: ClassVar = ("ov_effective_rank", "out_effective_rank")
    LABELS: ClassVar = {"ov_effective_rank": "eff. rank W_V·W_O", "out_effective_rank": "eff. rank head outputs",
                        "out_effective_rank_linearized": "  ... gate linearised"}

    def tables(self) -> dict:
        return {"rank_heads": self.to_frame(), "rank_layers": self.layer_frame()}

    def display(self) -> dict:
        keys = self.keys()
        return {"title": f"Rank per layer (mean over heads) of {self.model['spec']}, d_head = {self.model['d_head']}",
                "frame": self.layer_frame(), "columns": {"layer": "layer", **{k: k.replace("_", " ") for k in keys}},
                "total": {"layer": "model", **self.summary()}, "notes": []}


Rank.result_type = RankResult
