"""Causal tests of the sink, one forward per batch each: what happens to the loss when it is removed.

  sink        queries at positions >= 1 cannot attend to key 0 (the softmax renormalises over the rest);
              done in gatelens' attention function by masking, before SDPA (`attention.add_edit`)
  sink-value  the attention stays, key 0's value is zeroed: separates "the sink absorbs attention" (no loss
              change) from "the sink carries information"; for every query, so query 0 (which sees key 0 only)
              writes nothing in the ablated layers either
  gate-mean   every gate score replaced by its mean over the sequence's tokens (per head and dimension): the
              query dependence removed, the paper's "linearised" gate (gated models only)
  gate-one    every gate score replaced by 1: the gate removed (gated models only)
  head        the output of the given heads (--heads) zeroed before W_O, in each given layer: does a (dormant)
              head matter? each (layer, head) alone, then all of them at once
  massive-zero / massive-mean
              Sun et al. 2024's experiment: the massive activations of a decoder layer's output, found in the
              unablated pass by `massive`'s rule (|h| > abs_threshold and > ratio x the median |h| of that sequence's
              hidden state at that layer, 100 and 1000 by default), are set to zero, or to the mean of that channel's
              massive values over the whole input set; at the same (sequence, position, channel) sites, in each
              decoder layer alone or in all at once. A model without massive activations gets a note, not a finding.
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
from .metrics.base import Probe, Result, hidden
from .metrics.massive import ABS_THRESHOLD, RATIO, histogram_medians, massive_mask, sequence_histograms
from .models.gate_logits import gate_logits, with_gate_logits
from .models.load import Loaded
from .options import LAYERS

WHAT = ("sink", "sink-value", "gate-mean", "gate-one", "head", "massive-zero", "massive-mean")
MASSIVE = ("massive-zero", "massive-mean")
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


class MassiveSites(Probe):
    """The massive activations of each decoder layer's output in the unablated pass: per (layer, sequence) their
    (position, channel) sites, and per (layer, channel) the sum and count of their signed values."""

    name = "massive_sites"
    standard = False

    def __init__(self, abs_threshold: float = ABS_THRESHOLD, ratio: float = RATIO):
        super().__init__()
        self.abs_threshold, self.ratio = abs_threshold, ratio

    def attach(self, loaded):
        super().attach(loaded)
        return [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(loaded.layers())]

    def _hook(self, layer: int):
        def hook(module, args, output):
            h = hidden(output)
            a = h.detach().float().abs()
            valid = self.batch.valid().to(a.device)
            flags = massive_mask(a, valid, histogram_medians(sequence_histograms(a, valid)).to(a.dtype),
                                 self.abs_threshold, self.ratio)
            bi, pi, ci = flags.nonzero(as_tuple=True)
            for b, p, c in zip(bi.tolist(), pi.tolist(), ci.tolist()):
                self.add(("sites", layer, self.batch.seq_id(b)), at=[(p, c)])
            values = h.detach()[bi, pi, ci].double().cpu()
            self.add(("channels", layer), value_sum=torch.zeros(h.shape[-1], dtype=torch.float64).index_add_(
                0, ci.cpu(), values), count=torch.bincount(ci.cpu(), minlength=h.shape[-1]).double())
        return hook

    def finish(self, loaded, settings):
        """(sites {(layer, sequence): [(position, channel)]}, mean value per channel {layer: [d]}, count per channel)."""
        sites = {(layer, seq): a["at"] for (kind, layer, *seq), a in self.acc.items() if kind == "sites"
                 for seq in seq}
        channels = {key[1]: a for key, a in self.acc.items() if key[0] == "channels"}
        return (sites, {layer: a["value_sum"] / a["count"].clamp(min=1) for layer, a in channels.items()},
                {layer: a["count"] for layer, a in channels.items()})


class Ablation(Probe):
    """Not a measurement: an edit that rides the forward (attach installs it, `run` removes it)."""

    name = "ablation"
    standard = False

    def __init__(self, what: str, layers: list[int], sites: tuple | None = None, heads: list[tuple] = ()):
        super().__init__()
        self.what, self.layers, self.sites, self.heads = what, set(layers), sites, list(heads)

    def attach(self, loaded):
        super().attach(loaded)
        if self.what in ("sink", "sink-value"):
            return [attention.add_edit(self._edit)]
        if self.what in MASSIVE:
            return [loaded.layers()[layer].register_forward_hook(self._massive_hook(layer))
                    for layer in sorted(self.layers)]
        if self.what == "head":
            d = loaded.info.d_head
            return [loaded.attention(layer).get_submodule(loaded.family.o_proj).register_forward_pre_hook(
                self._zero_heads([h for ly, h in self.heads if ly == layer], d)) for layer in sorted(self.layers)]
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

    @staticmethod
    def _zero_heads(heads: list[int], d: int):
        def hook(module, args):
            x = args[0].clone()                                   # [b, pos, head * d_head]: W_O's input
            for h in heads:
                x[..., h * d:(h + 1) * d] = 0
            return (x, *args[1:])
        return hook

    def _massive_hook(self, layer: int):
        sites, means, _ = self.sites

        def hook(module, args, output):
            h = hidden(output)                                   # a view: edited in place, the layer's output
            for b in range(h.shape[0]):
                at = sites.get((layer, self.batch.seq_id(b)), [])
                if at:
                    p, c = torch.tensor(at, device=h.device).T
                    h[b, p, c] = 0 if self.what == "massive-zero" else means[layer].to(h.device, h.dtype)[c]
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


@dataclass(repr=False)
class AblationResult(Result):
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

    @classmethod
    def from_dict(cls, d: dict) -> AblationResult:
        return cls(d["model"], d["settings"], [Run(**r) for r in d["runs"]])

    @property
    def note(self) -> str | None:
        """Why the result is no finding, if it is none: a massive ablation on a model without massive activations."""
        s = self.settings
        if s["what"] in MASSIVE and not s["massive_channels"]:
            rule = s["rule"]
            return (f"no massive activations found (|h| > {rule['abs_threshold']:g} and > {rule['ratio']:g} x the "
                    f"median |h|): {s['what']} changed nothing")
        return None

    def to_dict(self) -> dict:
        return {"what": self.settings["what"], "clean_loss": self.clean.loss,
                "runs": [vars(r) for r in self.runs], **({"note": self.note} if self.note else {}),
                "model": self.model, "settings": self.settings}

    def display(self) -> dict:
        s = self.settings
        notes = ["loss change: nats per predicted token against the unablated model on the same batches"]
        if s["what"] in MASSIVE:
            found = ", ".join(f"layer {k}: {v}" for k, v in s["massive_sites"].items() if v)
            notes.append(self.note or f"massive activations set to {'zero' if s['what'] == 'massive-zero' else 'their channel mean'}"
                         f" (sites per layer: {found}; channels: {s['massive_channels']})")
        return {"title": f"Ablation {s['what']} in {self.model['spec']} ({s['input']}, {s['n_seqs']} x {s['seq_len']})",
                "frame": self.to_frame(),
                "columns": {"what": "ablation", "layers": "layers", "loss": "loss (nats)",
                            "loss_change": "change", "f_attn": "F-Attn", "m_act": "M-Act"},
                "notes": notes}


def check_ablation(loaded: Loaded, what: str, layers: list[int] | None, heads: list[int] | None = None) -> list[int]:
    if what not in WHAT:
        raise GatelensError(f"--what {what!r}: use one of {', '.join(WHAT)}")
    if (what == "head") != bool(heads):
        raise GatelensError("--heads goes with --what head (and --what head needs --heads H[,H...] and --layers L[,L...])"
                            if heads else "--what head needs --heads H[,H...] (and --layers L[,L...]): which heads to zero")
    if what == "head":
        if not layers:
            raise GatelensError("--what head needs --layers L[,L...]: the layers whose --heads are zeroed")
        bad = [h for h in heads if not 0 <= h < loaded.info.n_heads]
        if bad:
            raise GatelensError(f"--heads {','.join(map(str, bad))}: {loaded.info.spec} has heads "
                                f"0-{loaded.info.n_heads - 1}")
    if what.startswith("gate") and not loaded.info.gated:
        raise GatelensError(f"{loaded.info.spec} has no gate: --what {what} needs a gated model; "
                            "use --what sink or sink-value")
    massive = what in MASSIVE
    valid = list(range(loaded.info.n_layers)) if massive else loaded.info.attention_layers
    bad = [x for x in (layers or []) if x not in valid]
    if bad:
        kind = "decoder layers" if massive else "attention layers"
        raise GatelensError(f"--layers {','.join(map(str, bad))}: {loaded.info.spec}'s {kind} are "
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


def parse_layers(value: str | tuple | None) -> tuple[list[int] | None, bool]:
    """--layers: None/'each' (each layer alone, then all), 'all' (all at once only) or a comma list (each alone);
    text is read by the one comma-list parser (gatelens.options.LAYERS), which the CLI has already applied."""
    if isinstance(value, str):
        value = LAYERS.parse(value)
    if value is None or value == "each":
        return None, True
    if value == "all":
        return [], True
    return list(value), False


def _one(loaded: Loaded, inputs: Inputs, batch_size: int, edit: Ablation | None, on_batch,
         extra: list[Probe] = ()) -> tuple:
    probes = [Sink(), Massive(top_k=1), Perplexity(), *extra]
    batches = data.batches(inputs.seqs, batch_size, pad_id(loaded))
    run(loaded, batches, ([edit] if edit else []) + probes, on_batch)  # the edit's hooks first: probes see its output
    during = "" if edit is None else f" with --what {edit.what} in layer(s) {','.join(map(str, sorted(edit.layers)))}"
    return tuple(finish(loaded, probes, settings_of(inputs, batch_size), during))


def ablate(model: Loaded | str, what: str, layers: list[int] | None = None, *, all_layers: bool = True,
           inputs: Inputs | None = None, batch_size: int = 4, on_run: Callable[[str], Callable] | None = None,
           heads: list[int] | None = None, abs_threshold: float = ABS_THRESHOLD, ratio: float = RATIO,
           **input_kw) -> AblationResult:
    """The unablated model, then `what` in each of `layers` alone (default: every attention layer, every decoder
    layer for the massive ablations) and, with all_layers, in all of them at once; one forward per batch each.
    abs_threshold / ratio: the massive-activation rule of the massive ablations (as `massive`). `heads`: the heads
    `what="head"` zeroes in each of `layers`, each (layer, head) alone, then (all_layers) all of them at once."""
    loaded = as_loaded(model)
    valid = check_ablation(loaded, what, layers, heads)
    inputs = inputs or prepare_inputs(loaded, **input_kw)
    check_measurable(what, inputs)
    each = valid if layers is None else layers
    whole = all_layers and (len(valid) > 1 or not each)   # one attention layer: "all" is that layer again
    configs = [("none", "", None)] + [(what, str(x), [x]) for x in each] + ([(what, "all", valid)] if whole else [])
    if what == "head":
        pairs = [(ly, h) for ly in each for h in heads]
        configs = [("none", "", None)] + [(what, f"{ly}.h{h}", [(ly, h)]) for ly, h in pairs] + \
            ([(what, "all", pairs)] if len(pairs) > 1 else [])
    runs, sites, extra = [], None, {}
    for w, label, ls in configs:
        cb = on_run(f"{w} {label}".strip()) if on_run else None
        finder = [MassiveSites(abs_threshold, ratio)] if what in MASSIVE and not ls else []
        edit = None if not ls else Ablation(w, [ly for ly, _ in ls], heads=ls) if w == "head" else Ablation(w, ls, sites)
        sink, massive, ppl, *found = _one(loaded, inputs, batch_size, edit, cb, finder)
        if found:
            sites = found[0]
        runs.append(Run(w, label, ppl.loss, sink.f_attn, massive.m_act, [ly.mean_of("f_attn") for ly in sink.layers],
                        [ly.max_abs for ly in massive.layers]))
    for r in runs:
        r.loss_change = r.loss - runs[0].loss
    if what in MASSIVE:
        extra = {"rule": {"abs_threshold": abs_threshold, "ratio": ratio},
                 "massive_sites": {str(layer): int(c.sum()) for layer, c in sorted(sites[2].items())},
                 "massive_channels": {str(layer): [int(x) for x in c.nonzero().flatten().tolist()][:20]
                                      for layer, c in sorted(sites[2].items()) if c.sum() > 0}}
    if what == "head":
        extra = {"heads": heads}
    settings = settings_of(inputs, batch_size, what=what, layers=each, all_layers=all_layers, **extra)
    return AblationResult(loaded.info.to_dict(), settings, runs)
