"""The family table: one row of facts per architecture, so no code says `if family == ...`.

A row names where the decoder layers and their attention modules live, how Q/K/V/O are stored
(separate projections, GPT-2's fused Conv1D, GPT-NeoX's per-head fused QKV), where the sigmoid
output gate sits and how its rows are laid out. Adding a family is adding a row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # HF config.model_type values served by this row
    layers: str                   # dotted path from the CausalLM to the ModuleList of decoder layers
    attn: str                     # attribute of a decoder layer holding its attention module
    qkv: str                      # "separate" (q_proj/k_proj/v_proj/o_proj), "gpt2" (c_attn/c_proj), "neox"
    o_proj: str                   # attribute of the attention module that is W_O
    gate: str = "none"            # "none" | "elementwise" | "headwise" | "value"
    gate_layout: str | None = None  # "interleaved" ([q_h | g_h] per head) | "grouped" (paper: per KV group) |
    #                                 "per_head" (a gate projection of its own) | "query_rows" (see gate_width)
    gate_module: str | None = None  # module (under attn) whose forward output carries the gate logits
    hybrid: bool = False          # only layers with layer_types[i] in ATTENTION_LAYER_TYPES attend
    native: bool = False          # built by gatelens (models/gated.py), not by transformers alone
    # Rows made by models/discover.py (any other architecture) also carry what it found on the instance:
    v_proj: str = "v_proj"        # attribute of the attention module holding W_V (or the fused rows it is in)
    gate_bias: str | None = None  # attribute of the attention module adding a per-head bias to the gate logits
    gate_note: str = ""           # a gate recognised whose scores gatelens cannot read yet: why
    gate_scale: str | None = None  # "ngpt": logits times (s_gate * s_gate_scale)^2 of the attention module (Dory)
    gate_width: int | None = None  # layout "query_rows": gate logits per head, the last columns of its rows (AXK2)
    attn_paths: tuple = ()        # ((layer, path under the layer), ...) of the attention layers
    skipped: tuple = ()           # "layer: module class" of the layers that do not attend (hybrids)
    learned_sink: bool = False    # sink logits in the softmax denominator (gpt-oss `sinks`, inkling2 `sink_proj`)
    rank_note: str = ""           # why W_V / W_O cannot be read for the rank metric ("" when they can)
    discovered: bool = False


ATTENTION_LAYER_TYPES = ("full_attention", "sliding_attention", "attention")

_ROWS = [
    Family("llama", ("llama", "mistral"), "model.layers", "self_attn", "separate", "o_proj"),
    Family("qwen2", ("qwen2",), "model.layers", "self_attn", "separate", "o_proj"),
    Family("qwen3", ("qwen3",), "model.layers", "self_attn", "separate", "o_proj"),
    Family("gpt2", ("gpt2",), "transformer.h", "attn", "gpt2", "c_proj"),
    Family("gpt_neox", ("gpt_neox",), "gpt_neox.layers", "attention", "neox", "dense"),
    Family("qwen3_next", ("qwen3_next",), "model.layers", "self_attn", "separate", "o_proj",
           gate="elementwise", gate_layout="interleaved", gate_module="q_proj", hybrid=True),
    Family("qwen3_5", ("qwen3_5_text",), "model.layers", "self_attn", "separate", "o_proj",
           gate="elementwise", gate_layout="interleaved", gate_module="q_proj", hybrid=True),
    # The paper's release (model_type "qwen3" + *_attn_output_gate flags) and gatelens' own models:
    # transformers' Qwen3 with the gate added by models/gated.py; the gate logits reach `q_proj.hook_gate`.
    Family("qwen3_gated", (), "model.layers", "self_attn", "separate", "o_proj",
           gate_layout="grouped", gate_module="q_proj.hook_gate", native=True),
]

FAMILIES: dict[str, Family] = {row.name: row for row in _ROWS}
BY_MODEL_TYPE: dict[str, Family] = {mt: row for row in _ROWS for mt in row.model_types}
