"""`compare`: the paper's table (F-Attn, sink rate, M-Act, gate score, rank, perplexity) for any models.

Each model gets one forward pass per batch with every standard metric of the registry attached
(`metrics.METRICS`: gate scores only where it has gates), on the same text and settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .measure import Inputs, Report, as_loaded, prepare_inputs, report
from .metrics import METRICS
from .models.load import Loaded


@dataclass
class Comparison:
    reports: list[Report] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @staticmethod
    def ratio_columns() -> list[str]:
        return [c for cls in METRICS.values() if cls.standard for c in cls.result_type.RATIOS]

    def to_frame(self):
        """One row per model; `*_ratio` columns divide by the first (baseline) model."""
        import pandas as pd

        df = pd.DataFrame([r.row() for r in self.reports])
        base = df.iloc[0]
        for col in self.ratio_columns():
            df[f"{col}_ratio"] = [None if v is None or base[col] in (None, 0) else v / base[col] for v in df[col]]
        return df

    def to_dict(self) -> dict:
        return {"models": self.to_frame().to_dict(orient="records"), "settings": self.settings,
                "details": [r.to_dict() for r in self.reports]}


def compare_models(models: list[Loaded | str], *, text: str | None = None, text_file: str | None = None,
                   dataset: str | None = None, seq_len: int = 256, n_seqs: int = 8, bos: bool = True,
                   batch_size: int = 4, eps: float = 0.3, device: str = "cpu", dtype: str = "float32",
                   on_model: Callable[[str, Inputs], Callable[[int], None]] | None = None) -> Comparison:
    """Measure every model (first = baseline) with all standard metrics on one forward per batch."""
    reports = []
    for spec in models:
        loaded = as_loaded(spec, device=device, dtype=dtype)
        inputs = prepare_inputs(loaded, text=text, text_file=text_file, dataset=dataset, seq_len=seq_len,
                                n_seqs=n_seqs, bos=bos)
        cb = on_model(loaded.info.spec, inputs) if on_model else None
        reports.append(report(loaded, inputs, batch_size=batch_size, options={"sink": {"eps": eps}}, on_batch=cb))
    return Comparison(reports, {"seq_len": seq_len, "n_seqs": n_seqs, "bos": bos, "batch_size": batch_size,
                                "eps": eps, "input": reports[0].sink.settings["input"]})
