"""Build and save the gated Qwen3 variants that plain transformers cannot run.

Two config formats reach here:
  * the paper's release: model_type "qwen3" with `headwise_attn_output_gate` or
    `elementwise_attn_output_gate` true (plus `qkv_bias`, `use_qk_norm`);
  * gatelens' own family: model_type "gatelens", a Qwen3 config plus `gate`
    ("none" | "elementwise" | "headwise" | "value"), `final_norm` (false drops the last RMSNorm,
    which the Bigram-Backcopy sink needs; see the zoo's model cards), `use_qk_norm` and `pre_norm`
    (false: no RMSNorm anywhere, so the residual stream enters attention, gate and MLP raw).
Weights are loaded with an explicit key and shape check, so a mismatch names the tensor.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import GatelensError
from .gated import GATES, add_gates

logger = logging.getLogger(__name__)
NATIVE_MODEL_TYPE = "gatelens"
_EXTRA_KEYS = ("gate", "final_norm", "headwise_attn_output_gate", "elementwise_attn_output_gate", "qkv_bias",
               "use_qk_norm", "model_type", "architectures", "gatelens_eval", "auto_map", "pre_norm")
# Keys only the paper's modeling_qwen3.py reads: any of them in a "qwen3" config means its format.
PAPER_KEYS = ("headwise_attn_output_gate", "elementwise_attn_output_gate", "qkv_bias", "use_qk_norm")


def native_gate(cfg: dict) -> str | None:
    """The gate of a config that needs gatelens' own build, or None if transformers can build it alone."""
    if cfg.get("model_type") == NATIVE_MODEL_TYPE:
        gate = cfg.get("gate", "none")
        if gate not in GATES:
            raise GatelensError(f"config.json has gate {gate!r}; expected one of {', '.join(GATES)}")
        return gate
    if cfg.get("model_type") == "qwen3" and any(k in cfg for k in PAPER_KEYS):
        # The paper's release format, gate or not: stock Qwen3 would drop its o_proj bias (`qkv_bias`) or add
        # q/k norms it does not have (`use_qk_norm: false`) and measure a different model.
        if cfg.get("headwise_attn_output_gate") and cfg.get("elementwise_attn_output_gate"):
            raise GatelensError("config.json sets both headwise_attn_output_gate and elementwise_attn_output_gate; "
                                "the paper's models have one gate: set the other to false")
        if cfg.get("headwise_attn_output_gate"):
            return "headwise"
        if cfg.get("elementwise_attn_output_gate"):
            return "elementwise"
        return "none"
    return None


def build(cfg: dict, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa") -> nn.Module:
    """An uninitialised model for a native config (weights to be loaded or initialised by the caller)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM
    from transformers.initialization import no_init_weights

    gate = native_gate(cfg) or "none"
    qcfg = Qwen3Config(**{k: v for k, v in cfg.items() if k not in _EXTRA_KEYS})
    if "qkv_bias" in cfg:  # the paper's name: bias on q, k, v and o projections
        qcfg.attention_bias = bool(cfg["qkv_bias"])
    with no_init_weights():
        model = Qwen3ForCausalLM._from_config(qcfg, attn_implementation=attn_implementation, dtype=dtype)
    add_gates(model, gate)
    if not cfg.get("use_qk_norm", True):
        for layer in model.model.layers:
            layer.self_attn.q_norm, layer.self_attn.k_norm = nn.Identity(), nn.Identity()
    if not cfg.get("final_norm", True):
        model.model.norm = nn.Identity()
    if not cfg.get("pre_norm", True):  # no RMSNorm before attention and MLP: the residual stream enters both raw
        for layer in model.model.layers:
            layer.input_layernorm, layer.post_attention_layernorm = nn.Identity(), nn.Identity()
    model.config.gatelens = {"gate": gate, "final_norm": bool(cfg.get("final_norm", True)),
                             "pre_norm": bool(cfg.get("pre_norm", True))}
    model = model.to(dtype)
    if qcfg.tie_word_embeddings:  # _from_config under no_init_weights leaves lm_head untied
        model.tie_weights()
    return model


SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


def weight_files(folder: Path) -> list[Path]:
    """The weight files a checkpoint folder names, chosen as transformers chooses them: `model.safetensors` if
    there is one, else the shards `model.safetensors.index.json` maps tensors to. Any other *.safetensors in the
    folder (a backup, a second download) is not read, and one log line says so."""
    if (folder / SINGLE_WEIGHTS).is_file():
        files, read = [folder / SINGLE_WEIGHTS], SINGLE_WEIGHTS
    elif (folder / WEIGHTS_INDEX).is_file():
        files, read = _shards(folder / WEIGHTS_INDEX), f"the shards {WEIGHTS_INDEX} names"
    else:
        raise GatelensError(f"{folder} has no {SINGLE_WEIGHTS} (or {WEIGHTS_INDEX} and its shards), so no weights "
                            "to read; save the checkpoint with model.save_pretrained(folder)")
    stray = sorted(p.name for p in folder.glob("*.safetensors") if p not in files)
    if stray:
        logger.warning("%s: %s not read (the weights are %s, as transformers reads them)", folder,
                       ", ".join(stray), read)
    return files


def _shards(index: Path) -> list[Path]:
    """The files a safetensors index's weight_map names, each inside the index's folder and present."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise GatelensError(f"{index} is not a safetensors index (JSON with a weight_map of tensor -> file); "
                            "save the checkpoint again") from None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise GatelensError(f"{index} names no weight files; save the checkpoint again")
    outside = [n for n in names if Path(n).anchor or ".." in Path(n).parts]
    if outside:  # the check transformers makes: an index never reaches out of its folder
        raise GatelensError(f"{index} names {outside[0]}, outside the checkpoint folder; fix the index")
    missing = [n for n in names if not (index.parent / n).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise GatelensError(f"{index} names {missing[0]}{more}, which is not in the folder; copy the missing "
                            "shard into it or download the checkpoint again")
    return [index.parent / n for n in names]


def read_state(files: list[Path]) -> dict[str, torch.Tensor]:
    """Every tensor of the given weight files (`weight_files(folder)`)."""
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError, RuntimeError) as e:
            raise GatelensError(f"cannot read {f.name} ({e}); the file is corrupted or truncated: "
                                "re-download or re-save the checkpoint") from None
    return state


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Place every tensor with a shape check; fail loudly naming the first bad key."""
    expected = model.state_dict()
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    for key, tensor in state.items():
        if key not in expected:
            raise GatelensError(f"{where}: unexpected tensor {key!r}; the config does not describe these weights")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise GatelensError(f"{where}: {key} has shape {tuple(tensor.shape)}, the config implies "
                                f"{tuple(expected[key].shape)}; check the gate flags and head counts in config.json")
    missing = [k for k in expected if k not in state and not (tied and k == "lm_head.weight")]
    if missing:
        raise GatelensError(f"{where}: weights missing for {missing[0]} (and {len(missing) - 1} more)")
    model.load_state_dict(state, strict=False)
    if tied:
        model.tie_weights()


def save(model: nn.Module, folder: Path, cfg: dict, dtype: torch.dtype | None = None) -> None:
    """Write config.json + model.safetensors for a native model (tied lm_head stored once)."""
    save_state(model.state_dict(), folder, cfg, dtype)


def save_state(state: dict, folder: Path, cfg: dict, dtype: torch.dtype | None = None) -> None:
    """`save` from a state dict (a copy taken during training, say)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype or v.dtype).contiguous() for k, v in state.items()}
    if cfg.get("tie_word_embeddings"):
        state.pop("lm_head.weight", None)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
