"""What every metric module builds on: the probe (hook side + streaming accumulator) and the per-head result.

A probe keeps its whole state in `self.acc`, a dict from a key (a layer, usually) to named fields, and
declares in `REDUCE` how two values of a field combine (default: sum). `add(key, **fields)` is the one
way state changes: per batch inside a process, and across processes (torchrun) when every rank
absorbs the others' states, so `state` / `clear` / `absorb` are written once, here.

A per-head result (`HeadResult`) holds, per attention layer, one list of values per statistic
(`heads[name][h]`); `overall`, `to_frame`, `layer_frame`, `summary` and `to_dict` are written once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch

from ..errors import GatelensError

Tensor = torch.Tensor


def SUM(a, b):
    """Tensors, numbers and lists add; dicts (counts per token, say) add key by key."""
    if isinstance(a, dict):
        return {**a, **{k: a[k] + v if k in a else v for k, v in b.items()}}
    return a + b


def MIN(a, b):
    return torch.minimum(a, b)


def MAX(a, b):
    return torch.maximum(a, b)


class Probe:
    """Base of every metric's probe: override `attach` (hooks) and/or `on_attention`, and `finish`.

    Class attributes: `name` (the registry key), `result_type`, `listens_to_attention`, `REDUCE`.
    `applies(loaded)` says whether the metric exists for a model (gates need a gated model).
    """

    name: ClassVar[str] = ""
    result_type: ClassVar[type | None] = None
    listens_to_attention: ClassVar[bool] = False
    standard: ClassVar[bool] = True   # in the set `compare` and `figures` run on every model
    in_training: ClassVar[bool] = False  # measured at every validation pass of `gatelens train` (train_log.csv)
    REDUCE: ClassVar[dict[str, Callable]] = {}
    # Attention variants this probe measures exactly ("softcap": Gemma 2's capped logits, "learned_sink": sink logits
    # in the softmax denominator, already inside the event's lse); any other variant is refused (check_exact).
    exact_with: ClassVar[frozenset[str]] = frozenset()
    batch = None  # the batch being measured; `run` sets it before each forward
    # Reads W_V / W_O: a discovered layout is checked (one short forward) before any probe's hooks are attached.
    reads_weights: ClassVar[bool] = False

    def __init__(self):
        self.acc: dict = {}

    @classmethod
    def applies(cls, loaded) -> bool:
        return True

    def attach(self, loaded) -> list:
        """Reset the state and return the hook handles this probe needs (removed after the run)."""
        self.acc = {}
        return []

    def on_attention(self, ev, batch) -> None:  # pragma: no cover - interface
        pass

    def finish(self, loaded, settings: dict):
        raise NotImplementedError

    def add(self, key, **fields) -> None:
        """Merge `fields` into the accumulator at `key`, each by its declared reducer."""
        acc = self.acc.setdefault(key, {})
        for name, value in fields.items():
            acc[name] = value if name not in acc else self.REDUCE.get(name, SUM)(acc[name], value)

    # Several processes: each rank accumulates its share, then absorbs all ranks' states in rank order.
    def state(self) -> dict:
        return self.acc

    def clear(self) -> None:
        self.acc = {}

    def absorb(self, state: dict) -> None:
        for key, values in state.items():
            self.add(key, **values)


def check_exact(probe: Probe, ev) -> None:
    """Refuse, in one line, an attention variant the probe's own recomputation of the pattern does not model."""
    for variant, present in (("softcap", ev.softcap is not None), ("learned_sink", ev.sink_logit is not None)):
        if present and variant not in probe.exact_with:
            what = "soft-capped attention logits" if variant == "softcap" else "learned sink logits"
            raise GatelensError(f"`{probe.name or type(probe).__name__}` does not measure attention with {what} "
                                f"(layer {ev.layer}) exactly yet; use `gatelens sink` / `gates` / `rank` on this model")


def check_finite(name: str, x: Tensor) -> None:
    if not torch.isfinite(x).all():
        raise GatelensError(f"non-finite values (NaN/inf) in {name}; {_cause(str(x.dtype).removeprefix('torch.'))}")


def _cause(dtype: str) -> str:
    """Why a number is NaN/inf, in words: a narrow dtype overflowing (fixable with an option every command that
    loads a model has), or the weights themselves (float32 does not overflow on a sane model)."""
    if dtype in ("float16", "bfloat16"):
        return f"{dtype} may be too narrow for these values: retry with --dtype float32"
    return "the model's weights hold NaN/inf values or its activations overflow"


def check_result(result, during: str = "") -> None:
    """Refuse a result whose model-level numbers (its `columns()`, what tables and `compare` show) are NaN/inf,
    naming the metric and the first layer / head where the value appeared: a degenerate number is never printed
    as a finding. `during`: what was being run (an ablation), for the message."""
    columns = result.columns() if hasattr(result, "columns") else {}
    for name, value in columns.items():
        if isinstance(value, float) and not math.isfinite(value):
            where = _first_non_finite(result.to_dict(), name) or ""
            model = result.model
            raise GatelensError(f"{model['spec']}: {name} is {value}{where}{during}, not a finding; "
                                f"{_cause(model.get('dtype', 'float32'))}")


def _first_non_finite(obj, key: str, at: str = "") -> str | None:
    """' (first in layer L head H)': where `key` first holds NaN/inf in a result's dict, children (heads) before
    their summary (the layer mean); '' when only a top-level number is, None when none is."""
    if isinstance(obj, list):
        return next((w for x in obj if (w := _first_non_finite(x, key, at)) is not None), None)
    if not isinstance(obj, dict):
        return None
    here = at + "".join(f" {k} {obj[k]}" for k in ("layer", "head") if isinstance(obj.get(k), int))
    for k, v in obj.items():
        if isinstance(v, (list, dict)) and k not in ("model", "settings"):
            w = _first_non_finite(v, key, here)
            if w is not None:
                return w
    v = obj.get(key)
    if isinstance(v, float) and not math.isfinite(v):
        return f" (first in{here})" if here else ""
    return None


def hidden(output) -> Tensor:
    """A decoder layer's forward output -> its hidden state [batch, pos, d_model].

    Hyper-connection models (DeepSeek-V4, HY-V4) carry several residual streams, [batch, pos, stream, d_model]:
    their values are taken together, as one state of stream * d_model channels."""
    h = output[0] if isinstance(output, tuple) else output
    return h if h.dim() <= 3 else h.flatten(2)


def mean(xs) -> float:
    return sum(xs) / len(xs)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, torch.Tensor):
        return f"tensor{list(v.shape)}"
    if isinstance(v, Result):
        return f"<{type(v).__name__}>"
    if isinstance(v, (list, tuple)):
        return f"[{len(v)} {type(v[0]).__name__ if v else 'items'}]"
    if isinstance(v, dict):
        return "{" + ", ".join(map(str, list(v)[:8])) + (", ..." if len(v) > 8 else "") + "}"
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


class Result:
    """Base of every result object: `print(result)` gives a short summary (its type, the model, the input, the
    headline numbers, the size of what it holds), not the dataclass repr of every layer, head and tensor.
    Subclasses are `@dataclass(repr=False)`, so this repr is theirs."""

    metric: ClassVar[str] = ""               # the registry name (set by `metrics.register`)
    LABELS: ClassVar[dict[str, str]] = {}    # column -> label, for terminal tables (compare's rows included)

    def __repr__(self) -> str:
        model, settings = getattr(self, "model", None), getattr(self, "settings", None)
        head = [type(self).__name__]
        if isinstance(model, dict) and model.get("spec"):
            head.append(str(model["spec"]))
        if isinstance(settings, dict) and settings.get("input"):
            head.append(f"{settings['input']}, {settings.get('n_seqs')} x {settings.get('seq_len')} tokens")
        numbers = self.columns() if hasattr(self, "columns") else {}
        parts = [f"{k}={_short(v)}" for k, v in numbers.items()]
        parts += [f"{f.name}={_short(getattr(self, f.name))}" for f in fields(self)
                  if f.name not in ("model", "settings") and f.name not in numbers]
        return f"<{', '.join(head)}: {', '.join(parts)}>"


@dataclass
class HeadLayer:
    """One attention layer of a per-head result."""

    layer: int
    heads: dict[str, list[float]]                       # statistic -> one value per head
    extra: dict = field(default_factory=dict)           # per-layer values that are not per head
    head_extra: dict[str, list] = field(default_factory=dict)  # per-head values that are not statistics

    def mean_of(self, key: str) -> float:
        return mean(self.heads[key])

    @property
    def n_heads(self) -> int:
        return len(next(iter(self.heads.values())))


@dataclass(repr=False)
class HeadResult(Result):
    """Per (attention layer, head) statistics of one model on one input set."""

    model: dict
    settings: dict
    layers: list[HeadLayer] = field(default_factory=list)

    COLUMNS: ClassVar[tuple[str, ...]] = ()  # what this metric adds to a `compare` row
    RATIOS: ClassVar[tuple[str, ...]] = ()   # ... and which of those get a ratio to the baseline

    def keys(self) -> list[str]:
        return list(self.layers[0].heads)

    def overall(self, key: str) -> float | None:
        """Mean over layers of the mean over heads (the paper's model-level number); None if not measured."""
        if key not in self.layers[0].heads:
            return None
        return mean([ly.mean_of(key) for ly in self.layers])

    def summary(self) -> dict:
        return {k: self.overall(k) for k in self.keys()}

    def headline(self) -> dict:
        """The JSON's top-level numbers."""
        return {"summary": self.summary()}

    def columns(self) -> dict:
        return {k: self.overall(k) for k in self.COLUMNS}

    def label(self, key: str) -> str:
        return self.LABELS.get(key, key.replace("_", " "))

    def tables(self) -> dict:
        """Per head and per layer, named after the metric."""
        return {f"{self.metric}_heads": self.to_frame(), f"{self.metric}_layers": self.layer_frame()}

    def display(self) -> dict:
        """The terminal view every per-head metric gets unless it says more: per-layer means of each statistic and
        the model row."""
        s = self.settings
        return {"title": f"{self.metric} of {self.model['spec']} ({s.get('input')}, {s.get('n_seqs')} x "
                         f"{s.get('seq_len')} tokens)",
                "frame": self.layer_frame(), "columns": {"layer": "layer", **{k: self.label(k) for k in self.keys()}},
                "total": {"layer": "model", **self.summary()}, "notes": []}

    def to_frame(self):
        """One row per (layer, head)."""
        import pandas as pd

        return pd.DataFrame([{"layer": ly.layer, "head": h, **{k: v[h] for k, v in ly.heads.items()}}
                             for ly in self.layers for h in range(ly.n_heads)])

    def layer_frame(self):
        """One row per layer: means over heads."""
        import pandas as pd

        return pd.DataFrame([{"layer": ly.layer, **{k: ly.mean_of(k) for k in ly.heads}} for ly in self.layers])

    @classmethod
    def from_dict(cls, d: dict):
        """The result back from its `to_dict()` (a command's JSON): per-head numbers become statistics again, other
        per-head values `head_extra`, per-layer values that are not a statistic's mean `extra`."""
        layers = []
        for row in d["layers"]:
            heads = row["heads"]
            names = [k for k in heads[0] if k != "head"] if heads else []
            stats = [k for k in names if all(h.get(k) is None or isinstance(h.get(k), (int, float)) for h in heads)]
            layers.append(HeadLayer(row["layer"], {k: [h[k] for h in heads] for k in stats},
                                    {k: v for k, v in row.items() if k not in ("layer", "heads", *stats)},
                                    {k: [h[k] for h in heads] for k in names if k not in stats}))
        own = {f.name: d[f.name] for f in fields(cls) if f.name not in ("model", "settings", "layers") and f.name in d}
        return cls(model=d["model"], settings=d["settings"], layers=layers, **own)

    def to_dict(self) -> dict:
        return {**self.headline(),
                "layers": [{"layer": ly.layer, **{k: ly.mean_of(k) for k in ly.heads}, **ly.extra,
                            "heads": [{"head": h, **{k: v[h] for k, v in ly.heads.items()},
                                       **{k: v[h] for k, v in ly.head_extra.items()}} for h in range(ly.n_heads)]}
                           for ly in self.layers],
                "model": self.model, "settings": self.settings}
