"""Tiny random checkpoints of every supported family, saved as folders the way users have them."""

from __future__ import annotations

from pathlib import Path

import torch

from gatelens.models import native
from gatelens.models.tokenizer import byte_tokenizer

TOK = byte_tokenizer()
COMMON = dict(vocab_size=len(TOK), bos_token_id=TOK.bos_token_id, eos_token_id=TOK.eos_token_id,
              pad_token_id=TOK.pad_token_id)
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity. ") * 20


def _hf_config(family: str):
    import transformers as tf

    small = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=512, **COMMON)
    if family == "llama":
        return tf.LlamaConfig(num_key_value_heads=2, **small)
    if family == "qwen2":
        return tf.Qwen2Config(num_key_value_heads=2, **small)
    if family == "qwen3":
        return tf.Qwen3Config(num_key_value_heads=2, head_dim=16, **small)
    if family == "qwen3_sliding":  # Qwen2-style sliding-window layers: a mask that hides key 0 from far queries
        return tf.Qwen2Config(num_key_value_heads=2, use_sliding_window=True, sliding_window=24,
                              max_window_layers=0, layer_types=["sliding_attention", "full_attention"], **small)
    if family == "gpt2":
        return tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=512, **COMMON)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                max_position_embeddings=512, rotary_pct=0.5, **COMMON)
    hybrid = dict(num_key_value_heads=2, head_dim=16, linear_num_key_heads=2, linear_num_value_heads=2,
                  linear_key_head_dim=16, linear_value_head_dim=16, num_hidden_layers=4,
                  layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
                  **{k: v for k, v in small.items() if k != "num_hidden_layers"})
    if family == "qwen3_next":
        return tf.Qwen3NextConfig(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                  shared_expert_intermediate_size=32, **hybrid)
    if family == "qwen3_5":
        return tf.Qwen3_5TextConfig(**hybrid)
    raise KeyError(family)


HF_FAMILIES = ["llama", "qwen2", "qwen3", "gpt2", "gpt_neox", "qwen3_next", "qwen3_5", "qwen3_sliding"]
PAPER_FORMATS = ["headwise", "elementwise"]


def make_hf(family: str, folder: Path, seed: int = 0) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_hf_config(family))
    _sharpen(model)
    model.save_pretrained(folder)
    TOK.save_pretrained(folder)
    return folder


def paper_config(gate: str, **over) -> dict:
    """A paper-release style config (model_type qwen3 + gate flag), 4 heads over 2 KV heads: G = 2."""
    cfg = dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], hidden_size=64, intermediate_size=96,
               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
               max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
               qkv_bias=True, use_qk_norm=True, headwise_attn_output_gate=gate == "headwise",
               elementwise_attn_output_gate=gate == "elementwise", **COMMON)
    cfg.update(over)
    return cfg


def make_paper(gate: str, folder: Path, seed: int = 0, **over) -> Path:
    cfg = paper_config(gate, **over)
    torch.manual_seed(seed)
    model = native.build(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.02 if p.dim() > 1 else 0.1) + (1.0 if "norm" in name else 0.0))
    _sharpen(model)
    native.save(model, folder, cfg)
    TOK.save_pretrained(folder)
    return folder


def _sharpen(model) -> None:
    """Scale query weights up so tiny random models attend sharply (a weak test passes anything)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "c_attn.weight", "query_key_value.weight")):
                p.mul_(8.0)


def make_gguf(path: Path, arch: str = "llama", tokenizer: bool = True) -> Path:
    """A minimal GGUF file (metadata plus one embedding tensor), enough for gatelens' checks that run before
    any dequantizing: its architecture and whether a tokenizer is inside."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    if tokenizer:
        w.add_tokenizer_model("gpt2")
        w.add_token_list(["a", "b", "c", "d"])
        w.add_token_types([1, 1, 1, 1])
        w.add_token_merges([])
        w.add_bos_token_id(0)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def nosink_attention(layers=None) -> str:
    """Register (the documented way) an eager attention function masking key 0 for queries >= 1 in `layers`
    (every layer for None): the ablation references. Returns its attn_implementation name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    from transformers.models.llama.modeling_llama import eager_attention_forward

    def attn(module, query, key, value, attention_mask, **kw):
        if layers is None or module.layer_idx in layers:
            attention_mask = attention_mask.clone()
            attention_mask[..., 1:, 0] = float("-inf")
        return eager_attention_forward(module, query, key, value, attention_mask, **kw)

    name = "ref_nosink" + ("" if layers is None else "_" + "_".join(map(str, sorted(layers))))
    AttentionInterface.register(name, attn)
    AttentionMaskInterface.register(name, eager_mask)
    return name


def capturing_eager(calls: list) -> str:
    """Register an attention function that records (pattern, key, value) of each call of the family's own eager
    attention (keys after RoPE / k_norm and values as the attention receives them: no knowledge of how W_V is stored,
    fused QKV and Conv1D included). Returns its attn_implementation name."""
    import sys

    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    def attn(module, query, key, value, attention_mask, **kw):
        eager = sys.modules[type(module).__module__].eager_attention_forward
        out, weights = eager(module, query, key, value, attention_mask, **kw)
        calls.append((weights, key, value))
        return out, weights

    AttentionInterface.register("ref_capture", attn)
    AttentionMaskInterface.register("ref_capture", eager_mask)
    return "ref_capture"
