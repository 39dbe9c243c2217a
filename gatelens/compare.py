"""`compare`: the paper's table (F-Attn, sink rate, M-Act, gate score, rank, perplexity) for any models.

Each model gets one forward pass per batch with every standard metric of the registry attached
(`metrics.METRICS`: gate scores only where it has gates), on the same text and settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .measure import Inputs, StandardResults, as_loaded, prepare_inputs, standard_metrics
from .metrics import METRICS
from .metrics.base import Result
from .models.load import Loaded, check_revision
from .settings import Settings


@dataclass(repr=False)
class Comparison(Result):
    results: list[StandardResults] = field(default_factory=list)   # one per model, in order
    settings: dict = field(default_factory=dict)

    @staticmethod
    def labels() -> dict[str, str]:
        """Every standard metric's table columns with their labels, in the registry's order."""
        return {k: cls.result_type.LABELS.get(k, k.replace("_", " ")) for cls in METRICS.values() if cls.standard
                for k in cls.result_type.COLUMNS}

    def by_metric(self) -> dict[type, list]:
        """Each standard metric's results across the models (the ones it measured), by result type, in the
        registry's order; `plots.figures(comparison)` draws each metric's comparison figures from them."""
        out = {}
        for name, cls in METRICS.items():
            results = [r.results.get(name) for r in self.results if r.results.get(name) is not None]
            if cls.standard and results:
                out[cls.result_type] = results
        return out

    def what(self) -> str:
        """What was measured, in words: the input and its shape, or, when the models were measured on different
        inputs, each model's (the table's caption and title)."""
        s = self.settings
        if not s.get("inputs_differ"):
            return f"{s['input']}, {s['n_seqs']} x {s['seq_len']} tokens"
        return "INPUTS DIFFER: " + "; ".join(f"{i['model']} on {i['input']} ({i['n_seqs']} x {i['seq_len']})"
                                             for i in s["inputs"])

    def notes(self) -> list[str]:
        """What was not measured on which model, and why."""
        return [f"{r.info['spec']}: {name} not measured ({why})" for r in self.results for name, why in r.skipped.items()]

    @staticmethod
    def ratio_columns() -> list[str]:
        return [c for cls in METRICS.values() if cls.standard for c in cls.result_type.RATIOS]

    def to_frame(self):
        """One row per model; `*_ratio` columns divide by the first (baseline) model. When the models were measured
        on different inputs an `input` column says on which; perplexity ratios across tokenizers are left empty."""
        import pandas as pd

        df = pd.DataFrame([r.row() for r in self.results])
        if "learned_sink" in df.columns:   # beside F-Attn, wherever the first model with learned sinks put it
            df.insert(df.columns.get_loc("sink_rate") + 1, "learned_sink", df.pop("learned_sink"))
        if self.settings.get("inputs_differ"):
            df.insert(2, "input", [r.sink.settings["input"] for r in self.results])
        base = df.iloc[0]
        for col in self.ratio_columns():
            apart = col == "perplexity" and self.settings.get("tokenizers_differ")
            df[f"{col}_ratio"] = [None if apart or v is None or base[col] in (None, 0) else v / base[col]
                                  for v in df[col]]
        return df

    def to_dict(self) -> dict:
        return {"models": self.to_frame().to_dict(orient="records"), "settings": self.settings,
                "details": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, d: dict) -> Comparison:
        """Back from `to_dict()`: every model's results rebuilt from its details."""
        results = [StandardResults({name: None if part is None else METRICS[name].result_type.from_dict(part)
                                    for name, part in det.items() if name in METRICS})
                   for det in d["details"]]
        return cls(results, d["settings"])


def compare_models(models: list[Loaded | str], settings: Settings | None = None, *, text: str | None = None,
                   on_model: Callable[[str, Inputs], Callable[[int], None]] | None = None, **fields) -> Comparison:
    """Measure every model (first = baseline) with all standard metrics on one forward per batch, under one
    `Settings` (or its fields as keywords: `compare_models(models, seq_len=256, n_seqs=8)`); `text` is a literal
    text in place of the settings' file or dataset. `revision` selects the version of every model given as a hub
    id (each is checked before any is loaded)."""
    s = Settings.given(settings, fields)
    seq_len, n_seqs, bos, batch_size, eps = s.length(), s.n_seqs, s.bos, s.batch_size, s.eps
    for spec in models:
        if not isinstance(spec, Loaded):
            check_revision(spec, s.revision)
    results, tokenizers = [], []
    for spec in models:
        loaded = as_loaded(spec, device=s.device, dtype=s.dtype, revision=s.revision)
        inputs = prepare_inputs(loaded, text=text, text_file=s.text_file, dataset=s.dataset, seq_len=seq_len,
                                n_seqs=n_seqs, bos=bos)
        tokenizers.append(_tokenizer_key(loaded.tokenizer))
        cb = on_model(loaded.info.spec, inputs) if on_model else None
        results.append(standard_metrics(loaded, inputs, batch_size=batch_size, options=s.metric_options(),
                                        on_batch=cb))
    sources = [r.sink.settings["input"] for r in results]
    first = results[0].sink.settings   # what was measured: a short text gives fewer or shorter sequences than asked
    settings = {"seq_len": first["seq_len"], "n_seqs": first["n_seqs"], "bos": bos, "batch_size": batch_size,
                "eps": eps, "input": sources[0]}
    if (first["seq_len"], first["n_seqs"]) != (seq_len, n_seqs):
        settings.update(seq_len_asked=seq_len, n_seqs_asked=n_seqs)
    if len(set(sources)) > 1 or len({(r.sink.settings["n_seqs"], r.sink.settings["seq_len"]) for r in results}) > 1:
        settings.update(inputs_differ=True, inputs=[{"model": r.info["spec"], **{k: r.sink.settings[k] for k in
                                                    ("input", "n_seqs", "seq_len", "n_tokens")}} for r in results])
    if len(set(tokenizers)) > 1:
        settings["tokenizers_differ"] = True
    return Comparison(results, settings)


def _tokenizer_key(tokenizer) -> str:
    """Two models share a tokenizer when their vocabularies map the same strings to the same ids."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
