"""The library's front door: model + text in, result dataclass out (the CLI is a thin shell over these).

`run` is the one forward loop every measurement rides: one no-grad forward per batch, every probe
updating its accumulator on the same pass. `run_probes` runs any probes on a model and its inputs;
`standard_metrics` runs the registry's standard set (`metrics.METRICS`) and returns a `StandardResults`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch

from . import attention, data, distributed, tasks
from .data import Batch
from .errors import GatelensError
from .metrics import METRICS, exact_for, Gates, Massive, Perplexity, Probe, Queries, Rank, Sink, standard_probes
from .metrics.base import Result, check_exact, check_result
from .metrics.gates import GatesResult
from .metrics.massive import MassiveResult
from .metrics.perplexity import PerplexityResult
from .metrics.queries import QueryTrace
from .metrics.rank import RankResult
from .metrics.sink import SinkResult
from .models.load import Loaded, load


@dataclass
class Inputs:
    """What a measurement reads: sequences plus a description for the report."""

    seqs: list[torch.Tensor]
    source: str
    seq_len: int
    bos: bool

    n_seqs_asked: int | None = None

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.seqs)

    @property
    def longest(self) -> int:
        return max(len(s) for s in self.seqs)

    @property
    def shortfall(self) -> str | None:
        """What the text could not give, in words (None when it gave every sequence asked for, in full)."""
        asked = self.n_seqs_asked or len(self.seqs)
        if len(self.seqs) >= asked and self.longest >= self.seq_len:
            return None
        return (f"{self.source} gives {len(self.seqs)} sequence(s) of at most {self.longest} tokens "
                f"({self.n_tokens} in all), not {asked} x {self.seq_len}; that is what was measured")


def as_loaded(model: Loaded | str, device: str = "cpu", dtype: str = "float32", revision: str | None = None) -> Loaded:
    return model if isinstance(model, Loaded) else load(model, device=device, dtype=dtype, revision=revision)


def prepare_inputs(loaded: Loaded, *, text: str | None = None, text_file: str | None = None,
                   dataset: str | None = None, seq_len: int = 256, n_seqs: int = 8, bos: bool = True) -> Inputs:
    """Sequences for a model: a text, a text file, a shipped dataset, or the model's own default data.

    A zoo model trained on a synthetic task knows its task and evaluation seed; anything else
    defaults to the shipped evaluation sample (real English text, kept out of training).
    """
    given = [x for x in (text, text_file, dataset) if x is not None]
    if len(given) > 1:
        raise GatelensError("give only one of --text and --dataset")
    info = loaded.info
    task_model = bool(info.eval_data) and info.eval_data.get("kind") == "task"
    if dataset is not None and task_model:
        raise GatelensError(f"{info.spec} was trained on the synthetic task {info.eval_data['task']}, not on text: "
                            "a dataset would measure it on inputs it never saw; drop --dataset to measure it "
                            "on its task sequences")
    if task_model and not given:
        seqs = tasks.eval_sequences(info.eval_data, seq_len=seq_len, n_seqs=n_seqs, max_context=info.max_context)
        return Inputs(seqs, f"task:{info.eval_data['task']} (seed {info.eval_data['seed']})", seq_len, True, n_seqs)
    if text_file is not None:
        text, source = data.read_text(text_file), f"file:{text_file}"
    elif text is not None:
        source = "text"
    else:
        name = dataset or "eval_sample"
        text, source = data.dataset_text(name), f"dataset:{name}"
    seqs = data.sequences(loaded.tokenizer, text, seq_len, n_seqs, bos=bos, max_context=info.max_context)
    if task_model:  # a text in the task's own vocabulary is a fair input; English is not
        unknown = _unknown_id(loaded.tokenizer)
        n_unknown = sum(int((s == unknown).sum()) for s in seqs) if unknown is not None else 0
        if n_unknown:
            raise GatelensError(f"{info.spec} was trained on the synthetic task {info.eval_data['task']}: "
                                f"{n_unknown} token(s) of the text are outside its vocabulary; drop "
                                f"{'--text' if text_file is not None else '--prompt'} to measure it on its task "
                                "sequences, or write the text in its tokens (t0 t1 ...)")  # a text itself: attn-map
    return Inputs(seqs, source, seq_len, bos, n_seqs)


def _unknown_id(tokenizer) -> int | None:
    """The id an out-of-vocabulary word becomes (a word-level tokenizer's unk token), or None."""
    unk = tokenizer.unk_token_id
    if unk is None:
        try:
            import json
            unk = tokenizer.convert_tokens_to_ids(
                json.loads(tokenizer.backend_tokenizer.to_str())["model"].get("unk_token"))
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
    return unk


def settings_of(inputs: Inputs, batch_size: int, **extra) -> dict:
    """What was measured. `seq_len` is the longest sequence measured; `shortfall` says when that or the number
    of sequences is less than asked for (a short text)."""
    short = inputs.shortfall
    return {"input": inputs.source, "seq_len": min(inputs.seq_len, inputs.longest), "n_seqs": len(inputs.seqs),
            "n_tokens": inputs.n_tokens, "bos": inputs.bos, "batch_size": batch_size,
            **({"seq_len_asked": inputs.seq_len, "n_seqs_asked": inputs.n_seqs_asked, "shortfall": short}
               if short else {}), **extra}


def pad_id(loaded: Loaded) -> int:
    tok = loaded.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)


def run(loaded: Loaded, batches: Iterable[Batch], probes: Sequence[Probe],
        on_batch: Callable[[int], None] | None = None) -> None:
    """One no-grad forward per batch; every probe updates its accumulator on the same pass."""
    model = loaded.model
    device = loaded.model.get_input_embeddings().weight.device  # with a device map: where the ids go
    current: dict[str, Batch] = {}
    listeners = [p for p in probes if p.listens_to_attention]

    def listener(ev):
        for p in listeners:
            check_exact(p, ev)
            p.on_attention(ev, current["batch"])

    if not loaded.info.n_layers:
        raise GatelensError(f"{loaded.info.spec} has 0 decoder layers: there is nothing for gatelens to measure")
    if listeners and not loaded.info.attention_layers:
        raise GatelensError(f"{loaded.info.spec} has no softmax attention layer among its {loaded.info.n_layers} "
                            "decoder layers: there is no attention to measure")
    rows = loaded.model.get_input_embeddings().weight.shape[0]
    if loaded.family.discovered and any(p.reads_weights for p in probes):
        from .models.weights import check_ov

        check_ov(loaded)   # its own short forward, before any probe's hooks are in
    with ExitStack() as stack, torch.no_grad():
        for p in probes:
            for h in p.attach(loaded):
                stack.callback(h.remove)
        if listeners:
            stack.enter_context(attention.listening(listener))
        for batch in batches:
            check_vocabulary(loaded, batch.input_ids, rows)
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


def check_vocabulary(loaded: Loaded, ids: torch.Tensor, rows: int) -> None:
    """Refuse, before the forward, token ids the embedding has no row for (a tokenizer larger than the model's
    vocabulary: PyTorch would stop with an index error, or a device-side assert on CUDA)."""
    top = int(ids.max())
    if top >= rows:
        raise GatelensError(f"token id {top} is outside {loaded.info.spec}'s embedding ({rows} rows): its tokenizer "
                            f"({len(loaded.tokenizer)} tokens) is larger than the model's vocabulary; the tokenizer "
                            "does not belong to these weights")


def run_probes(model: Loaded | str, probes: list[Probe], inputs: Inputs | None = None, *, batch_size: int = 4,
               on_batch: Callable[[int], None] | None = None, **input_kw) -> list:
    """Run any set of probes on one forward pass per batch; returns their results in order."""
    loaded = as_loaded(model)
    inputs = inputs or prepare_inputs(loaded, **input_kw)
    mine = distributed.shard(len(inputs.seqs))  # all of them in a single process
    batches = data.batches([inputs.seqs[i] for i in mine], batch_size, pad_id(loaded), seq_ids=mine)
    run(loaded, batches, probes, on_batch)
    return finish(loaded, probes, settings_of(inputs, batch_size))


def finish(loaded: Loaded, probes: Sequence[Probe], settings: dict, during: str = "") -> list:
    """Every probe's result, after the run: the one place results are made, so the one place a NaN/inf
    model-level number is refused (`check_result`), for every metric and command."""
    results = [p.finish(loaded, settings) for p in probes]
    for r in results:
        if r is not None:
            check_result(r, during)
    return results


@dataclass(repr=False)
class StandardResults(Result):
    """Every standard metric of one model on one input set: `r.sink`, `.massive`, `.gates` (None if
    the model has none), `.rank`, `.perplexity`, or `r.results[name]`."""

    results: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)   # metric -> why it was not measured on this model (not exact)

    def __getattr__(self, name):  # only for names that are not attributes: the metrics
        if name in METRICS:
            return self.__dict__.get("results", {}).get(name)
        raise AttributeError(name)

    @property
    def info(self) -> dict:
        return next(iter(self.results.values())).model

    def row(self) -> dict:
        """The model's row of the paper's table: every standard metric's columns (None where not measured)."""
        row = {"model": self.info["spec"], "gate": self.info["gate"]}
        for name, cls in METRICS.items():
            if cls.standard:
                r = self.results.get(name)
                row.update(r.columns() if r is not None else dict.fromkeys(cls.result_type.COLUMNS))
        return row

    def to_dict(self) -> dict:
        return {"model": self.info["spec"], **{name: r.to_dict() if r is not None else None
                                               for name, r in self.results.items()},
                **({"skipped": self.skipped} if self.skipped else {})}


def standard_metrics(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4,
                     options: dict[str, dict] | None = None, on_batch: Callable[[int], None] | None = None,
                     **input_kw) -> StandardResults:
    """Every standard metric (`metrics.METRICS`) that applies to the model, on one forward pass per batch."""
    loaded = as_loaded(model)
    probes = standard_probes(loaded, options)
    results = run_probes(loaded, probes, inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)
    by_name = {p.name: r for p, r in zip(probes, results)}
    skipped = {name: why for name, cls in METRICS.items() if cls.standard and cls.applies(loaded)
               and (why := exact_for(cls, loaded)) is not None}
    return StandardResults({name: by_name.get(name) for name, cls in METRICS.items() if cls.standard}, skipped)


def sink(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, eps: float = 0.3,
         on_batch: Callable[[int], None] | None = None, **input_kw) -> SinkResult:
    """F-Attn and sink rate of `model` (a `Loaded` or a spec) on `inputs` (or on `prepare_inputs(**input_kw)`)."""
    return run_probes(model, [Sink(eps=eps)], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def massive(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, top_k: int = 5,
            abs_threshold: float = 100.0, ratio: float = 1000.0, on_batch=None, **input_kw) -> MassiveResult:
    """Per-layer max / median |hidden|, top-k activations with position, token and channel; M-Act."""
    probe = Massive(top_k=top_k, abs_threshold=abs_threshold, ratio=ratio)
    return run_probes(model, [probe], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def gates(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, on_batch=None,
          **input_kw) -> GatesResult:
    """Gate-score statistics of every gated attention layer and head (gated models only)."""
    loaded = as_loaded(model)
    return run_probes(loaded, [Gates()], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def rank(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, tol: float = 1e-3,
         tokens: bool = True, on_batch=None, **input_kw) -> RankResult:
    """Effective / stable / numerical rank of W_V W_O per head, and of the head outputs on tokens."""
    loaded = as_loaded(model)
    probe = Rank(tol=tol, tokens=tokens)
    if not tokens:
        probe.attach(loaded)
        return finish(loaded, [probe], {"tokens": False})[0]
    return run_probes(loaded, [probe], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def perplexity(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, on_batch=None,
               **input_kw) -> PerplexityResult:
    return run_probes(model, [Perplexity()], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def by_query(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, on_batch=None,
             **input_kw) -> QueryTrace:
    """Each query's weight on the first token and mean gate score (for splitting queries by role).

    `result.split(masks)` averages over chosen queries vs the rest, e.g. a task's trigger tokens
    (`gatelens.tasks.active_queries`) against the dormant ones.
    """
    return run_probes(model, [Queries()], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]
