"""The model a run starts from: its config.json, and twin initialisation.

Twins share everything but the gate: the parameters are drawn for the baseline-shaped model from
the seed and copied into the gated one (query rows of q_proj in the paper's grouped layout); the
gate rows come from a generator of their own, so the shared values do not depend on the gate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from .. import attention, tasks
from ..models import native
from ..models.gated import gate_rows
from .config import TrainConfig
from .data import load_data


def model_config(cfg: TrainConfig, tokenizer, eval_data: dict, gate: str | None = None) -> dict:
    """config.json: plain "qwen3" (no gate, final norm), the paper's "qwen3" + gate flag, or "gatelens"."""
    from transformers import Qwen3Config

    gate = cfg.gate if gate is None else gate
    base = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=cfg.d_model, intermediate_size=cfg.ffn,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.seq_len, tie_word_embeddings=cfg.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta}, initializer_range=cfg.init_std,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ).to_diff_dict()
    base.pop("transformers_version", None)
    out = {**base, "architectures": ["Qwen3ForCausalLM"], "gatelens_eval": eval_data}
    standard = cfg.final_norm and cfg.qk_norm and cfg.pre_norm
    if standard and gate == "none":
        return out
    if standard and gate in ("elementwise", "headwise"):
        return {**out, f"{gate}_attn_output_gate": True}
    return {**out, "model_type": native.NATIVE_MODEL_TYPE, "gate": gate, "final_norm": cfg.final_norm,
            "use_qk_norm": cfg.qk_norm, "pre_norm": cfg.pre_norm}


@torch.no_grad()
def init_model(cfg: TrainConfig, model_cfg: dict, baseline_cfg: dict) -> nn.Module:
    """The seeded model: every shared parameter equals the baseline's, whatever the gate."""
    attention.register()
    base = native.build(baseline_cfg, torch.float32, attention.ATTN_NAME)
    g = torch.Generator().manual_seed(cfg.seed)
    for name, p in base.named_parameters():  # tied lm_head appears once, as embed_tokens
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            p.copy_(torch.randn(p.shape, generator=g) * cfg.init_std)
    if cfg.gate == "none":
        return base
    model = native.build(model_cfg, torch.float32, attention.ATTN_NAME)
    shared = dict(base.named_parameters())
    proj, keep, gate_idx = gate_rows(cfg.gate, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim)
    g_gate = torch.Generator().manual_seed(tasks.seed_of("gate", cfg.seed))
    for name, p in model.named_parameters():
        if name.endswith(f"{proj}.weight"):  # [plain rows + gate rows, d_model]
            p[keep] = shared[name]
            p[gate_idx] = torch.randn(len(gate_idx), p.shape[1], generator=g_gate) * cfg.gate_init_std
        elif name.endswith("gate_logit"):  # input-independent gate: its logits start near 0 like the others'
            p.copy_(torch.randn(p.shape, generator=g_gate) * cfg.gate_init_std)
        else:
            p.copy_(shared[name])
    return model


def twin_model(cfg: TrainConfig, tokenizer, eval_data: dict) -> tuple[nn.Module, dict]:
    """(the step-0 model, its config.json) for the run's gate, initialised as the baseline twin's."""
    model_cfg = model_config(cfg, tokenizer, eval_data)
    baseline_cfg = model_config(cfg, tokenizer, eval_data, gate="none")
    return init_model(cfg, model_cfg, baseline_cfg), model_cfg


def initial_state(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The step-0 parameters `train(cfg)` starts from (for tests: twins share every baseline parameter)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = load_data(cfg, Path(tmp))
    model, _ = twin_model(cfg, data.tokenizer, data.eval_data)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
