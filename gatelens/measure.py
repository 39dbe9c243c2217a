"""The library's front door: model + text in, result dataclass out (the CLI is a thin shell over these)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import data, distributed
from .errors import GatelensError
from .models.load import Loaded, load
from .probes import Gates, Massive, Perplexity, Probe, Queries, Rank, Sink, run
from .results import GatesResult, MassiveResult, PerplexityResult, QueryTrace, RankResult, SinkResult


@dataclass
class Inputs:
    """What a measurement reads: sequences plus a description for the report."""

    seqs: list[torch.Tensor]
    source: str
    seq_len: int
    bos: bool

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.seqs)


def as_loaded(model: Loaded | str, device: str = "cpu", dtype: str = "float32") -> Loaded:
    return model if isinstance(model, Loaded) else load(model, device=device, dtype=dtype)


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
    if not given and info.eval_data and info.eval_data.get("kind") == "task":
        from .train import tasks

        seqs = tasks.eval_sequences(info.eval_data, seq_len=seq_len, n_seqs=n_seqs, max_context=info.max_context)
        return Inputs(seqs, f"task:{info.eval_data['task']} (seed {info.eval_data['seed']})", seq_len, True)
    if text_file is not None:
        text, source = data.read_text(text_file), f"file:{text_file}"
    elif text is not None:
        source = "text"
    else:
        name = dataset or "eval_sample"
        text, source = data.dataset_text(name), f"dataset:{name}"
    seqs = data.sequences(loaded.tokenizer, text, seq_len, n_seqs, bos=bos, max_context=info.max_context)
    return Inputs(seqs, source, seq_len, bos)


def settings_of(inputs: Inputs, batch_size: int, **extra) -> dict:
    return {"input": inputs.source, "seq_len": inputs.seq_len, "n_seqs": len(inputs.seqs),
            "n_tokens": inputs.n_tokens, "bos": inputs.bos, "batch_size": batch_size, **extra}


def pad_id(loaded: Loaded) -> int:
    tok = loaded.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)


def measure(model: Loaded | str, probes: list[Probe], inputs: Inputs | None = None, *, batch_size: int = 4,
            on_batch: Callable[[int], None] | None = None, **input_kw) -> list:
    """Run any set of probes on one forward pass per batch; returns their results in order."""
    loaded = as_loaded(model)
    inputs = inputs or prepare_inputs(loaded, **input_kw)
    mine = distributed.shard(len(inputs.seqs))  # all of them in a single process
    batches = data.batches([inputs.seqs[i] for i in mine], batch_size, pad_id(loaded), seq_ids=mine)
    run(loaded, batches, probes, on_batch)
    return [p.finish(loaded, settings_of(inputs, batch_size)) for p in probes]


def sink(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, eps: float = 0.3,
         on_batch: Callable[[int], None] | None = None, **input_kw) -> SinkResult:
    """F-Attn and sink rate of `model` (a `Loaded` or a spec) on `inputs` (or on `prepare_inputs(**input_kw)`)."""
    return measure(model, [Sink(eps=eps)], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def massive(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, top_k: int = 5,
            abs_threshold: float = 100.0, ratio: float = 1000.0, on_batch=None, **input_kw) -> MassiveResult:
    """Per-layer max / median |hidden|, top-k activations with position, token and channel; M-Act."""
    probe = Massive(top_k=top_k, abs_threshold=abs_threshold, ratio=ratio)
    return measure(model, [probe], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def gates(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, on_batch=None,
          **input_kw) -> GatesResult:
    """Gate-score statistics of every gated attention layer and head (gated models only)."""
    loaded = as_loaded(model)
    if not loaded.info.gated:
        raise GatelensError(f"{loaded.info.spec} has no attention gates; `gates` applies to gated models such as "
                            "mech-gated, a paper checkpoint (1B_gate_elementwise) or Qwen3-Next / Qwen3.5")
    return measure(loaded, [Gates()], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def rank(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, tol: float = 1e-3,
         tokens: bool = True, on_batch=None, **input_kw) -> RankResult:
    """Effective / stable / numerical rank of W_V W_O per head, and of the head outputs on tokens."""
    loaded = as_loaded(model)
    probe = Rank(tol=tol, tokens=tokens)
    if not tokens:
        probe.attach(loaded)
        return probe.finish(loaded, {"tokens": False})
    return measure(loaded, [probe], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def perplexity(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, on_batch=None,
               **input_kw) -> PerplexityResult:
    return measure(model, [Perplexity()], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def by_query(model: Loaded | str, inputs: Inputs | None = None, *, batch_size: int = 4, on_batch=None,
             **input_kw) -> QueryTrace:
    """Each query's weight on the first token and mean gate score (for splitting queries by role).

    `result.split(masks)` averages over chosen queries vs the rest, e.g. a task's trigger tokens
    (`gatelens.train.tasks.active_queries`) against the dormant ones.
    """
    return measure(model, [Queries()], inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)[0]


def length_frame(results: list[SinkResult]):
    """F-Attn and sink rate per context length (one row per length)."""
    import pandas as pd

    return pd.DataFrame([{"seq_len": r.settings["seq_len"], "n_seqs": r.settings["n_seqs"], "f_attn": r.f_attn,
                          "sink_rate": r.sink_rate} for r in results])
