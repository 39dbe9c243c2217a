"""TrainConfig: every setting of a training run with its declared range, checked on construction; recipes as TOML.

    cfg = TrainConfig(out="runs/base", gate="elementwise")
    cfg = TrainConfig(out="runs/mech", **read_recipe(RECIPES / "mech.toml"))   # the zoo's recipe

A recipe is a TOML file whose keys are TrainConfig fields (`task_params` a table); `gatelens train
--config FILE` reads one, and each option given on the command line overrides the file. Each field declares
what it may hold in its metadata (`setting(3e-3, gt=0)`); `check_setting` is the one check of a value against
it, for options, code and recipes alike.
"""

from __future__ import annotations

import os
import re
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import tomllib

from ..errors import GatelensError
from ..models.gate_kinds import GATE_KINDS, GATES
from ..models.tokenizer import SPECIALS
from ..options import Range, setting  # noqa: F401 - setting: TrainConfig's fields
from ..settings import DEVICE_PATTERN

RECIPES = Path(__file__).resolve().parent.parent / "zoo" / "recipes"   # mech.toml, text.toml


GATE_HELP = "the attention gate: " + ", ".join(k.name + (f" ({k.position})" if k.position else "")
                                               for k in GATE_KINDS.values())


SEED = {"ge": 0, "lt": 2**63}
DEVICE = (DEVICE_PATTERN, "cpu, cuda, cuda:N, mps or auto")
BPE_LEAST = 256 + len(SPECIALS)   # a byte-level BPE holds every byte and the special tokens


@dataclass
class TrainConfig:
    out: str = setting(help="output checkpoint folder (here or in --config)")
    data: str = setting("bigram-backcopy", help="a named task (bigram-backcopy) or a text corpus file, documents "
                                                "split by <|doc|> lines")
    gate: str = setting("none", choices=GATES, help=GATE_HELP)
    # any of the three norms off: the model_type "gatelens" (gatelens' own build), else a plain Qwen3
    final_norm: bool = setting(True, help="the last RMSNorm (without it: model_type gatelens)")
    qk_norm: bool = setting(True, help="Qwen3's RMSNorm on queries and keys")
    pre_norm: bool = setting(True, help="RMSNorm before attention and MLP")
    # model (Qwen3)
    d_model: int = setting(128, ge=1, help="residual stream width")
    n_layers: int = setting(1, ge=1, help="decoder layers")
    n_heads: int = setting(1, ge=1, help="query heads per layer")
    n_kv_heads: int | None = setting(None, ge=1, help="key/value heads (default: --n-heads)")
    # even (RoPE rotates pairs); None: d_model // n_heads
    head_dim: int | None = setting(None, ge=2, help="width of a head (default: d_model / n_heads)")
    ffn: int = setting(512, ge=1, help="MLP hidden width")
    rope_theta: float = setting(10000.0, gt=0, help="RoPE base")
    tie_embeddings: bool = setting(True, help="one matrix for input embedding and LM head")
    init_std: float = setting(0.02, gt=0, help="std of the initial weights")
    gate_init_std: float = setting(0.02, ge=0,
                                   help="std of the initial gate rows (logits near 0: scores near 0.5)")
    # data
    # BOS and at least one token; also the model's max_position_embeddings
    seq_len: int = setting(256, ge=2, help="tokens per sequence, BOS included; also the model's context")
    # e.g. {"vocab": 64, "n_triggers": 3}, checked by the task
    task_params: dict = setting(factory=dict,
                                help="task parameters as JSON, e.g. {\"vocab\": 64}; replaces the --config table")
    # held-out task sequences (a seed namespace apart from training)
    eval_seed: int = setting(1234, **SEED, help="seed of a task's held-out sequences")
    val_data: str | None = setting(None,
                                   help="corpus only: validation text file (default: the last 5% of --data)")
    # corpus only: byte-level BPE trained on the training split
    bpe_vocab: int = setting(4096, ge=BPE_LEAST, help="corpus only: byte-level BPE vocabulary")
    # optimisation
    batch_size: int = setting(32, ge=1, help="sequences per step")
    steps: int = setting(500, ge=1, help="optimiser steps")
    lr: float = setting(3e-3, gt=0, help="peak learning rate (AdamW)")
    min_lr: float = setting(3e-4, ge=0, help="learning rate at the end of the cosine (at most --lr)")
    warmup_steps: int = setting(50, ge=0, help="linear warm-up steps")
    weight_decay: float = setting(0.1, ge=0, help="AdamW weight decay on matrices")
    beta1: float = setting(0.9, ge=0, lt=1, help="AdamW beta1")
    beta2: float = setting(0.95, ge=0, lt=1, help="AdamW beta2")
    # max gradient norm; 0: no clipping (nanoGPT)
    grad_clip: float = setting(1.0, ge=0, help="gradient-norm clip (0: none)")
    # bookkeeping
    eval_every: int = setting(50, ge=1, help="steps between validation passes")
    eval_seqs: int = setting(16, ge=1, help="validation sequences")
    ckpt_every: int = setting(100, ge=1, help="steps between checkpoints")
    seed: int = setting(0, **SEED, help="seed of the initial weights and the batches")
    device: str = setting("cpu", pattern=DEVICE,
                          help="cpu, cuda, cuda:N or auto (CUDA if there is a GPU, else CPU)")
    save_dtype: str = setting("float32", choices=("float32", "bfloat16"),
                              help="saved weights: float32 or bfloat16")
    keep_checkpoints: bool = setting(False, help="keep a loadable model at step 0 and every --ckpt-every steps in "
                                                 "OUT/checkpoints/ (for gatelens emergence)")
    resume: bool = setting(False,
                           help="continue the run whose checkpoint an interruption kept in .<out>.partial/ beside --out")
    overwrite: bool = setting(False, help="replace an existing --out")

    def __post_init__(self):
        """Every field against its declaration (type, range, choices), then what fields say of each other, then
        the files named: the whole config is checked before any work."""
        for f in fields(self):
            setattr(self, f.name, check_setting(f.name, getattr(self, f.name)))
        self.n_kv_heads = self.n_kv_heads or self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise GatelensError(f"--n-heads {self.n_heads} is not a multiple of --n-kv-heads {self.n_kv_heads}")
        self.head_dim = self.head_dim or self.d_model // self.n_heads
        if self.head_dim < 1 or self.head_dim % 2:
            raise GatelensError(f"head_dim {self.head_dim} must be even and positive (RoPE); set --head-dim")
        if self.min_lr > self.lr:
            raise GatelensError(f"--min-lr {self.min_lr:g} is above --lr {self.lr:g}; the cosine decays from lr "
                                "down to min_lr: give --min-lr at most --lr")
        if self.is_task:
            from .. import tasks

            if self.val_data is not None:
                raise GatelensError(f"--val-data is a corpus' validation file, but --data {self.data} is a task "
                                    "(validated on sequences from --eval-seed); drop --val-data")
            tasks.task_params(self.data, **self.task_params)  # raises on bad parameters
        else:
            self._check_corpus()

    @property
    def is_task(self) -> bool:
        from ..tasks import TASKS

        return self.data in TASKS

    def _check_corpus(self) -> None:
        path = Path(self.data)
        if not _exists(path) and path.suffix == "" and "/" not in self.data:
            from ..tasks import TASKS

            raise GatelensError(f"unknown task {self.data!r}; known tasks: {', '.join(TASKS)} "
                                "(or give the path of a text corpus)")
        docs = _documents("--data", path)
        # Byte-level BPE never makes more tokens than bytes: an upper bound, known before any tokenizer.
        most = sum(len(d.encode()) + 1 for d in docs)
        if most < self.seq_len:
            raise GatelensError(f"corpus {self.data} has at most {most} tokens, fewer than one sequence of "
                                f"{self.seq_len}; give a longer corpus or a smaller --seq-len")
        if self.val_data is not None:
            _documents("--val-data", Path(self.val_data))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:   # a name too long for the file system names no file
        return False


def _documents(flag: str, path: Path) -> list[str]:
    """The documents of a corpus file the config names, or a one-line error: missing, a folder, not UTF-8, empty."""
    from ..data import DOC_SEPARATOR
    from .documents import read_documents

    if not _exists(path):
        raise GatelensError(f"corpus file {path} not found ({flag})")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise GatelensError(f"{flag} {path} is {what}; give a text file (documents split by {DOC_SEPARATOR})")
    try:
        docs = read_documents(path)
    except (UnicodeDecodeError, OSError) as e:
        why = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror or str(e)
        raise GatelensError(f"{flag} {path}: {why}; give a UTF-8 text file") from None
    if not docs:
        raise GatelensError(f"corpus {path} is empty; give a text file with at least one document ({flag})")
    return docs


FIELDS = {f.name: f for f in fields(TrainConfig)}
HINTS = typing.get_type_hints(TrainConfig)
PATHS = ("out", "data", "val_data")   # may be given as a Path; kept as text


def check_setting(name: str, value, recipe: Path | None = None):
    """`value` checked against field `name`'s type and declared range (an integer where a float is expected
    becomes that float, a Path where a path is expected its text), or a one-line GatelensError naming the fix:
    the option `--name` or, from a `recipe`, the key in that file."""
    f, hint = FIELDS[name], HINTS[name]
    label = f"recipe {recipe}: {name} = {value!r}" if recipe else f"--{name.replace('_', '-')} {value!r}"
    fix = "; fix the file" if recipe else ""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)   # int | None -> int, None
    if name in PATHS and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if float in allowed and type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            raise GatelensError(f"{label} is out of range: give a finite number {f.metadata['range']}{fix}") from None
    if not any(type(value) is t for t in allowed):   # exact: a TOML true is no integer
        want = " or ".join(t.__name__ for t in allowed if t is not type(None))
        raise GatelensError(f"{label} should be {want}{fix}")
    if value is None or isinstance(value, (bool, dict)):
        return value
    meta = f.metadata
    if isinstance(value, str):
        if not value.strip():
            raise GatelensError(f"{label} is empty: give a value{fix}")
        if name in PATHS and "\0" in value:
            raise GatelensError(f"{label} holds a NUL character, which no path can{fix}")
        if meta.get("choices") and value not in meta["choices"]:
            where = f"recipe {recipe}: " if recipe else ""
            raise GatelensError(f"{where}unknown {name.replace('_', ' ')} {value!r}; use one of "
                                f"{', '.join(meta['choices'])}{fix}")
        if meta.get("pattern") and not re.fullmatch(meta["pattern"][0], value):
            raise GatelensError(f"{label}: use {meta['pattern'][1]}{fix}")
    elif meta.get("range") is not None and value not in meta["range"]:
        kind = "an integer" if type(value) is int else "a finite number"
        raise GatelensError(f"{label} is out of range: give {kind} {meta['range']}{fix}")
    return value


def read_recipe(path: str | Path) -> dict:
    """A recipe file's settings, each key a TrainConfig field and its value checked against that field."""
    path = Path(path)
    if not path.is_file():
        raise GatelensError(f"recipe {path} not found; pass --config FILE (the zoo's: {RECIPES}/*.toml)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GatelensError(f"recipe {path} is not valid TOML ({' '.join(str(e).split())}); fix the file") from None
    for key, value in raw.items():
        if key not in FIELDS:
            raise GatelensError(f"recipe {path}: unknown setting {key!r}; valid settings: {', '.join(FIELDS)}")
        raw[key] = check_setting(key, value, path)
    return raw


def from_options(config: Path | None = None, **options) -> TrainConfig:
    """The TrainConfig of `gatelens train`: the --config recipe (if any), then every option given (not None) over it
    (`task_params` as JSON text), the output folder checked writable before any work."""
    import json

    from ..report import check_writable

    settings = read_recipe(config) if config is not None else {}
    given = {k: v for k, v in options.items() if v is not None}
    if isinstance(given.get("task_params"), str):
        try:
            given["task_params"] = json.loads(given["task_params"])
        except json.JSONDecodeError as e:
            raise GatelensError(f"--task-params is not valid JSON ({e.msg}); example: '{{\"vocab\": 64}}'") from None
        if not isinstance(given["task_params"], dict):
            raise GatelensError("--task-params must be a JSON object; example: '{\"vocab\": 64}'")
    settings.update(given)
    if "out" not in settings:
        raise GatelensError("no output folder: pass --out DIR (or set out in the --config file)")
    cfg = TrainConfig(**settings)   # every field against its declared range, then the files it names
    check_writable(Path(cfg.out))
    return cfg
