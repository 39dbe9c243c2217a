"""Writing results: CSV + Markdown tables and a JSON with fingerprint, versions and settings.

Every output set is written into a temporary folder inside the destination and moved into place
file by file only when all of it was written, so an error never leaves a half-written file (nor a folder
made for the files).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


def versions() -> dict:
    import torch
    import transformers

    from . import __version__

    return {"gatelens": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def runtime() -> dict:
    """How torch computes here: the CPU kernel set ATen dispatches to, its thread count, deterministic mode.

    Same code, data and seed can train to different models under another kernel set (AVX2 against AVX-512
    round differently, and a high learning rate amplifies it), so every result and training.json records it.
    """
    import torch

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled()}


def describe_runtime(rt: dict | None) -> str:
    """One line for a model card: `AVX512 kernels, 2 torch threads, deterministic algorithms on (warn only)`."""
    if not rt:
        return "kernel set not recorded"
    mode = "on" if rt["deterministic_algorithms"] else "off"
    if rt["deterministic_algorithms"] and rt.get("deterministic_warn_only"):
        mode += " (warn only)"
    return f"{rt['cpu_capability']} kernels, {rt['torch_threads']} torch threads, deterministic algorithms {mode}"


def provenance(settings: dict, models: list[dict], seed: int | None = 0) -> dict:
    """What goes next to every table and figure: models (with fingerprints), settings, seed, versions, runtime."""
    keep = ("spec", "family", "model_type", "fingerprint", "gate", "gate_position", "gate_layout", "dtype",
            "device", "n_layers", "n_heads", "n_kv_heads", "d_head", "attention_layers")
    return {"models": [{k: m.get(k) for k in keep} for m in models], "settings": settings, "seed": seed,
            "versions": versions(), "runtime": runtime()}


def is_output_folder(folder: Path) -> bool:
    """Whether `folder` may receive gatelens' files: it holds nothing visible, or an earlier gatelens output (a JSON
    with provenance naming gatelens' version, as every command writes)."""
    visible = [p for p in Path(folder).iterdir() if not p.name.startswith(".")]
    return not visible or any(_is_gatelens_json(p) for p in visible if p.suffix == ".json" and p.is_file())


def _is_gatelens_json(path: Path) -> bool:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    prov = obj.get("provenance") if isinstance(obj, dict) else None
    versions = prov.get("versions") if isinstance(prov, dict) else None
    return isinstance(versions, dict) and "gatelens" in versions


def markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(format(v, floatfmt) if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


class Writer:
    """Collects files in a staging folder; `commit` moves them into `out` together."""

    def __init__(self, staging: Path):
        self.staging, self.names = staging, []

    def path(self, name: str) -> Path:
        self.names.append(name)
        return self.staging / name

    def table(self, stem: str, df: pd.DataFrame, caption: str | None = None) -> None:
        """CSV and Markdown; the Markdown opens with `caption` (what was measured) when given."""
        df.to_csv(self.path(f"{stem}.csv"), index=False, float_format="%.6g", lineterminator="\n")
        self.path(f"{stem}.md").write_text((f"{caption}\n\n" if caption else "") + markdown(df))

    def json(self, name: str, obj: dict) -> None:
        self.path(name).write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")

    def html(self, stem: str, page: str) -> None:
        """An interactive view (gatelens.views): one self-contained page."""
        self.path(f"{stem}.html").write_text(page, encoding="utf-8")

    def figure(self, stem: str, fig) -> None:
        import matplotlib.pyplot as plt

        fig.savefig(self.path(f"{stem}.png"), dpi=150, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(self.path(f"{stem}.pdf"), bbox_inches="tight", metadata={"CreationDate": None})
        plt.close(fig)


@contextmanager
def writing(out: str | Path):
    """`with writing(dir) as w: w.table(...)`: all files appear in `dir` only if the block succeeds; if it fails,
    the folders it made for them are removed too."""
    out = Path(out)
    made = [p for p in (out, *out.parents) if not p.exists()]   # deepest first
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".partial-"))
    done = False
    try:
        w = Writer(staging)
        yield w
        for name in w.names:
            os.replace(staging / name, out / name)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in [] if done else made:
            try:
                folder.rmdir()   # only while empty: never a file someone else put there
            except OSError:
                break


def write_all(out: str | Path, fill: Callable[[Writer], None]) -> list[str]:
    with writing(out) as w:
        fill(w)
    return [str(Path(out) / n) for n in w.names]
