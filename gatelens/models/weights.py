"""Per-head weights read through the family table: W_V [head, d_model, d_head], W_O [head, d_head, d_model].

Grouped KV heads are expanded to query heads (head h uses KV head h // group). Biases are left out:
the OV circuit's rank is a property of the matrices.
"""

from __future__ import annotations

import torch

from ..errors import GatelensError
from .gated import GatedVProj
from .load import Loaded


def ov_weights(loaded: Loaded, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    if loaded.family.discovered:
        why = check_ov(loaded)
        if why:
            raise GatelensError(f"{loaded.info.spec}: W_V as gatelens reads it does not reproduce the values its "
                                f"attention receives ({why}); the rank metric would be wrong, so it is not computed")
    attn = loaded.attention(layer)
    if not any(hasattr(m, "_hf_hook") for m in attn.modules()):
        return _ov_weights(loaded, attn)
    # Placed by a device map, maybe offloaded to disk: bring each offloaded module's weights in.
    from contextlib import ExitStack

    from accelerate.utils import align_module_device, has_offloaded_params

    with ExitStack() as stack:
        for m in attn.modules():
            if has_offloaded_params(m):
                stack.enter_context(align_module_device(m, execution_device=torch.device("cpu")))
        return _ov_weights(loaded, attn)


def _ov_weights(loaded: Loaded, attn) -> tuple[torch.Tensor, torch.Tensor]:
    info, family = loaded.info, loaded.family
    H, K, d, D = info.n_heads, info.n_kv_heads, info.d_head, info.d_model
    qkv = family.qkv
    if family.discovered and qkv != "gpt2":
        return _discovered_ov(loaded, attn)
    if qkv == "separate":
        w = attn.v_proj.weight
        if isinstance(w, torch.Tensor) and isinstance(attn.v_proj, GatedVProj):
            w = w.view(K, 2 * d, D)[:, :d].reshape(K * d, D)  # value rows; the G2 gate rows follow them
        w_v = w.view(K, d, D).transpose(1, 2)                   # [K, D, d]
        w_o = getattr(attn, loaded.family.o_proj).weight.view(D, H, d).permute(1, 2, 0)
    elif qkv == "gpt2":  # Conv1D: x @ W, W [D, 3D] = [q | k | v]; c_proj: z @ W, W [H*d, D]
        w_v = attn.c_attn.weight[:, 2 * D:].view(D, H, d).permute(1, 0, 2)
        w_o = attn.c_proj.weight.view(H, d, D)
    elif qkv == "neox":  # query_key_value rows per head: [q_h | k_h | v_h]
        w_v = attn.query_key_value.weight.view(H, 3, d, D)[:, 2].transpose(1, 2)
        w_o = attn.dense.weight.view(D, H, d).permute(1, 2, 0)
    else:
        raise ValueError(f"no weight layout for qkv={qkv!r}")
    group = H // w_v.shape[0]
    return w_v.detach().cpu().repeat_interleave(group, 0), w_o.detach().cpu()


def _discovered_ov(loaded: Loaded, attn) -> tuple[torch.Tensor, torch.Tensor]:
    """W_V [head, d_in, d_v] and W_O [head, d_v, d_model] of a family found by models.discover.

    d_in is d_model, except for multi-head latent attention (DeepSeek-V2/V3 ...), where W_V^h maps the normed
    KV latent (kv_lora_rank wide) to head h's values: the OV circuit of the latent."""
    family, info = loaded.family, loaded.info
    if family.qkv == "none":
        from ..errors import GatelensError

        raise GatelensError(f"{info.spec}: gatelens cannot read W_V and W_O of this architecture for the rank "
                            f"metric ({family.rank_note}); the other metrics measure it")
    H, K, d = info.n_heads, info.n_kv_heads, info.d_head
    o = attn.get_submodule(family.o_proj).weight                              # [d_model, H * d_v] (Linear)
    w = attn.get_submodule(family.v_proj).weight
    if family.qkv == "mla":   # kv_b_proj rows per head: [k_nope (qk_nope_head_dim) | v (v_head_dim)]
        d_v, nope = attn.v_head_dim, attn.qk_nope_head_dim
        w_v = w.view(H, nope + d_v, -1)[:, nope:].transpose(1, 2)              # [H, r, d_v]
    elif family.qkv == "fused":  # rows [Q (H*d) | K (K*d) | V (K*d_v)]
        d_v = o.shape[1] // H
        w_v = w[w.shape[0] - K * d_v:].view(K, d_v, -1).transpose(1, 2)
    elif family.qkv == "neox":   # rows per head [q_h | k_h | v_h]
        d_v = d
        w_v = w.view(H, 3, d, -1)[:, 2].transpose(1, 2)
    elif family.qkv == "kv_grouped":  # Falcon's new decoder: rows per KV group [its H/K heads' queries | k | v]
        d_v = d
        w_v = w.view(K, H // K + 2, d, -1)[:, -1].transpose(1, 2)
    elif family.qkv == "mp_qvk":  # CodeGen: rows per model-parallel shard [q | v | k], each H*d / mp_num long
        d_v, mp = d, attn.mp_num
        w_v = w.view(mp, 3, H * d // mp, -1)[:, 1].reshape(H, d, -1).transpose(1, 2)
    else:                        # separate: the value rows of K heads
        d_v = o.shape[1] // H
        w_v = w.view(w.shape[0] // d_v, d_v, -1).transpose(1, 2)
    w_o = o.view(o.shape[0], H, d_v).permute(1, 2, 0)
    group = H // w_v.shape[0]
    return w_v.detach().cpu().repeat_interleave(group, 0), w_o.detach().cpu()


def check_ov(loaded: Loaded) -> str:
    """'' when W_V read through a discovered family reproduces, on a short forward, the values the attention function
    receives (x W_V + b, per KV head, for the first attention layer); else why not. Computed once per model."""
    if "ov_check" in loaded.__dict__:
        return loaded.__dict__["ov_check"]
    loaded.__dict__["ov_check"] = why = _check_ov(loaded)
    return why


def _value_bias(loaded: Loaded, attn, bias: torch.Tensor | None) -> torch.Tensor | None:
    """The value rows of W_V's projection bias, sliced as _discovered_ov slices the weight ([kv * d_v])."""
    if bias is None:
        return None
    family, info = loaded.family, loaded.info
    H, K, d = info.n_heads, info.n_kv_heads, info.d_head
    if family.qkv == "fused":
        d_v = attn.get_submodule(family.o_proj).weight.shape[1] // H
        return bias[bias.shape[0] - K * d_v:]
    if family.qkv == "neox":
        return bias.view(H, 3, d)[:, 2].reshape(-1)
    if family.qkv == "kv_grouped":
        return bias.view(K, H // K + 2, d)[:, -1].reshape(-1)
    if family.qkv == "mp_qvk":
        return bias.view(attn.mp_num, 3, -1)[:, 1].reshape(-1)
    if family.qkv == "mla":
        return None   # kv_b_proj has no bias in any latent-attention family; W_V maps the latent
    return bias


def _has_module(module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def _check_ov(loaded: Loaded) -> str:
    from .. import attention

    family = loaded.family
    if family.qkv == "none":
        return family.rank_note
    borrowed = [i for i in loaded.info.attention_layers if not _has_module(loaded.attention(i), family.v_proj)]
    if borrowed:  # Kolibri: a layer attending to an earlier layer's keys and values has no W_V of its own
        which = f"layer {borrowed[0]} reuses" if len(borrowed) == 1 else f"layers {','.join(map(str, borrowed))} reuse"
        return f"{which} another layer's values (no {family.v_proj} of its own)"
    layer = loaded.info.attention_layers[0]
    attn = loaded.attention(layer)
    try:
        w_v, _ = _ov_weights(loaded, attn)
    except Exception as e:  # noqa: BLE001 - a layout that does not fit the shapes
        return f"weights do not fit the layout: {type(e).__name__}"
    src = attn.get_submodule(family.v_proj)
    seen: dict = {}

    def keep_input(module, args, output):
        seen.setdefault("x", args[0])          # returns None: the output stays as it is

    events = []
    device = loaded.model.get_input_embeddings().weight.device
    ids = torch.arange(8, device=device)[None] % max(2, loaded.info.vocab_size)
    hook = src.register_forward_hook(keep_input)
    try:
        with attention.listening(lambda ev: events.append(ev.value) if ev.layer == layer else None), torch.no_grad():
            loaded.model(input_ids=ids, use_cache=False)
    finally:
        hook.remove()
    if not events or "x" not in seen or events[0] is None:
        return "the values were not observed"
    x = seen["x"].double().cpu()
    x = x.reshape(x.shape[0], -1, x.shape[-1])                                    # [1, n, d_in]
    value = events[0].double().cpu()                                             # [1, kv, n, d_v]
    w = w_v[:: loaded.info.n_heads // value.shape[1]].double()                   # [kv, d_in, d_v]
    if w.shape[1] != x.shape[-1]:
        return f"weights do not fit the layout: W_V takes {w.shape[1]} inputs, its projection {x.shape[-1]}"
    v = torch.einsum("bnd,kde->bkne", x, w)
    bias = _value_bias(loaded, attn, getattr(src, "bias", None))
    if bias is not None:
        v = v + bias.detach().double().cpu().view(1, w.shape[0], 1, -1)
    if v.shape != value.shape:
        return f"value shape {tuple(v.shape)} against {tuple(value.shape)}"
    err = float((v - value).abs().max()) / (float(value.abs().max()) or 1.0)
    return "" if err <= 1e-4 else f"values normalised or rearranged after W_V (relative error {err:.1g})"
