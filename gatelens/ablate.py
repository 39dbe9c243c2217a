"""Causal tests of the sink, one forward per batch each: what happens to the loss when it is removed.

  sink        queries at positions >= 1 cannot attend to key 0 (the softmax renormalises over the rest);
              done in gatelens' attention function by masking, before SDPA (`attention.editing`)
  sink-value  the attention stays, key 0's value is zeroed: separates "the sink absorbs attention" (no loss
              change) from "the sink carries information"; for every query, so query 0 (which sees key 0 only)
              writes nothing in the ablated layers either
  gate-mean   every gate score replaced by its mean over the sequence's tokens (per head and dimension): the
              query dependence removed, the paper's "linearised" gate (gated models only)
  gate-one    every gate score replaced by 1: the gate removed (gated models only)
Gate edits are forward hooks on the gate module's output (its logits), as every gate probe reads them; no
forward is patched. Each ablation runs in one layer at a time or in all attention layers at once, with the
F-Attn, M-Act and loss probes riding the same forward; `ablate` returns the loss change (nats per predicted
token) against the unablated model measured on the same batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import attention, data
from .errors import GatelensError
from .kernels import explicit_mask
from .measure import Inputs, as_loaded, finish, pad_id, prepare_inputs, run, settings_of
from .metrics import Massive, Perplexity, Sink
from .metrics.base import Probe, gate_logits, with_gate_logits
from .models.load import Loaded

WHAT = ("sink", "sink-value", "gate-mean", "gate-one")
GATE_ONE_LOGIT = 100.0   # sigmoid(100) is 1.0 in float32, bfloat16 and float16


def without_sink(mask: torch.Tensor | None, causal: bool, n_q: int, n_k: int, device) -> torch.Tensor:
    """The attention mask with key 0 hidden from every query at position >= 1 (bool, True = attend, or additive)."""
    pos = torch.arange(n_q, device=device)[:, None] + (n_k - n_q)
    hide = (pos >= 1) & (torch.arange(n_k, device=device)[None, :] == 0)              # [q, k]
    mask = explicit_mask(mask, causal, n_q, n_k, device)
    return mask & ~hide if mask.dtype == torch.bool else mask.masked_fill(hide, float("-inf"))


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-7, 1 - 1e-7)
    return torch.log(p) - torch.log1p(-p)


class _Edit:
    """A handle `run` removes after the forward loop, like a hook's."""

    def __init__(self, fn):
        self.fn = fn
        attention._edits.append(fn)

    def remove(self):
        attention._edits.remove(self.fn)


class Ablation(Probe):
    """Not a measurement: an edit that rides the forward (attach installs it, `run` removes it)."""

    name = "ablation"
    standard = False

    def __init__(self, what: str, layers: list[int]):
        super().__init__()
        self.what, self.layers = what, set(layers)

    def attach(self, loaded):
        super().attach(loaded)
        if self.what in ("sink", "sink-value"):
            return [_Edit(self._edit)]
        path = loaded.family.gate_module
        return [loaded.attention(layer).get_submodule(path).register_forward_hook(self._gate_hook(loaded))
                for layer in sorted(self.layers)]

    def _edit(self, layer, query, key, value, mask, causal):
        if layer not in self.layers:
            return value, mask, causal
        if self.what == "sink-value":
            value = value.clone()
            value[:, :, 0] = 0
            return value, mask, causal
        return value, without_sink(mask, causal, query.shape[2], key.shape[2], query.device), False

    def _gate_hook(self, loaded):
        def hook(module, args, output):
            logits = gate_logits(loaded, output, module)                                  # [b, pos, head, g]
            if self.what == "gate-one":
                new = torch.full_like(logits, GATE_ONE_LOGIT)
            else:
                s = torch.sigmoid(logits.float())
                valid = self.batch.valid().to(s.device)[..., None, None].float()          # [b, pos, 1, 1]
                mean = (s * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
                new = _logit(mean).expand_as(s).to(logits.dtype)
            return with_gate_logits(loaded, output, new, module)  # back in the module's own layout
        return hook

    def finish(self, loaded, settings):
        return None


@dataclass
class Run:
    """One configuration: an ablation in some layers (or none) and what the model did under it."""

    what: str                 # "none" or one of WHAT
    layers: str               # "all", a layer number, or "" for the unablated model
    loss: float               # nats per predicted token
    f_attn: float
    m_act: float
    f_attn_layers: list[float]
    m_act_layers: list[float]
    loss_change: float = 0.0


@dataclass
class AblationResult:
    model: dict
    settings: dict
    runs: list[Run] = field(default_factory=list)

    @property
    def clean(self) -> Run:
        return self.runs[0]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{"what": r.what, "layers": r.layers, "loss": r.loss, "loss_change": r.loss_change,
                              "f_attn": r.f_attn, "m_act": r.m_act} for r in self.runs])

    def layer_frame(self):
        """F-Attn and M-Act of every layer under every configuration (long form)."""
        import pandas as pd

        layers = self.model["attention_layers"]
        rows = []
        for r in self.runs:
            for i, layer in enumerate(layers):
                rows.append({"what": r.what, "layers": r.layers, "layer": layer, "f_attn": r.f_attn_layers[i]})
        return pd.DataFrame(rows)

    def tables(self) -> dict:
        return {"ablate": self.to_frame(), "ablate_layers": self.layer_frame()}

    def to_dict(self) -> dict:
        return {"what": self.settings["what"], "clean_loss": self.clean.loss,
                "runs": [vars(r) for r in self.runs], "model": self.model, "settings": self.settings}

    def display(self) -> dict:
        s = self.settings
        return {"title": f"Ablation {s['what']} in {self.model['spec']} ({s['input']}, {s['n_seqs']} x {s['seq_len']})",
                "frame": self.to_frame(),
                "columns": {"what": "ablation", "layers": "layers", "loss": "loss (nats)",
                            "loss_change": "change", "f_attn": "F-Attn", "m_act": "M-Act"},
                "notes": ["loss change: nats per predicted token against the unablated model on the same batches"]}


def check_ablation(loaded: Loaded, what: str, layers: list[int] | None) -> list[int]:
    if what not in WHAT:
        raise GatelensError(f"--what {what!r}: use one of {', '.join(WHAT)}")
    if what.startswith("gate") and not loaded.info.gated:
        raise GatelensError(f"{loaded.info.spec} has no gate: --what {what} needs a gated model; "
                            "use --what sink or sink-value")
    valid = loaded.info.attention_layers
    bad = [x for x in (layers or []) if x not in valid]
    if bad:
        raise GatelensError(f"--layers {','.join(map(str, bad))}: {loaded.info.spec}'s attention layers are "
                            f"{','.join(map(str, valid))}")
    return valid


MIN_TOKENS_SINK = 3  # position 1 must predict a token: the loss counts positions 0..n-2, the ablation changes >= 1


def check_measurable(what: str, inputs: Inputs) -> None:
    """Refuse a sink ablation whose loss cannot change: with n tokens the loss counts the predictions made at
    positions 0..n-2, and masking key 0 changes only queries at positions >= 1 (position 0 sees key 0 alone)."""
    n = inputs.longest
    if what == "sink" and n < MIN_TOKENS_SINK:
        given = f"--seq-len {n}" if n >= inputs.seq_len else f"a text of {n} tokens"
        raise GatelensError(f"--what sink with {given} measures nothing: the loss's only prediction is made at "
                            f"position 0, which sees key 0 alone; use at least --seq-len {MIN_TOKENS_SINK}")


def parse_layers(value: str | None) -> tuple[list[int] | None, bool]:
    """--layers: None/'each' (each layer alone, then all), 'all' (all at once only) or a comma list (each alone)."""
    if value is None or value == "each":
        return None, True
    if value == "all":
        return [], True
    try:
        return [int(x) for x in value.split(",") if x.strip()], False
    except ValueError:
        raise GatelensError(f"--layers {value!r}: give a comma list of layer numbers, 'each' or 'all'") from None


def _one(loaded: Loaded, inputs: Inputs, batch_size: int, edit: Ablation | None, on_batch) -> tuple:
    probes = [Sink(), Massive(top_k=1), Perplexity()]
    batches = data.batches(inputs.seqs, batch_size, pad_id(loaded))
    run(loaded, batches, probes + ([edit] if edit else []), on_batch)
    during = "" if edit is None else f" with --what {edit.what} in layer(s) {','.join(map(str, sorted(edit.layers)))}"
    sink, massive, ppl = finish(loaded, probes, settings_of(inputs, batch_size), during)
    return sink, massive, ppl


def ablate(model: Loaded | str, what: str, layers: list[int] | None = None, *, all_layers: bool = True,
           inputs: Inputs | None = None, batch_size: int = 4, on_run: Callable[[str], Callable] | None = None,
           **input_kw) -> AblationResult:
    """The unablated model, then `what` in each of `layers` alone (default: every attention layer) and, with
    all_layers, in all attention layers at once; one forward per batch each."""
    loaded = as_loaded(model)
    valid = check_ablation(loaded, what, layers)
    inputs = inputs or prepare_inputs(loaded, **input_kw)
    check_measurable(what, inputs)
    each = valid if layers is None else layers
    whole = all_layers and (len(valid) > 1 or not each)   # one attention layer: "all" is that layer again
    configs = [("none", "", None)] + [(what, str(x), [x]) for x in each] + ([(what, "all", valid)] if whole else [])
    runs = []
    for w, label, ls in configs:
        cb = on_run(f"{w} {label}".strip()) if on_run else None
        sink, massive, ppl = _one(loaded, inputs, batch_size, Ablation(w, ls) if ls else None, cb)
        runs.append(Run(w, label, ppl.loss, sink.f_attn, massive.m_act, [ly.mean_of("f_attn") for ly in sink.layers],
                        [ly.max_abs for ly in massive.layers]))
    for r in runs:
        r.loss_change = r.loss - runs[0].loss
    settings = settings_of(inputs, batch_size, what=what, layers=each, all_layers=all_layers)
    return AblationResult(loaded.info.to_dict(), settings, runs)
