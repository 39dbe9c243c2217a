"""What the command line prints: results' terminal views as rich tables, progress bars on stderr, the library's
logged notes as `note:` lines, and JSON for scripts. Presentation only: every table here is made from a result
(or rows) the library already computed; nothing here measures or writes files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

out_console = Console()
err_console = Console(stderr=True)

PAPER = ("Paper (15B MoE, 400B tokens): baseline F-Attn 0.467, M-Act 1053, PPL 6.026; "
         "elementwise G1 0.048, 94, gate 0.116, PPL 5.761; headwise G1 0.073, 98, gate 0.172.")


def progress(what: str, *fields: TextColumn) -> Progress:
    return Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), *fields, TimeRemainingColumn(),
                    console=err_console, transient=True)


def note(text: str) -> None:
    err_console.print(f"note: {escape(text)}", highlight=False, soft_wrap=True)


def error(text: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


class _Notes(logging.Handler):
    """The library's warnings (a stray weight file not read, a text shorter than asked ...) as `note:` lines on
    stderr: it logs, the command line prints."""

    def emit(self, record: logging.LogRecord) -> None:
        note(record.getMessage())


def show_notes() -> None:
    log = logging.getLogger("gatelens")
    if not any(isinstance(h, _Notes) for h in log.handlers):
        log.addHandler(_Notes(logging.WARNING))


def emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def wrote(files: list[str], out) -> None:
    out_console.print(f"wrote {len(files)} files to {out}/")


def fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return ""
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:.4g}"
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"
    return "" if v is None else str(v)


def show(view: dict) -> None:
    """Print a result's `display()`: a table of its per-layer columns, the model row, and its notes."""
    table = Table(title=view["title"])
    cols = view["columns"]
    for label in cols.values():
        table.add_column(label, justify="right")
    for row in view["frame"].to_dict(orient="records"):
        table.add_row(*[fmt(row.get(c)) for c in cols])
    if view.get("total"):
        table.add_section()
        table.add_row(*[fmt(view["total"].get(c, "")) for c in cols], style="bold")
    out_console.print(table)
    for line in view.get("notes", []):
        out_console.print(line)


def show_comparison(c, what: str) -> None:
    """`compare`'s table: one column per model (a shared name prefix said once in the title), one row per metric
    column of the registry, each value with its ratio to the baseline; then the notes and the paper's numbers."""
    df = c.to_frame()
    names = [Path(m).name or m for m in df["model"]]
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind("-") + 1] if len(names) > 2 else ""  # ablate-none, ablate-value -> none, value
    table = Table(title=f"gatelens compare: {what}" + (f"; models {prefix}*" if prefix else ""))
    table.add_column("metric")
    for name in names:
        table.add_column(name[len(prefix):], justify="right", overflow="fold")
    for key, label in c.labels().items():
        ratio = df.get(f"{key}_ratio")
        cells = [fmt(v) + ("" if ratio is None or i == 0 or ratio.iloc[i] != ratio.iloc[i] or ratio.iloc[i] is None
                           else f" ({ratio.iloc[i]:.2f}x)") for i, v in enumerate(df[key])]
        table.add_row(label, *cells)
    out_console.print(table)
    if c.settings.get("tokenizers_differ"):
        out_console.print("the models have different tokenizers: their perplexities are not comparable (no ratio)")
    for line in c.notes():
        out_console.print(line)
    out_console.print(PAPER)


def show_zoo(rows: list[dict]) -> None:
    wide = out_console.width >= 120  # else the descriptions follow the table, so no name is ever cut
    table = Table(title="gatelens zoo (load any of these by name)")
    for col in ("name", "gate", "params", "F-Attn") + (("kind", "what it is") if wide else ()):
        table.add_column(col, no_wrap=col != "what it is", ratio=1 if col == "what it is" else None,
                         justify="right" if col in ("params", "F-Attn") else "left")
    for r in rows:
        n = r["params"]
        params = f"{n:,}" if wide else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"
        cells = [r["name"], r["gate"], params, "" if r.get("f_attn") is None else f"{r['f_attn']:.3f}"]
        table.add_row(*cells, *([r["kind"], r["description"]] if wide else []))
    out_console.print(table)
    if not wide:
        for r in rows:
            out_console.print(f"[bold]{r['name']}[/bold] ({r['kind']}): {escape(r['description'])}", highlight=False)


def show_cache(root, entries: list[dict], cleared: bool) -> None:
    total = sum(e["bytes"] for e in entries)
    table = Table(title=f"gatelens cache: {root} (set GATELENS_CACHE to move it)")
    for col in ("kind", "name", "size"):
        table.add_column(col, justify="right" if col == "size" else "left", overflow="fold")
    for e in entries:
        table.add_row(e["kind"], e["name"], f"{e['bytes'] / 2**20:,.1f} MiB")
    out_console.print(table)
    out_console.print(f"{'removed' if cleared else 'total'}: {len(entries)} entries, {total / 2**20:,.1f} MiB"
                      + ("" if cleared or not entries else "; `gatelens cache --clear` removes them"))


def show_scan(scan: dict) -> None:
    """`gatelens models --scan-gates`: which modeling folders gate an attention output, and any gatelens misses."""
    n, missing = len(scan["gated"]), scan["unrecognised"]
    if missing:
        names = "; ".join(f"{f} ({', '.join(c)})" for f, c in missing.items())
        out_console.print(f"transformers {scan['transformers']}: {n} modeling folders multiply an attention output "
                          f"by a sigmoid; not recognised: {names}. Add a GateReader to gatelens/models/discover.py "
                          "(GATED), then check it with `gatelens models --types T`", highlight=False, soft_wrap=True)
    else:
        out_console.print(f"transformers {scan['transformers']}: {n} modeling folders multiply an attention output "
                          "by a sigmoid; gatelens recognises every one", highlight=False, soft_wrap=True)


def coverage_line(row) -> None:
    err_console.print(f"{row.model_type:<28} {row.status:<4} {escape(row.reason[:90])}", highlight=False)


def show_training(summary: dict, gate: str, out: str) -> None:
    out_console.print(f"trained {gate} model: {summary.get('tokens', 0):,} tokens, final val loss "
                      f"{summary.get('final_val_loss', float('nan')):.4f}, F-Attn "
                      f"{summary.get('final_f_attn', float('nan')):.4f}")
    out_console.print(f"saved to {out}/ (load it with: gatelens sink {out})")


def show_bench(df, settings: dict, columns: dict) -> None:
    show({"title": f"gatelens bench: {settings['model']} on {settings['machine']}", "frame": df, "columns": columns})


def show_attn_maps(maps: list, layer: int, head: int | None) -> None:
    """Each model's first-token share, said to be of the one sequence mapped (F-Attn averages many)."""
    for mp in maps:
        out_console.print(f"{mp.model['spec']}: layer {layer} {'mean over heads' if head is None else f'head {head}'}: "
                          f"first-token share {mp.first_token_share:.3f} of this one sequence ({mp.n_tokens} tokens, "
                          "queries >= 1; `gatelens sink` averages many)")
