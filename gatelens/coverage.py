"""Coverage: which causal-LM types of the installed transformers gatelens measures exactly, checked on tiny instances.

For every model type mapped to `AutoModelForCausalLM`: build a tiny random fp32 instance, save it with a byte-level
tokenizer, load it through `gatelens.load` (strict loading, discovery), and check against transformers' own eager
attention (`output_attentions=True`): logits equal, per-head F-Attn equal to 1e-5, the learned-sink share equal to the
sink column of softmax([logits, sink]) rebuilt from the eager function's own inputs (1e-6), massive activations run,
gate found where the architecture has one and its scores equal to the gated output over the SDPA output (1e-6),
W_V / W_O readable for the rank metric and reproducing the values the attention function receives.
A type that cannot be measured gets the one-line reason. `gatelens models` writes the table (docs/MODELS.md);
`--merge` replaces the rows of some types in it.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .models.versions import VERIFIED_TRANSFORMERS, installed_transformers  # noqa: F401  (the report names them)

log = logging.getLogger("gatelens")

TOL = 1e-5
EXACT_TOL = 1e-6  # gate scores against the gated output, the learned-sink share against the eager softmax's
SMALL = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
             head_dim=16, max_position_embeddings=256)
# Set where the type's config has them: tiny MoE blocks and latent-attention sizes that fit the tiny heads.
TINY_IF_PRESENT = dict(num_experts=4, num_local_experts=4, n_routed_experts=4, moe_num_experts=4, num_experts_per_tok=2,
                       moe_topk=2, top_k=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
                       expert_intermediate_size=32, n_group=1, topk_group=1, kv_lora_rank=16, q_lora_rank=32,
                       qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, linear_num_key_heads=2,
                       linear_num_value_heads=2, linear_key_head_dim=16, linear_value_head_dim=16, rotary_dim=8,
                       index_topk=8)  # DSA indexers: fewer keys than the 24 test tokens, so the selection bites
MLA = dict(head_dim=8, num_key_value_heads=4)  # latent attention: head_dim names the rotary part; keys per head
# Per type, where its defaults do not fit the tiny sizes above (a layer_types entry: two layers, one of each kind).
_INKLING2 = dict(swa_num_attention_heads=4, swa_num_key_value_heads=2, swa_head_dim=16, sliding_window_size=8,
                 rel_extent=16, d_rel=4, layer_types=["hybrid_sliding", "hybrid"], n_layers_per_attn_res_block=1)
OVERRIDES: dict[str, dict] = {
    "falcon": dict(head_dim=None),
    # 8 + 8 input / output layers by default: one input layer, then one recurrent layer looped twice
    "dory": dict(n_input_layers=1, n_recurrent_layers=1, n_output_layers=0, n_recurrent_loops=2, sliding_window=8),
    # QSA token indexer on its attention layers: a budget below the 24 test tokens, so it does select
    "qwen4_exp_text": dict(indexer_n_heads=2, indexer_kv_heads=1, indexer_head_dim=16, indexer_budget=8,
                           indexer_compress_ratio=4, hc_lowrank=16),
    "inkling2_text": _INKLING2,
    # a sliding layer, an indexer and a reindexer reading the indexer's keys and values; budgets below 24 tokens
    "kolibri1_1": dict(num_hidden_layers=3, layer_types=["sliding_attention", "indexed_attention", "indexed_attention"],
                       index_layers=[1], kv_source_layers=[0, 1, 1], sliding_window=8, index_topk=4,
                       index_pool_size=16, index_compression=4, index_num_heads=2, index_num_local_tokens=4,
                       index_num_sink_tokens=1, mlp_only_layers=[0], mlp_only_intermediate_size=128),
    # latent attention with a key per head, set per layer (so MLA above is not applied); dots3_note is multimodal:
    # its vision and audio towers made tiny too
    "dots3_note_text": dict(num_key_value_heads=4),
    "dots3_note": dict(num_key_value_heads=4,
                       vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                          num_attention_heads=2, moe_intermediate_size=32, num_local_experts=2,
                                          adapter_in_dim=32, adapter_out_dim=64, mlp_layer_types=["dense"],
                                          per_layer_config={}),
                       audio_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, downsample_hidden_size=32, adapter_input_size=32,
                                         adapter_out_dim=64)),
    # layer 1 looped twice: the same attention module runs once per pass
    "inkling2_loop_text": dict(_INKLING2, loop_layer_index_start=1, loop_layer_index_end=2, loop_num_passes=2,
                               loop_gate_rank=8),
}


@dataclass
class Row:
    model_type: str
    status: str = "fail"               # ok | fail | skip (not measurable: reason says why)
    reason: str = ""
    family: str = ""                   # family-table row, or "discovered"
    attention_layers: str = ""
    skipped_layers: int = 0
    gate: str = "none"
    learned_sink: bool = False
    rank: str = ""                     # "ok", or why not
    f_attn_err: float | None = None
    sink_err: float | None = None
    logits_err: float | None = None
    massive: bool = False
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# The paper's release format (model_type "qwen3" + a gate flag, built by gatelens: models/native.py), one row per gate;
# its reference is the same build under transformers' eager attention. Listed after transformers' types, counted apart.
PAPER_FORMATS = {"paper_elementwise": "elementwise", "paper_headwise": "headwise"}


def paper_config(gate: str) -> dict:
    """A tiny paper-release config: 4 heads over 2 KV heads (G = 2, so its grouped gate rows are not interleaved)."""
    from .models.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    return dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], **{**SMALL, "max_position_embeddings": 512},
                rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False, qkv_bias=True, use_qk_norm=True,
                headwise_attn_output_gate=gate == "headwise", elementwise_attn_output_gate=gate == "elementwise",
                vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)


def _build_paper(gate: str, folder: Path, seed: int) -> Path:
    from .models import native
    from .models.tokenizer import byte_tokenizer

    cfg = paper_config(gate)
    torch.manual_seed(seed)
    model = native.build(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.02 if p.dim() > 1 else 0.1) + (1.0 if "norm" in name else 0.0))
            if name.endswith("q_proj.weight"):
                p.mul_(8.0)   # queries and gate rows: sharp attention, gates away from 1/2
    native.save(model, folder, cfg)
    byte_tokenizer().save_pretrained(folder)
    return folder


def _eager_reference(model_type: str, folder: Path):
    """The model transformers' eager attention runs: the checkpoint itself, or for a paper format gatelens' build of
    it (transformers' Qwen3 has no gate) under eager attention."""
    from transformers import AutoModelForCausalLM

    if model_type not in PAPER_FORMATS:
        return AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager",
                                                    dtype=torch.float32).eval()
    import json

    from .models import native

    cfg = json.loads((folder / "config.json").read_text())
    ref = native.build(cfg, attn_implementation="eager")
    native.load_weights(ref, native.read_state(native.weight_files(folder)), folder)
    return ref.eval()


# A forward multiplying an attention output by something (for modeling files that call the gate before attending).
_TIMES_OUTPUT = re.compile(r"(attn_output|attention_output|attn_out)\s*=.*\*|\*\s*(attn_output|attention_output)\b"
                           r"|output\s*=\s*output\s*\*")


def scan_gates() -> dict[str, list[str]]:
    """Modeling folders of the installed transformers' causal-LM types whose module forward multiplies an attention
    output by a sigmoid (candidate output gates), with those classes: read from the source, nothing is built."""
    import ast
    import os

    import transformers
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    root = Path(os.path.dirname(transformers.__file__)) / "models"
    found: dict[str, list[str]] = {}
    for folder in sorted({model_type_to_module_name(t) for t in causal_lm_types()}):
        path = root / folder / f"modeling_{folder}.py"
        if not path.exists():
            continue
        src = path.read_text(encoding="utf-8")
        if "sigmoid" not in src:
            continue
        for cls in (n for n in ast.parse(src).body if isinstance(n, ast.ClassDef)):
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "forward":
                    body = ast.get_source_segment(src, fn)
                    attends = "attention_interface" in body or "ALL_ATTENTION_FUNCTIONS" in body
                    if "sigmoid" in body and (attends or _TIMES_OUTPUT.search(body)):
                        found.setdefault(folder, []).append(cls.name)
    return found


def unrecognised_gates(found: dict[str, list[str]]) -> dict[str, list[str]]:
    """The folders of a scan_gates() result that discover.GATED (or the linear-attention list) does not name."""
    from .models.discover import GATED, LINEAR_ATTENTION_GATES

    return {f: c for f, c in found.items() if f not in GATED and f not in LINEAR_ATTENTION_GATES}


def causal_lm_types() -> list[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def tiny_config(model_type: str, n_layers: int = 2):
    from transformers import AutoConfig

    from .models.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    kw = {**SMALL, "num_hidden_layers": n_layers, "vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
          "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id, **OVERRIDES.get(model_type, {})}
    default = AutoConfig.for_model(model_type)
    kw.update({k: v for k, v in TINY_IF_PRESENT.items() if _has(default, k)})
    if _has(default, "unpadded_vocab_size"):  # inkling2: the LM head's width, the embedding's padded beyond it
        kw["unpadded_vocab_size"] = len(tok)
    if _has(default, "kv_lora_rank") and getattr(default, "kv_lora_rank") is not None:
        kw.update(MLA)
    kw = {k: v for k, v in kw.items() if v is not None}
    return AutoConfig.for_model(model_type, **kw), tok


def _has(cfg, key: str) -> bool:
    try:
        return hasattr(cfg, key)
    except Exception:  # noqa: BLE001 - per-layer attributes raise on the global config (Gemma 4)
        return False


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:160]


def build_tiny(model_type: str, folder: Path, seed: int = 0) -> Path:
    """A tiny random checkpoint of `model_type` in `folder` (4 layers if 2 hold no softmax attention)."""
    from transformers import AutoModelForCausalLM

    from .models.discover import discover

    if model_type in PAPER_FORMATS:
        return _build_paper(PAPER_FORMATS[model_type], folder, seed)
    for n_layers in (2, 4, 8):
        cfg, tok = tiny_config(model_type, n_layers)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        try:
            if discover(model, model_type).attn_paths:
                break
        except Exception:  # noqa: BLE001 - no attention layer in this many layers: try more, then let load() say
            continue
    _sharpen(model)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _sharpen(model) -> None:
    """Scale query rows up so tiny random models attend sharply (a near-uniform pattern would pass anything)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "c_attn.weight", "query_key_value.weight", "q_b_proj.weight",
                              "qkv_proj.weight", "Wqkv.weight", "query.weight")):
                p.mul_(4.0)


def check_type(model_type: str, seq_len: int = 24, n_seqs: int = 2) -> Row:
    """Build, load and compare one model type; never raises (a failure is a row with its reason)."""
    t0 = time.time()
    row = Row(model_type)
    try:
        with tempfile.TemporaryDirectory(prefix=f"gatelens-cov-{model_type}-") as tmp:
            _check(model_type, Path(tmp), row, seq_len, n_seqs)
    except Exception as e:  # noqa: BLE001 - the table records every failure as one line
        row.status, row.reason = ("skip" if _is_refusal(e) else "fail"), row.reason or _short(e)
    row.seconds = round(time.time() - t0, 2)
    return row


def _is_refusal(e: BaseException) -> bool:
    from .errors import GatelensError

    return isinstance(e, GatelensError)


def _check(model_type: str, tmp: Path, row: Row, seq_len: int, n_seqs: int) -> None:
    import gatelens

    from .metrics.sink import f_attn_reference

    try:
        folder = build_tiny(model_type, tmp / "m")
    except Exception as e:  # noqa: BLE001
        row.status, row.reason = "skip", f"no tiny instance from the default config ({_short(e)})"
        return
    loaded = gatelens.load(str(folder))
    info, fam = loaded.info, loaded.family
    row.family = "discovered" if fam.discovered else fam.name
    row.attention_layers = ",".join(map(str, info.attention_layers))
    row.skipped_layers = len(info.skipped_layers or [])
    row.gate, row.learned_sink = info.gate, info.learned_sink
    text = "It was the best of times, it was the worst of times. " * 8
    inputs = gatelens.prepare_inputs(loaded, text=text, seq_len=seq_len, n_seqs=n_seqs)
    ids = torch.stack(inputs.seqs)
    ref = _eager_reference(model_type, folder)
    captured: list = []
    try:
        with torch.no_grad(), _capture_eager(ref, captured):
            want = ref(ids, output_attentions=True)
    except Exception as e:  # noqa: BLE001
        row.reason = f"transformers' own eager forward fails on the tiny instance ({_short(e)})"
        return
    with torch.no_grad():
        got = loaded.model(ids).logits
    row.logits_err = float((got.float() - want.logits.float()).abs().max())
    result = gatelens.sink(loaded, inputs, batch_size=n_seqs)
    patterns = [a for a in (want.attentions or ()) if a is not None]
    if len(patterns) == info.n_layers and len(result.layers) < info.n_layers:  # hybrids returning every layer's
        patterns = [patterns[i] for i in info.attention_layers]
    # A looped layer (inkling2_loop, dory) attends once per pass, and gatelens pools the passes: so does the reference.
    # Eager implementations differ in what they return (granite_swa: the pattern without the sink's scaling): with
    # learned sinks, or passes to pool, rebuild softmax([logits, sink]) from the eager function's own inputs instead.
    looped = len({c[-1] for c in captured}) < len(captured)
    if info.learned_sink or (looped and len(patterns) != len(result.layers)):
        passes: dict = {}
        for c in captured:
            passes.setdefault(c[-1], []).append(_with_sink(c))
        patterns = [torch.cat(p, 0) for _, p in sorted(passes.items())]
    if len(patterns) != len(result.layers):
        row.reason = (f"eager returned {len(patterns)} attention patterns for {len(result.layers)} attention layers; "
                      "cannot compare")
        return
    f_err, s_err = 0.0, 0.0
    for ly, pattern in zip(result.layers, patterns):
        ref_f = f_attn_reference(pattern.double())
        f_err = max(f_err, float((torch.tensor(ly.heads["f_attn"], dtype=torch.float64) - ref_f).abs().max()))
        if "learned_sink" in ly.heads:  # the sink column eager drops: what the row sum misses
            valid = torch.zeros(pattern.shape[2], dtype=torch.float64)
            valid[1:] = 1
            ref_s = torch.einsum("bhq,q->h", 1 - pattern.double().sum(-1), valid) / (valid.sum() * pattern.shape[0])
            s_err = max(s_err, float((torch.tensor(ly.heads["learned_sink"], dtype=torch.float64) - ref_s).abs().max()))
    row.f_attn_err = f_err
    row.sink_err = s_err if info.learned_sink else None
    from .measure import massive as measure_massive

    massive = measure_massive(loaded, inputs, batch_size=n_seqs)
    row.massive = massive is not None
    row.rank = _rank_check(loaded, ids)
    if info.gated and fam.gate_module is None:
        row.reason = f"gate recognised, scores not read yet: {fam.gate_note}"
    elif info.gated:
        row.extra["gate_err"] = gate_err = _gate_check(loaded, ids)
        if gate_err is None or gate_err > EXACT_TOL:
            row.reason = f"gate scores differ from o_proj input / SDPA output ({gate_err})"
            row.status = "fail"
            return
    ok = f_err <= TOL and row.logits_err <= 1e-4 and (not info.learned_sink or s_err <= EXACT_TOL)
    if not info.learned_sink and fam.learned_sink is False and _has_sink_kwarg(loaded):
        ok, row.reason = False, "learned sink logits not recognised"
    row.status = "ok" if ok else "fail"
    if not ok and not row.reason:
        row.reason = f"F-Attn off by {f_err:.2g}, logits by {row.logits_err:.2g}" + (
            f", learned sink by {s_err:.2g}" if info.learned_sink else "")


class _capture_eager:
    """Record (query, key, mask, scaling, sinks, position bias, layer_idx) of every call of the reference model's eager attention
    function by a decoder layer's attention module."""

    def __init__(self, model, out: list):
        import sys

        self.mod, self.out = sys.modules[type(model).__module__], out
        self.orig = getattr(self.mod, "eager_attention_forward", None)

    def __enter__(self):
        if self.orig is None:
            return self
        out, orig = self.out, self.orig

        def wrapper(module, query, key, value, attention_mask, *args, **kwargs):
            if hasattr(module, "layer_idx"):  # a decoder layer's attention (not inkling2's depth-wise block mixer)
                scaling = kwargs.get("scaling", args[0] if args else None)
                sinks = kwargs.get("s_aux", kwargs.get("sinks", getattr(module, "sinks", None)))
                out.append((query, key, attention_mask, scaling, sinks, kwargs.get("position_bias"), module.layer_idx))
            return orig(module, query, key, value, attention_mask, *args, **kwargs)

        self.mod.eager_attention_forward = wrapper
        return self

    def __exit__(self, *exc):
        if self.orig is not None:
            self.mod.eager_attention_forward = self.orig


def _with_sink(captured) -> torch.Tensor:
    """The attention pattern [b, h, q, k] of softmax over [logits (+ position bias), sink logit], the sink column kept
    out; the sink logit is one per head ([h]) or one per query ([b, h, q, 1], inkling2's sink_proj)."""
    q, k, mask, scaling, sinks, bias, _ = captured
    k = k.repeat_interleave(q.shape[1] // k.shape[1], 1)
    logits = (q.double() @ k.double().transpose(-1, -2)) * (scaling if scaling is not None else q.shape[-1] ** -0.5)
    if bias is not None:  # inkling2's relative position bias, added before the mask as in its eager function
        logits = logits + bias.double()
    if mask is not None:
        m = mask[..., : k.shape[-2]]
        logits = logits.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else logits + m.double()
    if sinks is None:
        return logits.softmax(-1)
    s = sinks.double().reshape(1, -1, 1, 1) if sinks.dim() == 1 else sinks.double().reshape(*sinks.shape[:3], 1)
    full = torch.cat([logits, s.expand(*logits.shape[:-1], 1)], -1).softmax(-1)
    return full[..., :-1]


def _gate_check(loaded, ids) -> float | None:
    """Max difference between gatelens' gate scores and W_O's input (or the gated_into module's: Dory normalises
    before W_O) divided by the SDPA output (a cross-check that needs no knowledge of the layout), over entries where
    the SDPA output is not tiny; None if not observable."""
    from . import attention
    from .models.discover import GATED, modeling_folder
    from .models.gate_logits import gate_logits

    if loaded.family.native:
        return _paper_gate_check(loaded, ids)
    layer = loaded.info.attention_layers[0]
    attn = loaded.attention(layer)
    reader = GATED.get(modeling_folder(loaded.model))
    gated_into = (reader.gated_into if reader else None) or loaded.family.o_proj   # whose input is the gated output
    seen: dict = {}

    def gate_hook(module, args, output):
        seen["s"] = torch.sigmoid(gate_logits(loaded, output, module).double())      # [b, n, H, g]

    def o_hook(module, args):
        seen["z"] = args[0].double()                                                 # [b, n, H * d]

    hooks = [attn.get_submodule(loaded.family.gate_module).register_forward_hook(gate_hook),
             attn.get_submodule(gated_into).register_forward_pre_hook(o_hook)]
    events = []
    try:
        with attention.listening(lambda ev: events.append(ev.output) if ev.layer == layer else None), torch.no_grad():
            loaded.model(ids[:1])
    finally:
        for h in hooks:
            h.remove()
    if not events or "s" not in seen or "z" not in seen:
        return None
    y = events[0].double().transpose(1, 2)                                           # [b, n, H, d]
    z = seen["z"].view(y.shape)
    s = seen["s"].expand(y.shape)
    big = y.abs() > 1e-3 * y.abs().max()
    return float(((z / y - s).abs())[big].max())


def _paper_gate_check(loaded, ids) -> float | None:
    """The paper's format gates inside W_O's own forward, so no module sees the gated output: its scores are checked
    against sigmoid of the gate rows of q_proj recomputed from the weights (per KV group [G heads' queries | G heads'
    gates], the release's layout written out here again)."""
    import torch.nn.functional as F

    from .models.gate_logits import gate_logits

    info = loaded.info
    q_proj = loaded.attention(info.attention_layers[0]).get_submodule("q_proj")
    seen: dict = {}
    hooks = [q_proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0].double())),
             q_proj.get_submodule("hook_gate").register_forward_hook(
                 lambda m, args, out: seen.__setitem__("s", torch.sigmoid(gate_logits(loaded, out, m).double())))]
    try:
        with torch.no_grad():
            loaded.model(ids[:1])
    finally:
        for h in hooks:
            h.remove()
    if "x" not in seen or "s" not in seen:
        return None
    H, K, d = info.n_heads, info.n_kv_heads, info.d_head
    G, w = H // K, (1 if info.gate == "headwise" else d)
    with torch.no_grad():
        full = F.linear(seen["x"], q_proj.weight.double(), None if q_proj.bias is None else q_proj.bias.double())
    want = torch.sigmoid(full.view(*full.shape[:-1], K, G * (d + w))[..., G * d:].reshape(*full.shape[:-1], H, w))
    return float((seen["s"].expand_as(want) - want).abs().max())


def _has_sink_kwarg(loaded) -> bool:
    return any(n.endswith(("sinks", "s_aux")) for n, _ in loaded.model.named_parameters())


def _rank_check(loaded, ids) -> str:
    """'ok' when W_V read through the family reproduces the values the attention function receives."""
    from .models.weights import check_ov, ov_weights

    if loaded.family.discovered:
        return check_ov(loaded)[:90] or "ok"
    try:
        ov_weights(loaded, loaded.info.attention_layers[0])
    except Exception as e:  # noqa: BLE001
        return f"weights unreadable ({_short(e)})"
    return "ok"


def _worker_init(mem_gb: float) -> None:
    import os
    import resource

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    resource.setrlimit(resource.RLIMIT_AS, (int(mem_gb * 2**30), resource.RLIM_INFINITY))
    torch.set_num_threads(1)


def _timed_check(model_type: str, seconds: int) -> Row:
    import signal
    import warnings

    warnings.filterwarnings("ignore")

    def alarm(signum, frame):
        raise TimeoutError(f"over {seconds} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return check_type(model_type)
    finally:
        signal.alarm(0)


def sweep(types: list[str] | None = None, on_row=None, *, seconds: int = 180, mem_gb: float = 8.0) -> list[Row]:
    """check_type for every type, each in a worker process with a memory cap and a time limit (a type whose default
    config is huge fails alone, with its reason, instead of taking the machine down)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    rows = []
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_worker_init, initargs=(mem_gb,))
    try:
        for mt in types or causal_lm_types() + list(PAPER_FORMATS):
            try:
                row = pool.submit(_timed_check, mt, seconds).result()
            except BrokenProcessPool:
                row = Row(mt, reason=f"the worker died (over {mem_gb:g} GB, or a crash) building or running it")
                pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_worker_init, initargs=(mem_gb,))
            rows.append(row)
            if on_row is not None:
                on_row(row)
    finally:
        pool.shutdown()
    return rows


def read_rows(path: Path) -> list[Row]:
    """The rows of a table `gatelens models` wrote (its .json)."""
    import json

    from .errors import GatelensError

    try:
        return [Row(**d) for d in json.loads(Path(path).read_text())]
    except (ValueError, TypeError) as e:
        raise GatelensError(f"{path} is not a table of `gatelens models` rows ({_short(e)})") from None


def merge_rows(previous: list[Row], new: list[Row]) -> list[Row]:
    """`previous` with the rows of the types in `new` replaced (or added), sorted by model type."""
    by_type = {r.model_type: r for r in previous}
    by_type.update({r.model_type: r for r in new})
    return [by_type[t] for t in sorted(by_type)]


def markdown(rows: list[Row], versions: str) -> str:
    paper = [r for r in rows if r.model_type in PAPER_FORMATS]
    rows = [r for r in rows if r.model_type not in PAPER_FORMATS] + paper
    ok = [r for r in rows if r.status == "ok" and r.model_type not in PAPER_FORMATS]
    lines = [
        "# Model coverage",
        "",
        f"Made by `gatelens models` ({versions}): a tiny random fp32 instance of every model type the installed "
        "transformers maps to `AutoModelForCausalLM`, loaded through `gatelens.load` and compared with transformers' "
        "eager attention (`output_attentions=True`). **ok**: logits equal (1e-4), per-head F-Attn equal to "
        f"{TOL:g}, the learned-sink share equal to the sink column of the eager softmax to {EXACT_TOL:g}, gate scores "
        f"equal to W_O's input over the SDPA output to {EXACT_TOL:g}, massive activations run.",
        "",
        f"**{len(ok)} of {len(rows) - len(paper)} model types measured exactly**; "
        f"{sum(r.gate != 'none' for r in ok)} with an output gate, {sum(r.learned_sink for r in ok)} with learned "
        "sinks. `rank`: W_V read by gatelens reproduces the values the attention function receives."
        + (f" Last, the paper's release format (model_type qwen3 + a gate flag, built by gatelens; reference: the "
           f"same build under eager attention): {sum(r.status == 'ok' for r in paper)} of {len(paper)} exact."
           if paper else ""),
        "",
        "| model type | status | family | attention layers | skipped | gate | learned sink | rank | F-Attn err "
        "| gate err | sink err | reason |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def e(x):
        return "" if x is None else f"{x:.1e}"

    for r in rows:
        lines.append(f"| {r.model_type} | {r.status} | {r.family} | {r.attention_layers} | {r.skipped_layers or ''} "
                     f"| {'' if r.gate == 'none' else r.gate} | {'yes' if r.learned_sink else ''} | {r.rank} "
                     f"| {e(r.f_attn_err)} | {e(r.extra.get('gate_err'))} | {e(r.sink_err)} "
                     f"| {r.reason.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def scan_report() -> dict:
    """`gatelens models --scan-gates`: the maintainer's check before raising VERIFIED_TRANSFORMERS: the modeling
    folders of the installed transformers that multiply an attention output by a sigmoid, and those gatelens does
    not recognise."""
    found = scan_gates()
    return {"transformers": installed_transformers(), "verified": VERIFIED_TRANSFORMERS, "gated": found,
            "unrecognised": unrecognised_gates(found)}


def check_table_out(out: Path) -> None:
    """`gatelens models --out`: a Markdown file (its rows are written beside it as .json), checked before the sweep:
    not a folder, a .md file whose .json is no folder, in a folder we can write, and not a file gatelens did not
    write."""
    from .errors import GatelensError
    from .report import check_writable

    if out.is_dir():
        raise GatelensError(f"--out {out} is a folder; give the Markdown file to write, e.g. {out / 'MODELS.md'}")
    if out.suffix.lower() != ".md":
        raise GatelensError(f"--out {out}: give a Markdown file ending in .md (its rows go to the .json beside it)")
    if out.with_suffix(".json").is_dir():
        raise GatelensError(f"--out {out}: {out.with_suffix('.json')} is a folder, where the table's .json goes; "
                            "choose another --out")
    check_writable(out.parent)
    rows = out.with_suffix(".json")
    for taken in (p for p in (out, rows) if p.exists()):
        try:
            read_rows(rows)
        except (GatelensError, OSError):
            raise GatelensError(f"--out {out}: {taken} exists and is not a table of `gatelens models`; "
                                "choose another --out") from None


def plan_table(out: Path, types: list[str] | None, merge: bool) -> list[Row] | None:
    """Check a `gatelens models` request before the sweep: the --out table, the --types named (each a causal-LM
    type of the installed transformers or a paper format) and --merge (which needs the types and the table it
    merges into). Returns the rows merged into (None without --merge)."""
    import transformers

    from .errors import GatelensError

    check_table_out(out)
    known = set(causal_lm_types()) | set(PAPER_FORMATS)
    unknown = [t for t in types or [] if t not in known]
    if unknown:
        raise GatelensError(f"--types: {', '.join(unknown)} not a causal-LM model type of transformers "
                            f"{transformers.__version__}; `gatelens models` without --types checks every one")
    if not merge:
        return None
    if not types:
        raise GatelensError("--merge replaces the rows of the --types given in an existing table; name them "
                            "(without --merge, `gatelens models` checks every type)")
    if not out.with_suffix(".json").is_file():
        raise GatelensError(f"--merge: no table to merge into at {out.with_suffix('.json')}; run "
                            "`gatelens models` without --merge first")
    return read_rows(out.with_suffix(".json"))


def write_table(out: Path, rows: list[Row]) -> dict:
    """The Markdown table at `out` and its rows beside it as .json (both or neither); returns the counts: exact
    model types of transformers, and of the paper's formats (counted apart)."""
    import json

    import transformers

    from .report import write_all

    def fill(w):
        w.path(out.name).write_text(markdown(rows, f"transformers {transformers.__version__}, "
                                                   f"torch {torch.__version__}"))
        w.path(out.with_suffix(".json").name).write_text(json.dumps([r.to_dict() for r in rows], indent=1) + "\n")

    write_all(out.parent, fill)
    hf = [r for r in rows if r.model_type not in PAPER_FORMATS]
    paper = [r for r in rows if r.model_type in PAPER_FORMATS]
    return {"ok": sum(r.status == "ok" for r in hf), "types": len(hf),
            "paper_ok": sum(r.status == "ok" for r in paper), "paper_formats": len(paper)}
