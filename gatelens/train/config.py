"""TrainConfig: every setting of a training run, checked on construction, and recipes as TOML files.

    cfg = TrainConfig(out="runs/base", gate="elementwise")
    cfg = TrainConfig(out="runs/mech", **read_recipe(RECIPES / "mech.toml"))   # the zoo's recipe

A recipe is a TOML file whose keys are TrainConfig fields (`task_params` a table); `gatelens train
--config FILE` reads one, and each option given on the command line overrides the file.
"""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GatelensError
from ..models.gate_kinds import GATES

RECIPES = Path(__file__).resolve().parent.parent / "zoo" / "recipes"   # mech.toml, text.toml


@dataclass
class TrainConfig:
    out: str                              # final output folder
    data: str = "bigram-backcopy"         # a task name or a text corpus file (documents split by <|doc|>)
    gate: str = "none"                    # one of models.gated.GATES
    final_norm: bool = True               # False drops the last RMSNorm (model_type "gatelens")
    qk_norm: bool = True                  # Qwen3's RMSNorm on queries and keys; False -> model_type "gatelens"
    pre_norm: bool = True                 # RMSNorm before attention and MLP; False -> model_type "gatelens"
    # model (Qwen3)
    d_model: int = 128
    n_layers: int = 1
    n_heads: int = 1
    n_kv_heads: int | None = None         # None: = n_heads
    head_dim: int | None = None           # None: d_model // n_heads
    ffn: int = 512
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    init_std: float = 0.02
    gate_init_std: float = 0.02           # gate rows; logits start near 0 (sigmoid 0.5)
    # data
    seq_len: int = 256                    # also the model's max_position_embeddings
    task_params: dict = field(default_factory=dict)  # e.g. {"vocab": 64, "n_triggers": 3}
    eval_seed: int = 1234                 # held-out task sequences (a seed namespace apart from training)
    val_data: str | None = None           # corpus only; None: the last 5% of the corpus' tokens
    bpe_vocab: int = 4096                 # corpus only: byte-level BPE trained on the training split
    # optimisation
    batch_size: int = 32
    steps: int = 500
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # bookkeeping
    eval_every: int = 50
    eval_seqs: int = 16
    ckpt_every: int = 100
    seed: int = 0
    device: str = "cpu"                   # cpu | cuda[:i] | auto (CUDA if there is one)
    save_dtype: str = "float32"           # float32 | bfloat16
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self):
        if self.gate not in GATES:
            raise GatelensError(f"unknown gate {self.gate!r}; use one of {', '.join(GATES)}")
        for name in ("d_model", "n_layers", "n_heads", "ffn", "batch_size", "steps", "eval_every", "eval_seqs",
                     "ckpt_every"):
            if getattr(self, name) < 1:
                raise GatelensError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise GatelensError(f"--seq-len {self.seq_len} is too short; use at least 2")
        self.n_kv_heads = self.n_kv_heads or self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise GatelensError(f"--n-heads {self.n_heads} is not a multiple of --n-kv-heads {self.n_kv_heads}")
        self.head_dim = self.head_dim or self.d_model // self.n_heads
        if self.head_dim < 1 or self.head_dim % 2:
            raise GatelensError(f"head_dim {self.head_dim} must be even and positive (RoPE); set --head-dim")
        if self.lr <= 0 or not 0 <= self.min_lr <= self.lr:
            raise GatelensError("--lr must be positive and --min-lr between 0 and --lr")
        if self.save_dtype not in ("float32", "bfloat16"):
            raise GatelensError(f"--save-dtype {self.save_dtype!r}; use float32 or bfloat16")
        if self.is_task:
            from .. import tasks

            tasks.task_params(self.data, **self.task_params)  # raises on bad parameters
        else:
            self._check_corpus()

    @property
    def is_task(self) -> bool:
        from ..tasks import TASKS

        return self.data in TASKS

    def _check_corpus(self) -> None:
        path = Path(self.data)
        if not path.exists():
            if path.suffix == "" and "/" not in self.data:
                from ..tasks import TASKS

                raise GatelensError(f"unknown task {self.data!r}; known tasks: {', '.join(TASKS)} "
                                    "(or give the path of a text corpus)")
            raise GatelensError(f"corpus file {self.data} not found")
        if not path.is_file():
            from ..data import DOC_SEPARATOR

            raise GatelensError(f"--data {self.data} is a folder; give a text file (documents split by "
                                f"{DOC_SEPARATOR})")
        from .documents import read_documents

        docs = read_documents(path)
        if not docs:
            raise GatelensError(f"corpus {self.data} is empty; give a text file with at least one document")
        # Byte-level BPE never makes more tokens than bytes: an upper bound, known before any tokenizer.
        most = sum(len(d.encode()) + 1 for d in docs)
        if most < self.seq_len:
            raise GatelensError(f"corpus {self.data} has at most {most} tokens, fewer than one sequence of "
                                f"{self.seq_len}; give a longer corpus or a smaller --seq-len")


def read_recipe(path: str | Path) -> dict:
    """A recipe file's settings, each key a TrainConfig field holding a value of that field's type."""
    path = Path(path)
    if not path.is_file():
        raise GatelensError(f"recipe {path} not found; pass --config FILE (the zoo's: {RECIPES}/*.toml)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GatelensError(f"recipe {path} is not valid TOML ({e}); fix the file") from None
    hints = typing.get_type_hints(TrainConfig)
    for key, value in raw.items():
        if key not in hints:
            raise GatelensError(f"recipe {path}: unknown setting {key!r}; valid settings: {', '.join(hints)}")
        raw[key] = _typed(path, key, value, hints[key])
    return raw


def _typed(path: Path, key: str, value, hint):
    """`value` as the field's type (an integer where a float is expected becomes that float), or a one-line error."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)   # int | None -> int, None
    if float in allowed and type(value) is int:
        return float(value)
    if not any(type(value) is t for t in allowed):   # exact: a TOML true is no integer
        want = " or ".join(t.__name__ for t in allowed if t is not type(None))
        raise GatelensError(f"recipe {path}: {key} = {value!r} should be {want}; fix the file")
    return value

