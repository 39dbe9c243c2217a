"""The paper's G1/G2 sigmoid gates as small modules of our own, placed into transformers' Qwen3.

The paper's release (`QwQZh/gated_attention`, model_type "qwen3" + `headwise_attn_output_gate` /
`elementwise_attn_output_gate`) stores the gate rows inside `q_proj`. Per KV group the rows are
[queries of the group's G heads | gates of the group's G heads] ("grouped"), unlike Qwen3-Next /
Qwen3.5 which interleave per head as [q_h | g_h]; the two agree only when G = 1.

Instead of copying Qwen3's modeling file we swap two Linear layers of each attention module:
  q_proj -> GatedQProj: one Linear with the paper's full weight (so checkpoint keys and shapes are
            the paper's), returns the queries, hands the gate logits to o_proj (and to `hook_gate`)
  o_proj -> GatedOProj: W_O applied to z * sigmoid(gate)                       (G1, before W_O)
  v_proj -> GatedVProj: values * sigmoid(gate), gate rows inside v_proj          (G2, value gate)
The paper's ablations that are not query-dependent per head ride the same two modules:
  head-shared        q_proj rows [queries of all heads | d_head gate rows], one gate vector per
                     position shared by every head (the paper's head-shared W_theta: d_model x d_head)
  input-independent  no gate rows: q_proj holds a learned logit per head and dimension, `gate_logit`
                     [head, d_head], so the score sigma(b) is the same for every token
Everything else (norms, RoPE, attention kernels, masks) stays transformers' own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


from .gate_kinds import GATE_KINDS, GATES, GateKind  # noqa: E402,F401  (the table, torch-free)


def gate_width(gate: str, head_dim: int) -> int:
    """Gate scores per head: head_dim (elementwise, value, head-shared, input-independent), 1 (headwise)."""
    return 1 if GATE_KINDS[gate].headwise else head_dim


def gate_rows(gate: str, n_heads: int, n_kv: int, head_dim: int) -> tuple[str, torch.Tensor, torch.Tensor]:
    """(projection, row numbers of its plain weight, row numbers of its gate rows) of a gated build.

    Uses the forward's own split on row numbers, so it cannot disagree with the layout.
    """
    H, K, d = n_heads, n_kv, head_dim
    kind = GATE_KINDS[gate]
    if kind.position == "G2":  # v_proj: per KV group [values | gates]
        keep, g = split_grouped(torch.arange(K * 2 * d), K, 1, d, d)
        return "v_proj", keep, g.flatten()
    if kind.constant:
        return "q_proj", torch.arange(H * d), torch.arange(0)
    if kind.shared:
        return "q_proj", torch.arange(H * d), torch.arange(H * d, H * d + d)
    w = gate_width(gate, d)  # q_proj: per KV group [queries of G heads | gates of G heads]
    keep, g = split_grouped(torch.arange(H * (d + w)), K, H // K, d, w)
    return "q_proj", keep, g.flatten()


def split_grouped(x: torch.Tensor, n_kv: int, group: int, head_dim: int, g: int):
    """Paper layout [..., n_kv * (group*head_dim + group*g)] -> (q [..., H*head_dim], gate [..., H, g])."""
    lead = x.shape[:-1]
    x = x.view(*lead, n_kv, group * (head_dim + g))
    q, gate = torch.split(x, [group * head_dim, group * g], dim=-1)
    return q.reshape(*lead, n_kv * group * head_dim), gate.reshape(*lead, n_kv * group, g)


def split_interleaved(x: torch.Tensor, n_heads: int, head_dim: int):
    """Qwen3-Next / Qwen3.5 layout [..., H * 2 * head_dim] -> (q [..., H*head_dim], gate [..., H, head_dim])."""
    lead = x.shape[:-1]
    q, gate = torch.chunk(x.view(*lead, n_heads, 2 * head_dim), 2, dim=-1)
    return q.reshape(*lead, n_heads * head_dim), gate


class _GateSlot:
    """Carries the gate logits of the current forward from q_proj to o_proj of one attention module."""

    def __init__(self):
        self.logits: torch.Tensor | None = None


class GatedQProj(nn.Linear):
    """q_proj holding the paper's [queries | gates] rows per KV group; returns queries only.

    kind.shared: rows [queries | d_head shared gate rows]; kind.constant: queries only, plus the
    parameter `gate_logit` [head, g]. Either way hook_gate sees logits [batch, pos, head, g].
    """

    def __init__(self, d_model, n_heads, n_kv, head_dim, g, bias, slot: _GateSlot, kind: GateKind):
        rows = n_heads * head_dim + (0 if kind.constant else g if kind.shared else n_heads * g)
        super().__init__(d_model, rows, bias=bias)
        self.n_heads, self.n_kv, self.head_dim, self.g, self.kind = n_heads, n_kv, head_dim, g, kind
        if kind.constant:
            self.gate_logit = nn.Parameter(torch.zeros(n_heads, g))
        self.slot = slot
        self.hook_gate = nn.Identity()  # forward hooks here see the gate logits [batch, pos, head, g]

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        lead, H = y.shape[:-1], self.n_heads
        if self.kind.constant:
            q, gate = y, self.gate_logit.expand(*lead, H, self.g)
        elif self.kind.shared:
            q, gate = y[..., : H * self.head_dim], y[..., None, H * self.head_dim:].expand(*lead, H, self.g)
        else:
            q, gate = split_grouped(y, self.n_kv, H // self.n_kv, self.head_dim, self.g)
        self.slot.logits = self.hook_gate(gate)
        return q


class GatedOProj(nn.Linear):
    """o_proj applied to z * sigmoid(gate): the paper's G1 position."""

    def __init__(self, in_features, out_features, bias, n_heads, slot: _GateSlot):
        super().__init__(in_features, out_features, bias=bias)
        self.n_heads, self.slot = n_heads, slot

    def forward(self, z):
        gate, self.slot.logits = self.slot.logits, None
        if gate is None:
            raise RuntimeError("GatedOProj called without gate logits from its q_proj in the same forward")
        lead = z.shape[:-1]
        z = (z.view(*lead, self.n_heads, -1) * torch.sigmoid(gate)).reshape(*lead, -1)
        return F.linear(z, self.weight, self.bias)


class GatedVProj(nn.Linear):
    """v_proj with the value gate (G2): per KV group [values | gates], returns values * sigmoid(gate)."""

    def __init__(self, d_model, n_kv, head_dim, bias):
        super().__init__(d_model, n_kv * 2 * head_dim, bias=bias)
        self.n_kv, self.head_dim = n_kv, head_dim
        self.hook_gate = nn.Identity()

    def forward(self, x):
        v, gate = split_grouped(F.linear(x, self.weight, self.bias), self.n_kv, 1, self.head_dim, self.head_dim)
        gate = self.hook_gate(gate)
        lead = v.shape[:-1]
        return (v.view(*lead, self.n_kv, self.head_dim) * torch.sigmoid(gate)).reshape(*lead, -1)


def add_gates(model: nn.Module, gate: str, layers_path: str = "model.layers") -> None:
    """Replace q/o (G1) or v (G2) projections of every attention module by gated ones, in place.

    The new layers get default (uninitialised) weights: the loader fills them from a checkpoint, the
    trainer from the baseline twin's parameters plus separately drawn gate rows.
    """
    if gate == "none":
        return
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}")
    cfg = model.config
    H, K = cfg.num_attention_heads, cfg.num_key_value_heads
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    bias = bool(getattr(cfg, "attention_bias", False))
    kind = GATE_KINDS[gate]
    for layer in model.get_submodule(layers_path):
        attn = layer.self_attn
        if kind.position == "G2":
            attn.v_proj = GatedVProj(cfg.hidden_size, K, d, bias).to(attn.v_proj.weight)
            continue
        slot = _GateSlot()
        attn.q_proj = GatedQProj(cfg.hidden_size, H, K, d, gate_width(gate, d), bias, slot, kind).to(attn.q_proj.weight)
        old_o = attn.o_proj
        attn.o_proj = GatedOProj(old_o.in_features, old_o.out_features, old_o.bias is not None, H, slot).to(old_o.weight)
