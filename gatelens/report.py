"""Writing results: CSV + Markdown tables and a JSON with fingerprint, versions and settings.

Every output set is written into a temporary folder inside the destination and moved into place
file by file only when all of it was written, so an error never leaves a half-written file (nor a folder
made for the files).
"""

from __future__ import annotations

import json
import os
import platform
import re
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


def output_folder(out: Path | None, command: str, specs) -> Path:
    """The output folder (default results/<command>/<models>), checked before any work: writable, and new, empty or
    gatelens' own earlier output (rewritten in place), so that no file of the user's is ever replaced."""
    from .errors import GatelensError

    out = Path(out) if out is not None else Path("results") / command / "_vs_".join(_safe(s) for s in specs)
    check_writable(out)
    if out.is_dir() and not is_output_folder(out):
        raise GatelensError(f"--out {out} is a folder of other files, not gatelens output; give a new or empty folder")
    return out


def _safe(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(spec).name or spec)


def check_writable(out: Path) -> None:
    """Fail before the work if `out` cannot become a folder we can write into."""
    from .errors import GatelensError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GatelensError(f"--out {out} is a file; give a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise GatelensError(f"cannot write to {out} ({probe} is not writable); choose another --out")
    try:  # permissions are not the whole story (read-only file systems, /proc, quotas): try it
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise GatelensError(f"cannot write to {out} ({probe}: {e.strerror or e}); choose another --out") from None


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


def result_files(command: str, result, models: list[dict], *, extra: dict | None = None, caption: str | None = None,
                 html: bool = False) -> tuple[dict, Callable[[Writer], None]]:
    """A one-result command's JSON payload and the writer of its files: the result's tables (the Markdown captioned
    with what was measured: by default the title of its terminal view and the model's fingerprint), its figures, its
    per-head views (`html`) and `<command>.json` with provenance."""
    from . import plots

    view = result.display()
    if caption is None and isinstance(view, dict) and view.get("title"):
        caption = f"{view['title']}; model fingerprint {models[0]['fingerprint']}"

    payload = {**result.to_dict(), **(extra or {}), "provenance": provenance(result.settings, models)}

    def fill(w: Writer) -> None:
        for stem, df in result.tables().items():
            w.table(stem, df, caption)
        for stem, fig in plots.figures(result).items():
            w.figure(stem, fig)
        if html:
            from .views import head_results, heads_html

            for part in head_results(result):
                w.html(f"{part.__class__.__name__.removesuffix('Result').lower()}_heads", heads_html(part))
        w.json(f"{command}.json", payload)

    return payload, fill


def attn_map_files(maps: list, heads: dict, *, layer: int, head: int | None, seq_len: int, bos: bool,
                   text: str | None, log: bool | None = None) -> tuple[dict, Callable[[Writer], None]]:
    """`attn-map`'s JSON payload (each model's first-token share of the one sequence mapped) and the writer of its
    files: the figure, each model's pattern as CSV, the interactive view of every head of the layer (`heads`, by
    model name, from `patterns.attn_maps(every_head=True)`) and the JSON."""
    from .plots.attention import attention_figure
    from .views import attention_html

    n = max(mp.n_tokens for mp in maps)  # what was mapped: a short --prompt gives fewer tokens than --seq-len
    measured = {"seq_len": n, **({"seq_len_asked": seq_len} if n < seq_len else {})}
    payload = {"layer": layer, "head": head, **measured,
               "first_token_share": {mp.model["spec"]: mp.first_token_share for mp in maps},
               "provenance": provenance({"layer": layer, "head": head, **measured, "bos": bos,
                                         "text": (text or "default data")[:200]}, [mp.model for mp in maps])}
    stem = f"attn_map_L{layer}" + ("_mean" if head is None else f"_H{head}")

    def fill(w: Writer) -> None:
        w.figure(stem, attention_figure(maps, log=log, text=(text or "")[:80]))
        for mp in maps:
            name = Path(mp.model["spec"]).name
            pd.DataFrame(mp.pattern.numpy()).to_csv(w.path(f"{stem}_{name}.csv"), index=False, float_format="%.6g")
        for name, every in heads.items():
            w.html(f"attn_map_L{layer}_{name}", attention_html(every))
        w.json(f"{stem}.json", payload)

    return payload, fill


def sink_sweep_files(results: list, model: dict, asked: list[int]) -> tuple[dict, Callable[[Writer], None]]:
    """`gatelens sink` over several lengths: the JSON (F-Attn by length, every length's result, provenance with the
    lengths measured and, where a short text gave less, those asked) and the writer of each length's tables and
    heatmaps, the per-layer and per-length figures and the length table."""
    from .metrics.sink import length_frame
    from .plots import sink as plots

    measured = [r.settings["seq_len"] for r in results]   # a short text gives shorter sequences than asked
    prov = provenance({"seq_lens": measured, **({"seq_lens_asked": asked} if measured != asked else {}),
                       **results[-1].settings}, [model])
    payload = {"f_attn": {r.settings["seq_len"]: r.f_attn for r in results},
               "lengths": [{"seq_len": r.settings["seq_len"], **r.to_dict()} for r in results], "provenance": prov}

    def fill(w: Writer) -> None:
        for r in results:
            n = r.settings["seq_len"]
            for stem, df in r.tables().items():
                w.table(f"{stem}_{n}", df)
            w.figure(f"sink_heatmap_{n}", plots.heatmap(r))
            if r.learned_sink is not None:
                w.figure(f"learned_sink_heatmap_{n}", plots.learned_sink_heatmap(r))
        w.figure("sink_layers", plots.per_layer(results))
        w.table("sink_lengths", length_frame(results))
        w.figure("sink_lengths", plots.per_length(results))
        w.json("sink.json", payload)

    return payload, fill


def comparison_files(c) -> tuple[dict, Callable[[Writer], None]]:
    """`gatelens compare`'s JSON (the table's rows, settings, every model's details, provenance) and the writer of
    the table (captioned with what was measured), the metrics' comparison figures and the JSON."""
    from . import plots

    payload = {**c.to_dict(), "provenance": provenance(c.settings, [r.info for r in c.results])}

    def fill(w: Writer) -> None:
        w.table("compare", c.to_frame(), f"gatelens compare: {c.what()}")
        for stem, fig in plots.figures(c).items():
            w.figure(stem, fig)
        w.json("compare.json", payload)

    return payload, fill
