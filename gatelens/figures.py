"""`gatelens figures`: every paper figure and table, regenerated from one config file.

Stages stay apart: `Context.results(model)` measures a model once (every probe on one forward per
batch) and caches the result objects in memory; each script in `analyses/` turns cached results
into a CSV (the data behind the figure) and a PNG + PDF, plus a `.meta.json` with the models'
fingerprints, settings, seed and versions. Scripts also run alone: `python analyses/<name>.py`.
"""

from __future__ import annotations

import importlib.util
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import GatelensError
from .settings import Settings

DEFAULT_CONFIG = "figures.toml"


@dataclass
class Group:
    """Models shown together: a baseline and its gated twins (or one model alone)."""

    name: str
    models: list[str]
    title: str = ""
    seq_len: int = 256
    n_seqs: int = 16
    lengths: list[int] = field(default_factory=list)   # the long-context sweep
    attn_layers: list[int] = field(default_factory=list)
    attn_seq_len: int = 48
    text: str | None = None                            # attention-map text (default: the model's own data)
    analyses: list[str] | None = None                  # only these analyses for this group (default: all)
    per_seed: str | None = None                        # JSON of per-seed runs (the ablation), relative to the config
    metrics: list[str] = field(default_factory=list)   # registered metrics whose tables and figures analyses/metrics.py writes
    emergence: str | None = None                       # JSON of `gatelens emergence` (a checkpointed pair), likewise
    seed_kernels: str | None = None                    # the seed x CPU-kernel-set record (scripts/seed_kernels.py)

    def settings(self, batch_size: int = 4, **change) -> Settings:
        """How this group's models are measured (`change`: e.g. another seq_len for the length sweep)."""
        return Settings(**{"seq_len": self.seq_len, "n_seqs": self.n_seqs, "batch_size": batch_size, **change})


@dataclass
class Config:
    out: Path
    root: Path                                         # the folder holding the config and analyses/
    batch_size: int = 4
    groups: list[Group] = field(default_factory=list)
    analyses: list[str] = field(default_factory=list)


def read_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise GatelensError(f"figures config {path} not found; pass --config FILE (see figures.toml in the repository)")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise GatelensError(f"{path} is not valid TOML: {e}") from None
    known = {f.name for f in fields(Group)}
    for g in raw.get("group", []):
        unknown = sorted(set(g) - known)
        if unknown or "name" not in g or "models" not in g:
            what = f"unknown key {unknown[0]!r}" if unknown else "a group needs name and models"
            raise GatelensError(f"{path}: [[group]] {g.get('name', '?')}: {what}; a group takes {', '.join(sorted(known))}")
    groups = [Group(**g) for g in raw.get("group", [])]
    if not groups:
        raise GatelensError(f"{path} lists no [[group]] of models")
    out = Path(raw.get("out", "figures"))
    if not out.is_absolute():
        out = path.parent / out
    analyses = raw.get("analyses") or sorted(p.stem for p in (path.parent / "analyses").glob("*.py")
                                             if not p.name.startswith("_"))
    return Config(out=out, root=path.parent, batch_size=raw.get("batch_size", 4), groups=groups, analyses=analyses)


class Context:
    """What analysis scripts get: the config, cached measurements, and a writer with provenance."""

    def __init__(self, config: Config):
        self.config = config
        self._loaded: dict = {}
        self._results: dict = {}

    def loaded(self, spec: str):
        from .models.load import load

        if spec not in self._loaded:
            self._loaded[spec] = load(spec)
        return self._loaded[spec]

    def results(self, spec: str, seq_len: int, n_seqs: int):
        """A `measure.StandardResults` (every standard metric of the registry) for one model and setting."""
        return self.measured(spec, Settings(seq_len=seq_len, n_seqs=n_seqs, batch_size=self.config.batch_size))

    def measured(self, spec: str, settings: Settings):
        """A `measure.StandardResults` for one model under `settings` (measured once, then cached)."""
        from .measure import standard_metrics

        key = (spec, json.dumps(settings.to_dict(), sort_keys=True))
        if key not in self._results:
            loaded = settings.load(self.loaded(spec))
            self._results[key] = standard_metrics(loaded, settings.inputs(loaded), batch_size=settings.batch_size,
                                                  options=settings.metric_options())
        return self._results[key]

    def group_results(self, group: Group):
        return [self.measured(m, group.settings(self.config.batch_size)) for m in group.models]

    def write(self, stem: str, frame=None, fig=None, models: list[dict] | None = None, settings: dict | None = None):
        """figures/<stem>.csv (+ .md), .png, .pdf and .meta.json, all or nothing.

        When the CSV and the PNG come out byte for byte as the ones already there (and the models and settings
        are the same), the PDF and .meta.json already there are kept: such a rerun (another transformers version,
        or a machine whose PDF differs in the 10th digit of a coordinate) made the same numbers and picture, so a
        diff of figures/ means the numbers or the drawing changed.
        """
        from .report import provenance, writing

        out = self.config.out
        with writing(out) as w:
            if frame is not None:
                w.table(stem, frame)
            if fig is not None:
                w.figure(stem, fig)
            w.json(f"{stem}.meta.json", provenance(settings or {}, models or []))
            names = list(w.names)
            if _unchanged(w.staging, out, stem):
                w.names = [n for n in w.names if not n.endswith((".pdf", ".meta.json"))]
        return [str(out / n) for n in names]


def _unchanged(staging: Path, out: Path, stem: str) -> bool:
    """Whether the staged CSV and PNG equal those in `out` and its .meta.json names the same models and settings."""
    old = out / f"{stem}.meta.json"
    decisive = [p.name for p in staging.iterdir() if p.suffix in (".csv", ".png")]
    if not old.is_file() or not decisive:
        return False
    if any(not (out / n).is_file() or (out / n).read_bytes() != (staging / n).read_bytes() for n in decisive):
        return False
    before = json.loads(old.read_text())
    now = json.loads((staging / old.name).read_text())
    return all(before.get(k) == now.get(k) for k in ("models", "settings", "seed"))


def load_analysis(root: Path, name: str):
    path = root / "analyses" / f"{name}.py"
    if not path.is_file():
        raise GatelensError(f"analysis script {path} not found")
    spec = importlib.util.spec_from_file_location(f"gatelens_analysis_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_all(config_path: str | Path = DEFAULT_CONFIG, only: list[str] | None = None, on_step=None) -> list[str]:
    """Run every analysis script of the config (or `only` these); returns the files written."""
    config = read_config(config_path)
    ctx = Context(config)
    files: list[str] = []
    for name in only or config.analyses:
        module = load_analysis(config.root, name)
        for group in config.groups:
            if group.analyses is not None and name not in group.analyses:
                continue
            files += module.make(ctx, group) or []
            if on_step:
                on_step(name, group.name)
    manifest = config.out / "MANIFEST.json"
    names = {Path(f).name for f in files}
    if only and manifest.exists():  # a partial run keeps the entries of the other analyses' files still there
        names |= {n for n in json.loads(manifest.read_text()) if (config.out / n).exists()}
    manifest.write_text(json.dumps(sorted(names), indent=1) + "\n")
    return files


def main_for_script(name: str) -> None:
    """`python analyses/<name>.py [figures.toml]`: run one analysis for every group."""
    import sys

    run_all(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_CONFIG, only=[name])
