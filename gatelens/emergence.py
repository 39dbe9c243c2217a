"""Sink emergence across training (Gu et al. 2024's central plot): F-Attn, M-Act and the mean gate of every
checkpoint a run kept, against the tokens it had seen.

A run trained with `keep_checkpoints` (`gatelens train --keep-checkpoints`) holds a loadable model at step 0 and every
`ckpt_every` steps in OUT/checkpoints/step-NNNNNN/ (with checkpoint.json: step and tokens), beside the final model.
Each checkpoint is measured like any model, on the same inputs (a zoo task model's held-out task sequences, or the
text given), with one forward per batch carrying the sink, massive-activation and gate probes. Any model spec that
is not such a run is measured as one point (its step unknown).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GatelensError
from .measure import prepare_inputs, run_probes
from .metrics import Gates, Massive, Sink
from .metrics.base import Result
from .settings import Settings


def checkpoints(run: str | Path) -> list[tuple[int, int, Path]]:
    """(step, tokens, folder) of every checkpoint a run kept, in step order; [] for a folder without any."""
    root = Path(run) / "checkpoints"
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.glob("step-*")):
        meta = folder / "checkpoint.json"
        if not meta.is_file():
            continue
        m = json.loads(meta.read_text())
        out.append((int(m["step"]), int(m["tokens"]), folder))
    return sorted(out)


@dataclass(repr=False)
class EmergenceResult(Result):
    """One row per (run, checkpoint): step, tokens seen, F-Attn, sink rate, M-Act, mean gate."""

    rows: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)   # the final (or only) model of each run

    COLUMNS = ("run", "step", "tokens", "f_attn", "sink_rate", "m_act", "mean_gate")

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(self.COLUMNS))

    def tables(self) -> dict:
        return {"emergence": self.to_frame()}

    def to_dict(self) -> dict:
        return {"rows": self.rows, "models": self.models, "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict) -> EmergenceResult:
        return cls(d["rows"], d["settings"], d.get("models", []))

    def display(self) -> dict:
        s = self.settings
        runs = ", ".join(dict.fromkeys(r["run"] for r in self.rows))
        return {"title": f"Sink emergence across training: {runs} ({s['input']}, {s['n_seqs']} x {s['seq_len']} tokens)",
                "frame": self.to_frame(),
                "columns": {"run": "run", "step": "step", "tokens": "tokens", "f_attn": "F-Attn",
                            "sink_rate": "sink rate", "m_act": "M-Act", "mean_gate": "mean gate"},
                "notes": ["one row per kept checkpoint; every checkpoint of a run measured on the same inputs"]}


def emergence(runs: list[str], settings: Settings | None = None, *,
              on_checkpoint: Callable[[str, int, int], Callable[[int], None] | None] | None = None,
              **fields) -> EmergenceResult:
    """Measure every checkpoint of each run (or each spec as one point), under one `Settings` (or its fields as
    keywords: `emergence(runs, seq_len=256, n_seqs=8)`)."""
    s = Settings.given(settings, fields)
    rows, models, settings, sources = [], [], None, {}
    for run in runs:
        points = checkpoints(run) or [(None, None, run)]
        label = Path(run).name if points[0][0] is not None else str(run)
        for step, tokens, spec in points:
            loaded = s.load(str(spec))
            inputs = prepare_inputs(loaded, text_file=s.text_file, dataset=s.dataset, seq_len=s.length(),
                                    n_seqs=s.n_seqs, bos=s.bos)
            probes = [Sink(), Massive(top_k=1)] + ([Gates()] if Gates.applies(loaded) else [])
            cb = on_checkpoint(label, step, len(inputs.seqs)) if on_checkpoint else None
            sink, massive, *gates = run_probes(loaded, probes, inputs, batch_size=s.batch_size, on_batch=cb)
            rows.append({"run": label, "step": step, "tokens": tokens, "f_attn": sink.f_attn,
                         "sink_rate": sink.sink_rate, "m_act": massive.m_act,
                         "mean_gate": gates[0].mean_gate if gates else None})
            settings = settings or sink.settings
            sources[label] = sink.settings["input"]
        models.append(loaded.info.to_dict())
    if not rows:
        raise GatelensError("give at least one run folder or model spec")
    settings = {k: v for k, v in settings.items() if k != "eps"}
    if len(set(sources.values())) > 1:   # a task run beside a text model: said in the table, not hidden
        settings.update(inputs_differ=True, inputs=sources)
    return EmergenceResult(rows, settings, models)
