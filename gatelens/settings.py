"""`Settings`: how a model is measured (which text, how many sequences of how many tokens, batching, device,
precision), one typed, serialisable object that every way in builds:

    Settings(seq_len=1024, n_seqs=4)                            # the Python API (compare_models(models, s))
    Settings.from_dict({"seq_len": [256, 1024], "dtype": "bfloat16"})   # JSON / TOML (figures.toml's groups)
    gatelens sink MODEL --seq-len 1024 --n-seqs 4               # the CLI makes one option per field

Each field declares what it may hold and its help in its metadata (`options.setting`); the CLI's options are
made from them, so a field added here is an option of every measuring command. A value out of range is one
GatelensError naming the option. What a result records (`result.settings`: the input, the sequences and tokens
really measured, BOS, batch size, eps; device and dtype in its model block) gives the settings back:
`Settings.from_result(result)`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from .errors import GatelensError
from .options import SEQ_LENS, setting

DEVICES = "cpu, cuda, cuda:N or auto (accelerate device map)"
DEVICE_PATTERN = r"cpu|auto|mps|cuda(:\d+)?"   # what --device takes here and in TrainConfig
DTYPES = ("float32", "bfloat16", "float16")
DATASETS = ("eval_sample",)  # data.DATASETS, without importing torch (tests check they agree)

log = logging.getLogger("gatelens")


def check_device(device: str) -> str:
    if not isinstance(device, str) or not re.fullmatch(DEVICE_PATTERN, device):
        raise GatelensError(f"--device {device!r}: use {DEVICES}")
    return device


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise GatelensError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return dtype


@dataclass
class Settings:
    """How to measure: the inputs (`text_file` or `dataset`, else the model's own evaluation data), their shape,
    batching, device and dtype. `seq_len` holds one length or several (a sweep, `gatelens sink`)."""

    text_file: str | None = setting(None, help="UTF-8 text file to measure on")
    dataset: str | None = setting(None, metavar="[" + "|".join(DATASETS) + "]",
                                  help="shipped dataset (default: the model's own evaluation data)")
    seq_len: tuple[int, ...] = setting(factory=lambda: (256,), metavar="N[,N...]",
                                       help="tokens per sequence; a comma list sweeps lengths (sink)")
    n_seqs: int = setting(8, ge=1, help="number of sequences")
    batch_size: int = setting(4, ge=1, help="sequences per forward pass")
    device: str = setting("cpu", metavar="[cpu|cuda|cuda:N|auto]", help=DEVICES)
    dtype: str = setting("float32", choices=DTYPES, metavar="[" + "|".join(DTYPES) + "]",
                         help="weights and activations")
    bos: bool = setting(True, help="prepend the model's BOS token to each sequence")
    revision: str | None = setting(None, help="hub ids: branch, tag or commit to load")
    eps: float = setting(0.3, gt=0, lt=1, help="sink-rate threshold on the key-0 share, in (0, 1)")

    def __post_init__(self):
        if isinstance(self.text_file, Path):
            self.text_file = str(self.text_file)
        if isinstance(self.seq_len, str):
            self.seq_len = SEQ_LENS.parse(self.seq_len)
        elif isinstance(self.seq_len, int) and not isinstance(self.seq_len, bool):
            self.seq_len = SEQ_LENS.parse(str(self.seq_len))
        elif isinstance(self.seq_len, (list, tuple)):
            self.seq_len = SEQ_LENS.parse(",".join(str(n) for n in self.seq_len))
        else:
            raise GatelensError(f"--seq-len {self.seq_len!r}: give a length or a comma list, e.g. 256,1024")
        check_device(self.device)
        check_dtype(self.dtype)
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            flag = f"--{f.name.replace('_', '-')}"
            if f.name == "seq_len" or value is None:
                continue
            if f.name == "bos" and not isinstance(value, bool):
                raise GatelensError(f"{flag} {value!r}: give true or false")
            if f.type in ("int", "str | None", "str") and type(value) is not (int if f.type == "int" else str):
                want = "an integer" if f.type == "int" else "text"
                raise GatelensError(f"{flag} {value!r} is out of range: give {want}"
                                    + (f" {meta['range']}" if meta["range"] is not None else ""))
            if meta["range"] is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                              or value not in meta["range"]):
                raise GatelensError(f"{flag} {value!r} is out of range: give a number {meta['range']}")
            if meta["choices"] and value not in meta["choices"]:
                raise GatelensError(f"{flag} {value!r}: use one of {', '.join(meta['choices'])}")
        if self.text_file is not None and self.dataset is not None:
            raise GatelensError("give only one of --text and --dataset")

    # --- what it holds -------------------------------------------------------------------------------------

    def lengths(self) -> list[int]:
        return list(self.seq_len)

    def length(self) -> int:
        """The one length of a command that measures one (every command but `sink`)."""
        if len(self.seq_len) != 1:
            raise GatelensError("this command takes one --seq-len; sweeps are for `gatelens sink`")
        return self.seq_len[0]

    def at(self, seq_len: int) -> Settings:
        """The same settings at one length."""
        return replace(self, seq_len=(seq_len,))

    def check_distinct(self, inputs: list) -> None:
        """A sweep whose text is too short for several of its lengths would measure the same sequences twice."""
        measured = [min(i.seq_len, i.longest) for i in inputs]
        if len(set(measured)) < len({i.seq_len for i in inputs}):
            raise GatelensError(f"--seq-len {','.join(map(str, self.seq_len))}: the text gives at most "
                                f"{max(measured)} tokens per sequence, so several lengths would measure the same "
                                f"{max(measured)}; sweep lengths up to it")

    def metric_options(self) -> dict[str, dict]:
        """The options of the registry's metrics these settings set (the sink threshold of F-Attn's sink rate and
        of the received-attention pass)."""
        return {"sink": {"eps": self.eps}, "received": {"eps": self.eps}}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seq_len"] = list(self.seq_len)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        """From JSON or TOML; an unknown key is refused by name (a typo must not measure with a default)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GatelensError(f"unknown setting {unknown[0]!r}; settings are {', '.join(sorted(known))}")
        return cls(**d)

    @classmethod
    def given(cls, settings: Settings | None, fields: dict) -> Settings:
        """The settings a function was called with: a Settings, or its fields as keywords, not both."""
        if settings is not None and fields:
            raise GatelensError(f"give the settings or their fields ({', '.join(fields)}), not both")
        return settings if settings is not None else cls(**fields)

    @classmethod
    def from_result(cls, result) -> Settings:
        """The settings a result was measured with, from what it recorded (its `settings` and model blocks): the
        lengths and number of sequences really measured, BOS, batch size and eps, and the model's device and
        dtype. The text itself is recorded as its source (`input`): a file or dataset comes back, a literal text
        does not."""
        s, model = result.settings, getattr(result, "model", None) or {}
        source = s.get("input", "")
        kw = {"text_file": source[len("file:"):] if source.startswith("file:") else None,
              "dataset": source[len("dataset:"):] if source.startswith("dataset:") else None}
        for name in ("n_seqs", "batch_size", "bos", "eps"):
            if name in s:
                kw[name] = s[name]
        if "seq_len" in s:
            kw["seq_len"] = s.get("seq_lens", [s["seq_len"]])
        if model.get("dtype") in DTYPES:
            kw["dtype"] = model["dtype"]
        if isinstance(model.get("device"), str) and re.fullmatch(r"cpu|mps|cuda(:\d+)?", model["device"]):
            kw["device"] = model["device"]
        return cls(**kw)

    # --- what it does -----------------------------------------------------------------------------------------

    def load(self, spec):
        """The model (a spec, or a Loaded passed through) on these settings' device and dtype."""
        from .measure import as_loaded

        return as_loaded(spec, device=self.device, dtype=self.dtype, revision=self.revision)

    def inputs(self, loaded, seq_len: int | None = None, text: str | None = None, check=None):
        """The sequences to measure (at `seq_len`, default the one length); `text` is a literal text in place of
        the file or dataset; `check(inputs)` may refuse what the text really gave before the note on it."""
        one = None if check is None else (lambda xs: check(xs[0]))
        return self.sweep_inputs(loaded, [seq_len or self.length()], text, one)[0]

    def sweep_inputs(self, loaded, lengths: list[int] | None = None, text: str | None = None, check=None) -> list:
        """The inputs at each length (default: every one of `seq_len`); a short text's shortfall is logged once
        (the CLI prints it as a note)."""
        from .measure import prepare_inputs

        inputs = [prepare_inputs(loaded, text=text, text_file=self.text_file, dataset=self.dataset, seq_len=n,
                                 n_seqs=self.n_seqs, bos=self.bos) for n in lengths or self.lengths()]
        if check is not None:
            check(inputs)
        for i in inputs:
            if i.shortfall:
                log.warning(i.shortfall)
        return inputs
