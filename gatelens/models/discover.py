"""Discovery: a family row read off the model itself, for architectures the family table does not list.

For any transformers causal LM whose attention dispatches through `ALL_ATTENTION_FUNCTIONS`, found from
the instantiated model (no forward pass):
  * the decoder layers: the ModuleList with `num_hidden_layers` entries (text sub-model first);
  * which layers attend: those holding a module whose class calls the attention interface and has a
    `layer_idx`; the others (recurrent, Mamba, DeltaNet, linear attention) are skipped and listed;
  * how W_V and W_O are stored, for the rank metric: separate projections (under their many names),
    fused [Q | K | V] rows, GPT-2's Conv1D, GPT-NeoX's per-head rows, Falcon's per-KV-group rows, multi-head
    latent attention;
  * the output gate, from `GATED` below: the families whose attention output is multiplied by a sigmoid
    gate before W_O (`gatelens models --scan-gates` walks the installed modeling files and names a new one).
Each discovered attention module is marked with `gatelens_layer` (its decoder layer's index), which the
attention function reports, so a layer index never depends on how a family counts its `layer_idx`.
"""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache, partial

from torch import nn

from ..errors import GatelensError
from .families import Family

_MARKERS = ("ALL_ATTENTION_FUNCTIONS", "attention_interface")
V_NAMES = ("v_proj", "value", "v", "wv", "Wv", "W_v", "v_linear")
O_NAMES = ("o_proj", "out_proj", "dense", "wo", "o", "c_proj", "linear", "o_linear")
_NOT_TEXT = ("vision", "visual", "audio", "speech", "image", "encoder", "vqmodel", "mtp")


@dataclass(frozen=True)
class GateReader:
    """Where a family's output gate logits come from: `module`'s forward output, under the attention module.

    layout "interleaved": the module's rows per head [q_h | g_h] (Qwen3-Next, Qwen3.5's q_proj; MiniCPM5-MoE's
    q_gate_proj); "per_head": the module's output
    is [.., head * g] (g = d_head elementwise, 1 headwise), plus the attention module's `bias` [head] if named;
    "query_rows": the module's rows per head are [q_h | g_h], g_h the last `v_head_dim` of them (AXK2's fused
    q_gate_proj under latent attention). `scale`: the attention module's (s, s_scale) attributes, the logits
    multiplied by (s * s_scale)^2 first (Dory's nGPT s_gate). `gated_into`: the module under the attention module
    whose input is the gated output, when it is not W_O (Dory normalises it first); coverage checks the scores there.
    """

    module: str | None
    layout: str | None
    gate: str = "elementwise"
    bias: str | None = None
    note: str = ""          # why the scores are not read yet (module None)
    scale: tuple[str, str] | None = None
    gated_into: str | None = None


# Families whose attention output is multiplied by a sigmoid gate, keyed by the modeling folder's name.
GATED: dict[str, GateReader] = {
    "qwen3_next": GateReader("q_proj", "interleaved"),
    "qwen3_5": GateReader("q_proj", "interleaved"),
    "qwen3_5_moe": GateReader("q_proj", "interleaved"),
    "qwen4_exp": GateReader("q_proj", "interleaved"),
    "minicpm5_moe": GateReader("q_gate_proj", "interleaved"),
    "beam": GateReader("gate_proj", "per_head", bias="gate_bias"),
    "inkling2": GateReader("o_proj.gate_proj", "per_head"),
    "inkling2_loop": GateReader("o_proj.gate_proj", "per_head"),
    "afmoe": GateReader("gate_proj", "per_head"),
    "hrm_text": GateReader("gate_proj", "per_head"),
    "hy_v4": GateReader("gate_proj", "per_head"),
    "hy_v4_vl": GateReader("gate_proj", "per_head"),
    "lfm3": GateReader("g_proj", "per_head"),
    "dots3_note": GateReader("g_proj", "per_head"),
    "bailing_hybrid": GateReader("g_proj", "per_head"),
    "step3p7": GateReader("g_proj", "per_head"),
    "muse_glimmer": GateReader("gate_proj", "per_head"),
    "muse_spark": GateReader("gate_proj", "per_head"),
    "axk2": GateReader("q_gate_proj", "query_rows"),
    "dory": GateReader("gate_proj", "per_head", scale=("s_gate", "s_gate_scale"), gated_into="attn_sub_norm"),
}


# Sigmoid output gates inside layers that are not softmax attention (skipped as linear attention, never measured).
LINEAR_ATTENTION_GATES = {"minimax": "MiniMaxLightningAttention.output_gate"}


@lru_cache(maxsize=None)
def calls_attention_interface(cls: type) -> bool:
    """Whether a module class's forward dispatches through transformers' attention interface."""
    try:
        src = inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return False
    return any(m in src for m in _MARKERS)


def modeling_folder(model: nn.Module) -> str:
    """The transformers modeling folder of a model's class (transformers.models.<folder>.modeling_<folder>)."""
    parts = type(model).__module__.split(".")
    return parts[2] if len(parts) > 3 and parts[1] == "models" else ""


def text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def find_layers(model: nn.Module, n_layers: int) -> str:
    """Dotted path of the decoder layers: the shallowest ModuleList of n_layers entries outside vision/audio towers."""
    found = [name for name, m in model.named_modules()
             if isinstance(m, nn.ModuleList) and len(m) == n_layers and name
             and not any(w in name.lower() for w in _NOT_TEXT)]
    if not found:
        raise GatelensError(f"cannot find the {n_layers} decoder layers of {type(model).__name__}; gatelens "
                            "measures decoder-only language models (or their text sub-model)")
    return min(found, key=lambda n: (n.count("."), len(n)))


def find_attention(layer: nn.Module) -> str | None:
    """Path, under a decoder layer, of its attention module (None: this layer does not attend)."""
    hits = [name for name, m in layer.named_modules()
            if name and hasattr(m, "layer_idx") and calls_attention_interface(type(m))]
    return min(hits, key=lambda n: (n.count("."), len(n))) if hits else None


def weight_layout(attn: nn.Module) -> tuple[str | None, str, str, str]:
    """(qkv layout, W_V name, W_O name, why rank is unavailable) of an attention module."""
    kids = dict(attn.named_children())
    o = next((n for n in O_NAMES if n in kids and _has_weight(kids[n])), None)
    if o is None:  # W_O inside a wrapper that gates first (inkling2: o_proj.linear)
        o = next((f"{n}.{c}" for n in O_NAMES if n in kids for c, m in kids[n].named_children()
                  if c in O_NAMES and _has_weight(m)), None)
    if o is None:
        return None, "", "", f"no output projection among {', '.join(O_NAMES)} in {type(attn).__name__}"
    if "kv_b_proj" in kids:
        return "mla", "kv_b_proj", o, ""
    if "c_attn" in kids and type(kids["c_attn"]).__name__ == "Conv1D":
        return "gpt2", "c_attn", o, ""
    if "query_key_value" in kids:  # Falcon's three layouts under one name, told apart by its flags
        if getattr(attn, "new_decoder_architecture", False):  # rows per KV group [its heads' queries | k | v]
            return "kv_grouped", "query_key_value", o, ""
        if getattr(attn, "multi_query", False):              # [Q | k | v]: one KV head
            return "fused", "query_key_value", o, ""
        return "neox", "query_key_value", o, ""
    v = next((n for n in V_NAMES if n in kids and _has_weight(kids[n])), None)
    if v is not None:
        return "separate", v, o, ""
    fused = next((n for n in ("qkv_proj", "Wqkv", "qkv", "wqkv", "c_attn") if n in kids and _has_weight(kids[n])), None)
    if fused is not None and isinstance(getattr(attn, "mp_num", None), int):  # CodeGen: [q | v | k] per shard
        return "mp_qvk", fused, o, ""
    if fused is not None:
        return "fused", fused, o, ""
    return None, "", o, f"no value projection found in {type(attn).__name__} ({', '.join(kids)})"


def _ngpt_scale(attn: nn.Module, s: str, s_scale: str):
    """Dory's gate-logit multiplier (s_gate * s_gate_scale)^2, [head * d_head]."""
    return (getattr(attn, s) * getattr(attn, s_scale)).square()


def _has_weight(m: nn.Module) -> bool:
    return hasattr(m, "weight") and getattr(m, "weight") is not None


def discover(model: nn.Module, model_type: str) -> Family:
    """A family row for `model`, read off its modules; marks every attention module with `gatelens_layer`."""
    cfg = text_config(model.config)
    n_layers = cfg.num_hidden_layers
    layers_path = find_layers(model, n_layers)
    layers = model.get_submodule(layers_path)
    paths: dict[int, str] = {}
    skipped = []
    for i, layer in enumerate(layers):
        path = find_attention(layer)
        if path is None:
            kinds = [type(m).__name__ for n, m in layer.named_children() if "norm" not in n.lower()]
            skipped.append(f"{i}: {'/'.join(kinds[:2]) or type(layer).__name__}")
        else:
            paths[i] = path
            attn = layer.get_submodule(path)
            attn.gatelens_layer = i
            reader = GATED.get(modeling_folder(model))
            if reader and reader.bias and reader.module:  # the gate hook reaches the bias through its module
                # a plain attribute, not a registered parameter: it must not enter the state dict a second time
                object.__setattr__(attn.get_submodule(reader.module), "gatelens_gate_bias", getattr(attn, reader.bias))
            if reader and reader.scale and reader.module:  # read at each call: follows the weights to any device
                object.__setattr__(attn.get_submodule(reader.module), "gatelens_gate_scale",
                                   partial(_ngpt_scale, attn, *reader.scale))
    if not paths:
        raise GatelensError(f"{model_type}: no layer of {type(model).__name__} dispatches attention through "
                            "transformers' attention interface, so gatelens cannot measure it exactly")
    if not any(getattr(layers[i].get_submodule(p), "is_causal", True) for i, p in paths.items()):
        raise GatelensError(f"{model_type}: {type(model).__name__} attends both ways (an encoder used as a decoder); "
                            "gatelens measures decoder-only causal language models")
    attn_path = Counter(paths.values()).most_common(1)[0][0]
    first = layers[next(iter(paths))].get_submodule(paths[next(iter(paths))])
    qkv, v_name, o_name, why = weight_layout(first)
    reader = GATED.get(modeling_folder(model))
    if reader and reader.layout == "per_head":  # granularity from the gate projection's width: head * g outputs
        width = getattr(first.get_submodule(reader.module), "out_features", None)
        n_heads = getattr(first, "num_heads", None) or getattr(first, "num_attention_heads", None) \
            or cfg.num_attention_heads
        if width is not None:
            reader = replace(reader, gate="headwise" if width == n_heads else "elementwise")
    width = None
    if reader and reader.layout == "query_rows":  # the gate's rows per head: as many as the values have
        width = int(first.v_head_dim)
    attns = [layers[i].get_submodule(p) for i, p in paths.items()]
    learned_sink = any(getattr(a, "sinks", None) is not None or getattr(a, "s_aux", None) is not None
                       or hasattr(a, "sink_proj") for a in attns)  # mimo_v2_flash: only its sliding-window layers
    return Family(
        name=model_type, model_types=(model_type,), layers=layers_path, attn=attn_path, qkv=qkv or "none",
        o_proj=o_name, v_proj=v_name, gate=reader.gate if reader else "none",
        gate_layout=reader.layout if reader else None, gate_module=reader.module if reader else None,
        gate_bias=reader.bias if reader else None, gate_note=reader.note if reader else "",
        gate_scale="ngpt" if reader and reader.scale else None, gate_width=width,
        hybrid=len(paths) < n_layers, attn_paths=tuple(sorted(paths.items())), skipped=tuple(skipped),
        learned_sink=learned_sink, rank_note=why, discovered=True)
