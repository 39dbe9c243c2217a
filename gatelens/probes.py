"""Probes: the hook side of each metric, and `run`, the one forward loop they all ride.

A probe attaches forward hooks (or listens to attention events), updates a fixed-size streaming
accumulator per batch, and finalizes into a result dataclass. `run` makes one no-grad forward per
batch for any number of probes, so all measurements of a question cost one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch

from . import attention, distributed
from .data import Batch
from .errors import GatelensError
from .metrics import first_token, gates, massive, rank
from .models.load import Loaded
from .models.gated import split_interleaved
from .results import (Activation, GatesResult, LayerGates, LayerMassive, LayerRank, LayerSink, MassiveResult,
                      PerplexityResult, QueryTrace, RankResult, SinkResult)


class Probe:
    """Base class: override `attach` (hooks) and/or `on_attention`, and `finish`."""

    listens_to_attention = False

    def attach(self, loaded: Loaded) -> list:
        return []

    def on_attention(self, ev: attention.AttentionEvent, batch: Batch) -> None:  # pragma: no cover - interface
        pass

    def finish(self, loaded: Loaded, settings: dict):
        raise NotImplementedError

    # Several processes (torchrun): each rank accumulates its share of the sequences, then every rank
    # absorbs all ranks' states in rank order, so all finish with the same totals.
    def state(self) -> dict:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def absorb(self, state: dict) -> None:
        raise NotImplementedError


def _add_into(total: dict, new: dict) -> None:
    for k, v in new.items():
        total[k] = total[k] + v if k in total else v


def check_finite(name: str, x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise GatelensError(f"non-finite values (NaN/inf) in {name}; the weights may be corrupted or the dtype "
                            "too narrow: retry with --dtype float32")


@dataclass
class _SinkAcc:
    weight_sum: torch.Tensor   # [head] float64
    count: float
    sink_seqs: torch.Tensor    # [head] sequences whose mean weight on key 0 > eps
    n_seqs: int


class Sink(Probe):
    """F-Attn and sink rate per attention layer and head, from LSE + one dot product per query."""

    listens_to_attention = True

    def __init__(self, eps: float = first_token.DEFAULT_EPS):
        self.eps = eps
        self.acc: dict[int, _SinkAcc] = {}

    def attach(self, loaded):
        self.acc = {}
        return []

    def on_attention(self, ev, batch):
        w = first_token.first_token_weights(ev.query, ev.first_key(), ev.lse, ev.scale, ev.mask)  # [b, h, q]
        check_finite(f"attention of layer {ev.layer}", w)
        valid = first_token.query_mask(batch.lengths.to(w.device), w.shape[-1])
        s, c = first_token.sums(w.double(), valid)  # [b, h], [b]
        per_seq = s / c.clamp(min=1)[:, None]
        counted = c > 0
        sink = ((per_seq > self.eps) & counted[:, None]).sum(0)
        acc = self.acc.get(ev.layer)
        if acc is None:
            self.acc[ev.layer] = _SinkAcc(s.sum(0).cpu(), float(c.sum()), sink.cpu(), int(counted.sum()))
        else:
            acc.weight_sum += s.sum(0).cpu()
            acc.count += float(c.sum())
            acc.sink_seqs += sink.cpu()
            acc.n_seqs += int(counted.sum())

    def state(self):
        return {"acc": self.acc}

    def clear(self):
        self.acc = {}

    def absorb(self, state):
        for layer, a in state["acc"].items():
            mine = self.acc.get(layer)
            if mine is None:
                self.acc[layer] = _SinkAcc(a.weight_sum.clone(), a.count, a.sink_seqs.clone(), a.n_seqs)
            else:
                mine.weight_sum += a.weight_sum
                mine.count += a.count
                mine.sink_seqs += a.sink_seqs
                mine.n_seqs += a.n_seqs

    def finish(self, loaded, settings):
        layers = []
        for layer in sorted(self.acc):
            a = self.acc[layer]
            layers.append(LayerSink(layer=layer, f_attn_heads=(a.weight_sum / max(a.count, 1)).tolist(),
                                    sink_rate_heads=(a.sink_seqs.double() / max(a.n_seqs, 1)).tolist()))
        return SinkResult(model=loaded.info.to_dict(), settings={**settings, "eps": self.eps}, layers=layers)


def _hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


class _MassiveAcc:
    def __init__(self, d_model: int, k: int):
        self.k = k
        self.top: list[tuple[float, int, int, int, int]] = []   # (|h|, seq, pos, channel, token id)
        self.hist = torch.zeros(massive.N_BINS, dtype=torch.long)
        self.channels = torch.zeros(d_model, dtype=torch.long)
        self.tokens: dict[int, int] = {}
        self.n_massive = self.at_first = 0
        self.first_norm = self.other_norm = 0.0
        self.n_first = self.n_other = 0


class Massive(Probe):
    """Per layer: max / median / top-k |hidden| with positions, channels and tokens; massive-value counts."""

    def __init__(self, top_k: int = 5, abs_threshold: float = massive.ABS_THRESHOLD, ratio: float = massive.RATIO):
        self.top_k, self.abs_threshold, self.ratio = top_k, abs_threshold, ratio
        self.acc: dict[int, _MassiveAcc] = {}

    def attach(self, loaded):
        self.acc = {}
        return [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(loaded.layers())]

    def _hook(self, layer: int):
        def hook(module, args, output):
            self.update(layer, _hidden(output), self.batch)
        return hook

    def update(self, layer: int, h: torch.Tensor, batch: Batch) -> None:
        acc = self.acc.setdefault(layer, _MassiveAcc(h.shape[-1], self.top_k))
        valid = batch.valid().to(h.device)
        ids = batch.input_ids
        a = h.detach().float().abs()
        token_max = a.amax(-1)                                              # [batch, pos]
        check_finite(f"the hidden state after layer {layer}", token_max)  # inf/NaN if any value of a token is
        vals, idx = massive.topk_values(a, valid, self.top_k, token_max)
        for v, flat in zip(vals.tolist(), idx.tolist()):
            b, pos, ch = massive.unravel(flat, h.shape)
            acc.top.append((v, batch.seq_id(b), pos, ch, int(ids[b, pos])))
        acc.top = sorted(acc.top, key=lambda t: (-t[0], t[1], t[2], t[3]))[: self.top_k]
        hists = massive.sequence_histograms(a, valid)                       # [batch, bins]
        acc.hist += hists.sum(0).cpu()
        limit = massive.limits(massive.histogram_medians(hists).to(a.dtype), self.abs_threshold, self.ratio)
        bi, pi, flags = massive.massive_tokens(a, token_max, valid, limit)  # only tokens holding one
        if len(bi):
            per_token = flags.sum(-1).cpu()
            acc.n_massive += int(per_token.sum())
            acc.at_first += int(per_token[(pi == 0).cpu()].sum())
            acc.channels += flags.sum(0).cpu()
            for b, pos, c in zip(bi.tolist(), pi.tolist(), per_token.tolist()):
                tid = int(ids[b, pos])
                acc.tokens[tid] = acc.tokens.get(tid, 0) + c
        first, other = massive.first_token_norm_ratio(h, valid)
        acc.first_norm += first
        acc.other_norm += other
        acc.n_first += h.shape[0]
        acc.n_other += int(valid[:, 1:].sum())

    def state(self):
        return {"acc": self.acc}

    def clear(self):
        self.acc = {}

    def absorb(self, state):
        for layer, a in state["acc"].items():
            mine = self.acc.setdefault(layer, _MassiveAcc(a.channels.shape[0], self.top_k))
            mine.top = sorted(mine.top + a.top, key=lambda t: (-t[0], t[1], t[2], t[3]))[: self.top_k]
            mine.hist = mine.hist + a.hist
            mine.channels = mine.channels + a.channels
            for tid, c in a.tokens.items():
                mine.tokens[tid] = mine.tokens.get(tid, 0) + c
            for k in ("n_massive", "at_first", "first_norm", "other_norm", "n_first", "n_other"):
                setattr(mine, k, getattr(mine, k) + getattr(a, k))

    def finish(self, loaded, settings):
        tok = loaded.tokenizer
        text = lambda tid: tok.decode([tid])  # noqa: E731
        layers = []
        for layer in sorted(self.acc):
            a = self.acc[layer]
            ch = [(int(c), int(a.channels[c])) for c in a.channels.argsort(descending=True, stable=True)[:5]
                  if a.channels[c] > 0]
            toks = sorted(a.tokens.items(), key=lambda t: (-t[1], t[0]))[:5]
            layers.append(LayerMassive(
                layer=layer, max_abs=a.top[0][0], median_abs=massive.histogram_median(a.hist),
                top=[Activation(v, s, p, c, text(t)) for v, s, p, c, t in a.top], n_massive=a.n_massive,
                top_channels=ch, top_tokens=[(text(t), n) for t, n in toks], massive_at_first=a.at_first,
                first_norm=a.first_norm / max(a.n_first, 1), other_norm=a.other_norm / max(a.n_other, 1)))
        return MassiveResult(model=loaded.info.to_dict(),
                             settings={**settings, "top_k": self.top_k, "abs_threshold": self.abs_threshold,
                                       "ratio": self.ratio}, layers=layers)


def gate_logits(loaded: Loaded, output: torch.Tensor) -> torch.Tensor:
    """The gate module's forward output -> gate logits [batch, pos, head, g] for the family's layout."""
    if loaded.family.gate_layout == "interleaved":  # Qwen3-Next / Qwen3.5: q_proj output [.., H * 2 * d_head]
        return split_interleaved(output, loaded.info.n_heads, loaded.info.d_head)[1]
    return output  # gatelens' gated modules hand the logits to hook_gate already split per head


def hook_gates(loaded: Loaded, make_hook: Callable[[int], Callable]) -> list:
    """A forward hook on every attention layer's gate module (its output carries the gate logits)."""
    return [loaded.attention(layer).get_submodule(loaded.family.gate_module).register_forward_hook(make_hook(layer))
            for layer in loaded.info.attention_layers]


class Gates(Probe):
    """Gate scores sigma(logits) per gated layer and head: sums for sparsity, query dependence, W_O input."""

    listens_to_attention = True

    def __init__(self):
        self.sums: dict[int, dict] = {}
        self.out_sums: dict[int, dict] = {}
        self.pending: dict[int, torch.Tensor] = {}

    def attach(self, loaded):
        if not loaded.info.gated:
            raise GatelensError(f"{loaded.info.spec} has no attention gates; `gates` applies to gated models such "
                                "as mech-gated, a paper checkpoint (1B_gate_elementwise) or Qwen3-Next / Qwen3.5")
        self.sums, self.out_sums, self.pending = {}, {}, {}
        self.g1 = loaded.info.gate_position == "G1"
        return hook_gates(loaded, lambda layer: self._hook(loaded, layer))

    def _hook(self, loaded, layer):
        def hook(module, args, output):
            scores = torch.sigmoid(gate_logits(loaded, output).float())
            valid = self.batch.valid().to(scores.device)
            sums = gates.batch_sums(scores, valid)
            check_finite(f"the gate scores of layer {layer}", sums["sum"])  # a NaN score makes its head's sum NaN
            self.sums[layer] = gates.add(self.sums.get(layer), sums)
            if self.g1:
                self.pending[layer] = scores
        return hook

    def on_attention(self, ev, batch):
        scores = self.pending.pop(ev.layer, None)
        if scores is None:
            return
        valid = batch.valid().to(ev.output.device)  # ev.output: the SDPA output the gate multiplies, [b, h, pos, d]
        self.out_sums[ev.layer] = gates.add(self.out_sums.get(ev.layer), gates.output_sums(ev.output, scores, valid))

    def state(self):
        return {"sums": self.sums, "out_sums": self.out_sums}

    def clear(self):
        self.sums, self.out_sums = {}, {}

    def absorb(self, state):
        for name in ("sums", "out_sums"):
            mine = getattr(self, name)
            for layer, t in state[name].items():
                mine[layer] = gates.add(mine.get(layer), t)

    def finish(self, loaded, settings):
        layers = []
        for layer in sorted(self.sums):
            t = self.sums[layer]
            stats = gates.summarize(t)
            if layer in self.out_sums:
                stats.update(gates.output_summary(self.out_sums[layer], stats["mean"]))
            layers.append(LayerGates(layer=layer, heads={k: v.tolist() for k, v in stats.items()},
                                     hist=t["hist"].sum(0).tolist(), n_scores=int(t["n"].sum())))
        return GatesResult(model=loaded.info.to_dict(), settings=settings, layers=layers)


class Queries(Probe):
    """Per-query trace: each query's weight on key 0 and its mean gate score, averaged over layers and heads.

    Unlike the streaming probes this keeps O(tokens) numbers (one per query and sequence), for the
    small evaluations where a reader wants to split queries by role (e.g. a task's trigger tokens).
    """

    listens_to_attention = True

    def attach(self, loaded):
        self.first: dict[int, list[torch.Tensor]] = {}   # seq id -> per layer [query] (mean over heads)
        self.gate: dict[int, list[torch.Tensor]] = {}    # seq id -> per gated layer [query] (mean over heads, dims)
        if not loaded.info.gated:
            return []
        return hook_gates(loaded, lambda layer: self._hook(loaded))

    def _hook(self, loaded):
        def hook(module, args, output):
            s = torch.sigmoid(gate_logits(loaded, output).float()).mean((-2, -1))  # [batch, pos]
            for i in range(s.shape[0]):
                self.gate.setdefault(self.batch.seq_id(i), []).append(s[i, : int(self.batch.lengths[i])].cpu())
        return hook

    def on_attention(self, ev, batch):
        w = first_token.first_token_weights(ev.query, ev.first_key(), ev.lse, ev.scale, ev.mask)  # [b, h, q]
        check_finite(f"attention of layer {ev.layer}", w)
        for i in range(w.shape[0]):
            self.first.setdefault(batch.seq_id(i), []).append(w[i, :, : int(batch.lengths[i])].double().mean(0).cpu())

    def state(self):
        return {"first": self.first, "gate": self.gate}

    def clear(self):
        self.first, self.gate = {}, {}

    def absorb(self, state):
        self.first.update(state["first"])
        self.gate.update(state["gate"])

    def finish(self, loaded, settings):
        ids = sorted(self.first)
        first = [torch.stack(self.first[i]).mean(0) for i in ids]
        gate = [torch.stack(self.gate[i]).mean(0) for i in ids] if self.gate else None
        return QueryTrace(model=loaded.info.to_dict(), settings=settings, first_token=first, gate=gate)


class Rank(Probe):
    """Effective rank of W_V W_O per head (weights) and of the head outputs z W_O over tokens.

    For G1-gated models the outputs are measured with the gate on, and with the gate replaced by
    its mean score per head and dimension (linearised), which removes the non-linearity.
    With `tokens=False` only the weights are read (no forward pass needed).
    """

    listens_to_attention = True

    def __init__(self, tol: float = rank.DEFAULT_TOL, tokens: bool = True):
        self.tol, self.tokens = tol, tokens
        self.gram_y: dict[int, torch.Tensor] = {}
        self.gram_z: dict[int, torch.Tensor] = {}
        self.gate_sum: dict[int, torch.Tensor] = {}
        self.gate_n: dict[int, float] = {}
        self.pending: dict[int, torch.Tensor] = {}

    def attach(self, loaded):
        self.gram_y, self.gram_z, self.gate_sum, self.gate_n, self.pending = {}, {}, {}, {}, {}
        self.g1 = loaded.info.gate_position == "G1"
        if not (self.g1 and self.tokens):
            return []
        return hook_gates(loaded, lambda layer: self._hook(loaded, layer))

    def _hook(self, loaded, layer):
        def hook(module, args, output):
            s = torch.sigmoid(gate_logits(loaded, output).double())
            valid = self.batch.valid().to(s.device)
            self.pending[layer] = s
            self.gate_sum[layer] = self.gate_sum.get(layer, 0) + (s * valid[..., None, None]).sum((0, 1))
            self.gate_n[layer] = self.gate_n.get(layer, 0) + float(valid.sum())
        return hook

    def on_attention(self, ev, batch):
        if not self.tokens:
            return
        y = ev.output.transpose(1, 2)
        valid = batch.valid().to(y.device)
        self.gram_y[ev.layer] = self.gram_y.get(ev.layer, 0) + rank.head_gram(y, valid)
        s = self.pending.pop(ev.layer, None)
        if s is not None:
            self.gram_z[ev.layer] = self.gram_z.get(ev.layer, 0) + rank.head_gram(y * s, valid)

    def state(self):
        return {"gram_y": self.gram_y, "gram_z": self.gram_z, "gate_sum": self.gate_sum, "gate_n": self.gate_n}

    def clear(self):
        self.gram_y, self.gram_z, self.gate_sum, self.gate_n = {}, {}, {}, {}

    def absorb(self, state):
        for name, part in state.items():
            _add_into(getattr(self, name), part)

    def finish(self, loaded, settings):
        from .models.weights import ov_weights

        layers = []
        for layer in loaded.info.attention_layers:
            w_v, w_o = ov_weights(loaded, layer)
            sv = rank.ov_singular_values(w_v, w_o)
            heads = {"ov_effective_rank": rank.effective_rank(sv), "ov_stable_rank": rank.stable_rank(sv),
                     "ov_numerical_rank": rank.numerical_rank(sv, self.tol).double()}
            if layer in self.gram_y:
                gy = self.gram_y[layer]
                gz = self.gram_z.get(layer, gy)
                heads["out_effective_rank"] = rank.effective_rank(rank.output_singular_values(gz, w_o))
                if layer in self.gram_z:
                    gbar = self.gate_sum[layer] / self.gate_n[layer]          # [head, g]: mean gate per dim
                    gbar = gbar.expand(gy.shape[0], gy.shape[1])
                    glin = gbar[:, :, None] * gy * gbar[:, None, :]           # diag(g) G_y diag(g)
                    heads["out_effective_rank_linearized"] = rank.effective_rank(
                        rank.output_singular_values(glin, w_o))
            layers.append(LayerRank(layer=layer, heads={k: v.tolist() for k, v in heads.items()},
                                    ov_singular_values=sv.tolist()))
        return RankResult(model=loaded.info.to_dict(), settings={**settings, "tol": self.tol}, layers=layers)


class Perplexity(Probe):
    """Next-token loss over all valid positions (from the logits the forward computes anyway)."""

    def attach(self, loaded):
        self.nll, self.n = 0.0, 0
        return [loaded.model.get_output_embeddings().register_forward_hook(self._hook)]

    def _hook(self, module, args, output):
        logits = output.float()[:, :-1]
        target = self.batch.input_ids[:, 1:].to(logits.device)
        valid = self.batch.valid()[:, 1:].to(logits.device)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        self.nll += float((nll * valid).sum())
        self.n += int(valid.sum())

    def state(self):
        return {"nll": self.nll, "n": self.n}

    def clear(self):
        self.nll, self.n = 0.0, 0

    def absorb(self, state):
        self.nll += state["nll"]
        self.n += state["n"]

    def finish(self, loaded, settings):
        return PerplexityResult(loaded.info.to_dict(), settings, self.nll, self.n)


def run(loaded: Loaded, batches: Iterable[Batch], probes: Sequence[Probe],
        on_batch: Callable[[int], None] | None = None) -> None:
    """One no-grad forward per batch; every probe updates its accumulator on the same pass."""
    model = loaded.model
    device = loaded.model.get_input_embeddings().weight.device  # with a device map: where the ids go
    current: dict[str, Batch] = {}

    def listener(ev):
        for p in probes:
            if p.listens_to_attention:
                p.on_attention(ev, current["batch"])

    with ExitStack() as stack, torch.no_grad():
        for p in probes:
            for h in p.attach(loaded):
                stack.callback(h.remove)
        if any(p.listens_to_attention for p in probes):
            stack.enter_context(attention.listening(listener))
        for batch in batches:
            current["batch"] = batch
            for p in probes:
                p.batch = batch
            mask = None if batch.attention_mask is None else batch.attention_mask.to(device)
            model(input_ids=batch.input_ids.to(device), attention_mask=mask, use_cache=False)
            if on_batch is not None:
                on_batch(batch.input_ids.shape[0])
    if distributed.world_size() > 1:
        for p in probes:
            states = distributed.all_gather(p.state())
            p.clear()
            for st in states:
                p.absorb(st)
