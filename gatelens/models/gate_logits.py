"""Gate logits in every family's layout: read from the gate module's output, and written back into it.

Discovery (`discover.py`) finds where a family's gate sits and its layout (`Family.gate_layout`: interleaved
[q_h | g_h] rows of q_proj, AXK2's query rows, a gate projection of its own with Beam's per-head bias or Dory's
learned scale, or gatelens' own gated modules); every gate probe and the gate ablations read and write the logits
through these three functions, so a new layout is handled here once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import GatelensError

Tensor = torch.Tensor


def gate_logits(loaded, output: Tensor, module=None) -> Tensor:
    """The gate module's forward output -> gate logits [batch, pos, head, g] for the family's layout.

    `module`: the gate module itself (the hook's first argument), for families adding a per-head bias (Beam) or
    scaling the logits (Dory)."""
    from .gated import split_interleaved

    family = loaded.family
    if family.gate_layout == "interleaved":  # Qwen3-Next / Qwen3.5: q_proj output [.., H * 2 * d_head]
        return split_interleaved(output, loaded.info.n_heads, loaded.info.d_head)[1]
    if family.gate_layout == "query_rows":   # AXK2: rows per head [q_h | g_h], g_h the last gate_width
        return output.view(*output.shape[:-1], loaded.info.n_heads, -1)[..., -family.gate_width:]
    if family.gate_layout == "per_head":     # a gate projection of its own: [.., H * g]
        logits = output.view(*output.shape[:-1], loaded.info.n_heads, -1)
        if family.gate_scale:                # Dory: times (s_gate * s_gate_scale)^2, read off the attention module
            scale = getattr(module, "gatelens_gate_scale", None)
            if scale is None:
                raise GatelensError(f"{loaded.info.spec}: its gate logits are scaled by learned weights, which this "
                                    "measurement cannot see (internal: pass the gate module to gate_logits)")
            logits = logits * scale().to(logits).view(loaded.info.n_heads, -1)
        if family.gate_bias:
            bias = getattr(module, "gatelens_gate_bias", None)
            if bias is None:
                raise GatelensError(f"{loaded.info.spec}: its gate adds a per-head bias, which this measurement "
                                    "cannot see (internal: pass the gate module to gate_logits)")
            logits = logits + bias.to(logits)[:, None]
        return logits
    return output  # gatelens' gated modules hand the logits to hook_gate already split per head


def with_gate_logits(loaded, output: Tensor, new: Tensor, module=None) -> Tensor:
    """The gate module's forward output rewritten so that `gate_logits` reads `new` [batch, pos, head, g] from it
    (the inverse of gate_logits for every layout: what a gate ablation hands the model back)."""
    family, info = loaded.family, loaded.info
    if family.gate_layout in ("interleaved", "query_rows"):  # the gate rows sit beside the query rows: only they change
        width = info.d_head if family.gate_layout == "interleaved" else family.gate_width
        y = output.view(*output.shape[:-1], info.n_heads, -1).clone()
        y[..., -width:] = new
        return y.view_as(output)
    if family.gate_layout == "per_head":
        logits = new.expand(*output.shape[:-1], info.n_heads, new.shape[-1]).clone()
        if family.gate_scale:
            logits = logits / getattr(module, "gatelens_gate_scale")().to(logits).view(info.n_heads, -1)
        if family.gate_bias:
            logits = logits - getattr(module, "gatelens_gate_bias").to(logits)[:, None]
        return logits.reshape(output.shape).to(output.dtype)
    return new  # gatelens' gated modules: hook_gate's output is the logits themselves


def hook_gates(loaded, make_hook: Callable[[int], Callable]) -> list:
    """A forward hook on every attention layer's gate module (its output carries the gate logits)."""
    if loaded.family.gate_module is None:
        raise GatelensError(f"{loaded.info.spec} has a sigmoid output gate that gatelens recognises but cannot read "
                            f"yet ({loaded.family.gate_note}); `gatelens sink` and `massive` measure it")
    return [loaded.attention(layer).get_submodule(loaded.family.gate_module).register_forward_hook(make_hook(layer))
            for layer in loaded.info.attention_layers]
