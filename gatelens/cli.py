"""The `gatelens` command line: each command parses options, calls the library, writes, prints.

The measuring options (text, sequences, batching, device, output) are declared once, in `Measuring`, and
added to every measuring command by `@measuring`; each result knows its own tables (`tables()`), terminal
view (`display()`) and figures (`plots.<metric>.figures`). Errors a user can fix arrive as GatelensError
and are printed as one line (exit code 2).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional, get_args, get_type_hints

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import GatelensError
from .models.gate_kinds import GATES
from .options import HEADS, LAYERS, SEQ_LENS, ListOption



def _untyped_flags(params: list) -> list:
    """Help as the ecosystem writes it: a flag shows no type (click's style, not typer 0.29's `<bool>`)."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


class _Command(typer.core.TyperCommand):
    def get_params(self, ctx):
        return _untyped_flags(super().get_params(ctx))


class _Group(typer.core.TyperGroup):
    def get_params(self, ctx):
        return _untyped_flags(super().get_params(ctx))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """A usage mistake (bad value, unknown option, missing argument) is one line on stderr, exit 2, like
        every other user mistake, instead of click's boxed usage message."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            print("aborted", file=sys.stderr)
            sys.exit(1)
        except typer.TyperException as e:  # typer's own click: UsageError, BadParameter, NoSuchOption ...
            if not hasattr(e, "format_message"):
                raise
            where = e.ctx.command_path if getattr(e, "ctx", None) is not None else "gatelens"
            cause = e.__cause__  # a list option's own one line (gatelens.options), as every GatelensError reads
            message = " ".join((str(cause) if isinstance(cause, GatelensError) else e.format_message()).split())
            print(f"error: {message} (see `{where} --help`)", file=sys.stderr)
            sys.exit(getattr(e, "exit_code", 2))
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=_Group,
                  help="Measure what a sigmoid gate after SDPA changes inside a language model.")


def command(name: str):
    """`@app.command(name)` with gatelens' help style."""
    return app.command(name, cls=_Command)


out_console = Console()
err_console = Console(stderr=True)

DEVICES = "cpu, cuda, cuda:N or auto (accelerate device map)"
DTYPES = ("float32", "bfloat16", "float16")
DATASETS = ("eval_sample",)  # gatelens.data.DATASETS, without importing torch (tests check they agree)
BENCH_METHODS = ("bare", "sink", "massive", "gates", "norms", "heads", "all", "tl_cache", "eager")  # bench.METHODS
METHODS = ListOption("--methods", str, "passes", choices=BENCH_METHODS, example="bare,sink",
                     omitted="every pass is timed")
TYPES = ListOption("--types", str, "model types", example="llama,qwen3", omitted="every type is checked")

# Options shared by many commands, declared once so they mean the same everywhere.
Model = Annotated[str, typer.Argument(help="zoo name, smollm2-135m, checkpoint folder, .gguf file or hub id")]
TextFile = Annotated[Optional[Path], typer.Option("--text", help="UTF-8 text file to measure on")]
Dataset = Annotated[Optional[str], typer.Option("--dataset", metavar="[" + "|".join(DATASETS) + "]",
                                                help="shipped dataset (default: the model's own evaluation data)")]
SeqLen = Annotated[tuple, typer.Option("--seq-len", metavar="N[,N...]", parser=SEQ_LENS.typer(),
                                       help="tokens per sequence; a comma list sweeps lengths (sink)")]
NSeqs = Annotated[int, typer.Option("--n-seqs", min=1, help="number of sequences")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="sequences per forward pass")]
Device = Annotated[str, typer.Option("--device", metavar="[cpu|cuda|cuda:N|auto]", help=DEVICES)]
Dtype = Annotated[str, typer.Option("--dtype", metavar="[" + "|".join(DTYPES) + "]", help="weights and activations")]
Bos = Annotated[bool, typer.Option("--bos/--no-bos", help="prepend the model's BOS token to each sequence")]
Out = Annotated[Optional[Path], typer.Option("--out", help="output folder (default results/<command>/<model>)")]
Json = Annotated[bool, typer.Option("--json", help="print one JSON object to stdout and nothing else there")]
Revision = Annotated[Optional[str], typer.Option("--revision", help="hub ids: branch, tag or commit to load")]
Html = Annotated[bool, typer.Option("--html", help="also write interactive views (self-contained HTML, offline)")]


@dataclass
class Measuring:
    """The options of every measuring command (sink, massive, gates, rank, compare)."""

    text: TextFile = None
    dataset: Dataset = None
    seq_len: SeqLen = "256"
    n_seqs: NSeqs = 8
    batch_size: BatchSize = 4
    device: Device = "cpu"
    dtype: Dtype = "float32"
    bos: Bos = True
    out: Out = None
    json_out: Json = False
    revision: Revision = None
    html: Html = False

    def __post_init__(self):
        if isinstance(self.seq_len, str):  # built in code rather than by Typer, which parses it already
            self.seq_len = SEQ_LENS.parse(self.seq_len)
        check_device(self.device)
        check_dtype(self.dtype)

    def lengths(self) -> list[int]:
        return list(self.seq_len)

    def length(self) -> int:
        lens = self.lengths()
        if len(lens) != 1:
            raise GatelensError("this command takes one --seq-len; sweeps are for `gatelens sink`")
        return lens[0]

    def output(self, command: str, *specs: str) -> Path:
        return output_folder(self.out, command, specs)

    def load(self, spec: str):
        from . import measure

        return measure.as_loaded(spec, device=_device(self.device), dtype=self.dtype, revision=self.revision)

    def inputs(self, loaded, seq_len: int | None = None, check: Callable | None = None):
        """The command's sequences; `check(inputs)` refuses what the text really gave before the note on it."""
        one = None if check is None else (lambda xs: check(xs[0]))
        return self.sweep_inputs(loaded, [seq_len or self.length()], one)[0]

    def sweep_inputs(self, loaded, lengths: list[int], check: Callable | None = None) -> list:
        """The inputs at each length; `check(inputs)` may refuse them before any note is printed."""
        from . import measure

        inputs = [measure.prepare_inputs(loaded, text_file=str(self.text) if self.text else None,
                                         dataset=self.dataset, seq_len=n, n_seqs=self.n_seqs, bos=self.bos)
                  for n in lengths]
        if check is not None:
            check(inputs)
        for i in inputs:
            if i.shortfall:  # fewer or shorter sequences than asked: said once, here, for every command
                err_console.print(f"note: {escape(i.shortfall)}", highlight=False, soft_wrap=True)
        return inputs


def measuring(fn: Callable) -> Callable:
    """Add the `Measuring` options to a command's signature; the command receives them as `opts`."""
    hints = get_type_hints(Measuring, include_extras=True)
    extra = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
             for f in fields(Measuring)]
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "opts"]

    @wraps(fn)
    def wrapper(*args, **kwargs):
        opts = Measuring(**{p.name: kwargs.pop(p.name) for p in extra})
        return fn(*args, opts=opts, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + extra)
    wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
    return wrapper


def output_folder(out: Path | None, command: str, specs) -> Path:
    """The output folder (default results/<command>/<models>), checked before any work: writable, and new, empty or
    gatelens' own earlier output (rewritten in place), so that no file of the user's is ever replaced."""
    from .report import is_output_folder

    out = out or Path("results") / command / "_vs_".join(_safe(s) for s in specs)
    check_writable(out)
    if out.is_dir() and not is_output_folder(out):
        raise GatelensError(f"--out {out} is a folder of other files, not gatelens output; give a new or empty folder")
    return out


def check_table_out(out: Path) -> None:
    """`gatelens models --out`: a Markdown file (its rows are written beside it as .json), checked before the sweep:
    not a folder, a .md file whose .json is no folder, in a folder we can write, and not a file gatelens did not
    write."""
    from .coverage import read_rows

    if out.is_dir():
        raise GatelensError(f"--out {out} is a folder; give the Markdown file to write, e.g. {out / 'MODELS.md'}")
    if out.suffix.lower() != ".md":
        raise GatelensError(f"--out {out}: give a Markdown file ending in .md (its rows go to the .json beside it)")
    if out.with_suffix(".json").is_dir():
        raise GatelensError(f"--out {out}: {out.with_suffix('.json')} is a folder, where the table's .json goes; "
                            "choose another --out")
    check_writable(out.parent)
    rows = out.with_suffix(".json")
    for taken in (p for p in (out, rows) if p.exists()):
        try:
            read_rows(rows)
        except (GatelensError, OSError):
            raise GatelensError(f"--out {out}: {taken} exists and is not a table of `gatelens models`; "
                                "choose another --out") from None


def _safe(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(spec).name or spec)


def check_device(device: str) -> str:
    if not re.fullmatch(r"cpu|auto|cuda(:\d+)?|mps", device):
        raise GatelensError(f"--device {device!r}: use {DEVICES}")
    return device


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise GatelensError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return dtype


def check_writable(out: Path) -> None:
    """Fail before the work if `out` cannot become a folder we can write into."""
    if out.exists() and not out.is_dir():
        raise GatelensError(f"--out {out} is a file; give a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise GatelensError(f"cannot write to {out} ({probe} is not writable); choose another --out")
    import tempfile

    try:  # permissions are not the whole story (read-only file systems, /proc, quotas): try it
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise GatelensError(f"cannot write to {out} ({probe}: {e.strerror or e}); choose another --out") from None


def _quiet_libraries() -> None:
    """transformers' warnings and progress bars off, by environment (read when transformers is first imported,
    so a command that never loads a model never imports it)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF dequantizer draws its own tqdm bar
    if "transformers" in sys.modules:  # a notebook or test that imported it first
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


class _Notes(logging.Handler):
    """The library's warnings (a stray weight file not read ...) as `note:` lines on stderr: it logs, the CLI prints."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"note: {escape(record.getMessage())}", highlight=False, soft_wrap=True)


def _show_notes() -> None:
    log = logging.getLogger("gatelens")
    if not any(isinstance(h, _Notes) for h in log.handlers):
        log.addHandler(_Notes(logging.WARNING))


def user_errors(fn: Callable) -> Callable:
    """Turn GatelensError (and out-of-memory) into one line on stderr and exit code 2."""
    own = inspect.signature(fn).parameters  # the command's options: a message names only those it has

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            _quiet_libraries()
            _show_notes()
            return fn(*args, **kwargs)
        except GatelensError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except MemoryError:
            smaller = " or ".join(f"--{n.replace('_', '-')}" for n in ("batch_size", "seq_len") if n in own)
            fix = f"use a smaller {smaller}" if smaller else "close other programs"
            err_console.print(f"[bold red]error:[/] out of memory; {fix}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:  # its message, if any, says what was kept (train's checkpoint)
            err_console.print(f"interrupted; {escape(str(e)) or 'nothing was written'}")
            raise typer.Exit(130) from None

    return wrapper


def progress(what: str):
    return Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, transient=True)


def _device(device: str) -> str:
    """Under torchrun (WORLD_SIZE > 1) each rank joins the group and takes its own GPU (or the CPU)."""
    from . import distributed

    return distributed.init_from_env() or device


def _write(out: Path, fill, payload: dict, json_out: bool) -> list[str] | None:
    """Write a command's files (all or nothing); with --json print the payload.
    None: nothing left to print (JSON mode, or a torchrun rank other than 0, which neither writes nor prints)."""
    from . import distributed, report

    if distributed.rank() != 0:
        return None
    files = report.write_all(out, fill)
    if json_out:
        emit_json({**payload, "files": files})
        return None
    return files


def run_metric(name: str, loaded, inputs, opts: Measuring, **probe_options):
    """One metric of the registry on `inputs`, under a progress bar over sequences (on stderr)."""
    from . import measure
    from .metrics import METRICS

    with progress(f"{name} {loaded.info.spec} @ {inputs.seq_len}") as bar:
        task = bar.add_task("", total=len(inputs.seqs))
        return measure.run_probes(loaded, [METRICS[name](**probe_options)], inputs, batch_size=opts.batch_size,
                               on_batch=lambda k: bar.advance(task, k))[0]


def publish(command: str, loaded, result, opts: Measuring, out: Path, extra: dict | None = None) -> None:
    """A one-result command's outputs: its tables, figures (the result's own) and JSON; then the terminal view."""
    from . import report

    payload = {**result.to_dict(), **(extra or {}),
               "provenance": report.provenance(result.settings, [loaded.info.to_dict()])}

    view = result.display()
    caption = (f"{view['title']}; model fingerprint {loaded.info.fingerprint}"
               if isinstance(view, dict) and view.get("title") else None)

    def fill(w):
        for stem, df in result.tables().items():
            w.table(stem, df, caption)
        for stem, fig in result.figures().items():
            w.figure(stem, fig)
        if opts.html:
            from .views import heads_html

            for part in _head_results(result):
                w.html(f"{part.__class__.__name__.removesuffix('Result').lower()}_heads", heads_html(part))
        w.json(f"{command}.json", payload)

    files = _write(out, fill, payload, opts.json_out)
    if files is not None:
        show(view)
        out_console.print(f"wrote {len(files)} files to {out}/")


def _head_results(result) -> list:
    """The per-head results inside a command's result (itself, or the parts of a composite such as `sinks`)."""
    from .metrics.base import HeadResult

    parts = [result] + [v for v in vars(result).values() if isinstance(v, HeadResult)]
    return [p for p in parts if isinstance(p, HeadResult) and p.layers]


def emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def show(view: dict) -> None:
    """Print a result's `display()`: a table of its per-layer columns, the model row, and its notes."""
    table = Table(title=view["title"])
    cols = view["columns"]
    for label in cols.values():
        table.add_column(label, justify="right")
    for row in view["frame"].to_dict(orient="records"):
        table.add_row(*[_fmt(row.get(c)) for c in cols])
    if view.get("total"):
        table.add_section()
        table.add_row(*[_fmt(view["total"].get(c, "")) for c in cols], style="bold")
    out_console.print(table)
    for note in view.get("notes", []):
        out_console.print(note)


def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return ""
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:.4g}"
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"
    return "" if v is None else str(v)


def version_callback(value: bool) -> None:
    if value:
        from . import __version__

        out_console.print(f"gatelens {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                               help="print the version and exit")] = False):
    """Measure what a sigmoid gate after SDPA changes inside a language model."""


Eps = Annotated[float, typer.Option("--eps", help="sink-rate threshold on the key-0 share, in (0, 1)")]


@command("sink")
@user_errors
@measuring
def sink_cli(model: Model, eps: Eps = 0.3, *, opts: Measuring):
    """First-token attention share (F-Attn) per layer and head, and the sink rate."""
    from . import report
    from .metrics.sink import check_eps, length_frame
    from .plots import sink as plots

    check_eps(eps)
    lens = opts.lengths()
    out = opts.output("sink", model)
    loaded = opts.load(model)
    inputs = opts.sweep_inputs(loaded, lens, check=lambda xs: check_distinct(opts.seq_len, xs))
    results = [run_metric("sink", loaded, i, opts, eps=eps) for i in inputs]
    if len(results) == 1:
        return publish("sink", loaded, results[0], opts, out)
    measured = [r.settings["seq_len"] for r in results]   # a short text gives shorter sequences than asked
    prov = report.provenance({"seq_lens": measured, **({"seq_lens_asked": lens} if measured != lens else {}),
                              **results[-1].settings}, [loaded.info.to_dict()])
    payload = {"f_attn": {r.settings["seq_len"]: r.f_attn for r in results},
               "lengths": [{"seq_len": r.settings["seq_len"], **r.to_dict()} for r in results], "provenance": prov}

    def fill(w):
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

    files = _write(out, fill, payload, opts.json_out)
    if files is not None:
        for r in results:
            show(r.display())
        out_console.print(f"wrote {len(files)} files to {out}/")


def check_distinct(asked: str, inputs: list) -> None:
    """A sweep whose text is too short for several of its lengths would measure the same sequences twice."""
    measured = [min(i.seq_len, i.longest) for i in inputs]
    if len(set(measured)) < len({i.seq_len for i in inputs}):
        raise GatelensError(f"--seq-len {asked}: the text gives at most {max(measured)} tokens per sequence, so "
                            f"several lengths would measure the same {max(measured)}; sweep lengths up to it")


@command("sinks")
@user_errors
@measuring
def sinks_cli(model: Model,
              top_k: Annotated[int, typer.Option(min=1, help="top keys per layer and head")] = 5,
              min_queries: Annotated[Optional[int], typer.Option(
                  min=1, help="rank only keys seen by at least this many queries (default: a quarter of the "
                              "sequence's)")] = None,
              eps: Eps = 0.3, *, opts: Measuring):
    """Which tokens are sinks (attention received per key, top keys, sink tokens, Gu et al.'s sink score of every
    position) and what they contribute (value norms, norm-weighted F-Attn)."""
    from .metrics.received import check_received_options
    from .metrics.sink import check_eps
    from .sinks import sinks

    check_received_options(top_k, min_queries, opts.length())
    check_eps(eps)
    out = opts.output("sinks", model)
    loaded = opts.load(model)
    inputs = opts.inputs(loaded, check=lambda i: check_received_options(top_k, min_queries, i.longest))  # short text
    with progress(f"sinks {loaded.info.spec} @ {inputs.seq_len}") as bar:
        task = bar.add_task("", total=len(inputs.seqs))
        r = sinks(loaded, inputs, top_k=top_k, min_queries=min_queries, eps=eps, batch_size=opts.batch_size,
                  on_batch=lambda k: bar.advance(task, k))
    publish("sinks", loaded, r, opts, out)


ABLATIONS = ("sink", "sink-value", "gate-mean", "gate-one", "head", "massive-zero", "massive-mean")  # ablate.WHAT, no torch


@command("ablate")
@user_errors
@measuring
def ablate_cli(model: Model,
               what: Annotated[str, typer.Option("--what", metavar="[" + "|".join(ABLATIONS) + "]",
                                                 help="remove the sink (key 0 masked), its value, replace the "
                                                      "gate by its mean over tokens / by 1, zero --heads, or set the "
                                                      "massive activations to zero / their mean (Sun et al. 2024)")
                     ] = "sink",
               layers: Annotated[Optional[tuple], typer.Option(
                   "--layers", metavar="each|all|N[,N...]", parser=LAYERS.typer(),
                   help="each layer alone then all at once (each, default), all at once only, or these layers "
                        "one at a time")] = None,
               heads: Annotated[Optional[tuple], typer.Option(
                   "--heads", metavar="H[,H...]", parser=HEADS.typer(),
                   help="with --what head: the heads zeroed in each of --layers (each alone, then together)")] = None,
               *, opts: Measuring):
    """Causal tests, one forward each: loss change, F-Attn and M-Act with the sink or the gate ablated."""
    from .ablate import ablate, check_measurable, parse_layers

    if what not in ABLATIONS:
        raise GatelensError(f"--what {what!r}: use one of {', '.join(ABLATIONS)}")
    chosen, whole = parse_layers(layers)
    head_list = None if heads is None else list(heads)
    out = opts.output("ablate", model)
    loaded = opts.load(model)
    inputs = opts.inputs(loaded, check=lambda i: check_measurable(what, i))
    with progress(f"ablate {what} {loaded.info.spec}") as bar:
        def on_run(name):
            task = bar.add_task(name, total=len(inputs.seqs))
            return lambda k: bar.advance(task, k)

        r = ablate(loaded, what, chosen, all_layers=whole, inputs=inputs, batch_size=opts.batch_size, on_run=on_run,
                   heads=head_list)
    publish("ablate", loaded, r, opts, out)


@command("massive")
@user_errors
@measuring
def massive_cli(model: Model,
                top_k: Annotated[int, typer.Option(min=1, help="top activations per layer")] = 5,
                abs_threshold: Annotated[float, typer.Option(help="massive if |h| above this ...")] = 100.0,
                ratio: Annotated[float, typer.Option(help="... and above this x the layer median")] = 1000.0,
                *, opts: Measuring):
    """Massive activations: per-layer max |hidden| with position, token and channel (M-Act)."""
    from .metrics.massive import check_thresholds

    check_thresholds(abs_threshold, ratio, top_k)
    out = opts.output("massive", model)
    loaded = opts.load(model)
    r = run_metric("massive", loaded, opts.inputs(loaded), opts, top_k=top_k, abs_threshold=abs_threshold, ratio=ratio)
    publish("massive", loaded, r, opts, out)


@command("gates")
@user_errors
@measuring
def gates_cli(model: Model, *, opts: Measuring):
    """Gate-score sparsity of a gated model: per layer and head, histograms, query dependence."""
    out = opts.output("gates", model)
    loaded = opts.load(model)
    r = run_metric("gates", loaded, opts.inputs(loaded), opts)
    publish("gates", loaded, r, opts, out, extra={"note": r.note})


@command("norms")
@user_errors
@measuring
def norms_cli(model: Model, *, opts: Measuring):
    """Norms of every token's hidden state, key and value per layer (Gu et al. 2024, Sun et al. 2024): the first
    token against the median, per position and per token string."""
    out = opts.output("norms", model)
    loaded = opts.load(model)
    publish("norms", loaded, run_metric("norms", loaded, opts.inputs(loaded), opts), opts, out)


@command("heads")
@user_errors
@measuring
def heads_cli(model: Model,
              sink_weight: Annotated[float, typer.Option(help="dormant: at least this weight on key 0, in (0, 1]")] = 0.5,
              output_ratio: Annotated[float, typer.Option(
                  help="dormant: output norm below this fraction of the layer's mean head output")] = 0.5,
              *, opts: Measuring):
    """Dormant and active heads (Guo et al. 2024, Sandoval-Segura et al. 2025): per head, the share of queries parked
    on the sink with a small output, first-token weight and output norm, ranked; test one with `ablate --what head`."""
    from .metrics.heads import check_dormant_options

    check_dormant_options(sink_weight, output_ratio)
    out = opts.output("heads", model)
    loaded = opts.load(model)
    r = run_metric("heads", loaded, opts.inputs(loaded), opts, sink_weight=sink_weight, output_ratio=output_ratio)
    publish("heads", loaded, r, opts, out)


@command("measure")
@user_errors
@measuring
def measure_cli(metric: Annotated[str, typer.Argument(help="a registered metric (gatelens' own or another package's)")],
                model: Model, *, opts: Measuring):
    """Any metric of the registry on one model (its tables, figures, JSON and terminal view), those other packages
    register through the `gatelens.metrics` entry-point group included."""
    from .metrics import METRICS, exact_for

    if metric not in METRICS:
        raise GatelensError(f"unknown metric {metric!r}: the registry has {', '.join(METRICS)}")
    cls = METRICS[metric]
    out = opts.output(metric, model)
    loaded = opts.load(model)
    if not cls.applies(loaded):
        raise GatelensError(f"{metric} does not apply to {loaded.info.spec}")
    why = exact_for(cls, loaded)
    if why:
        raise GatelensError(f"{metric} is {why} ({loaded.info.spec}); its module must say it measures that exactly "
                            "(exact_with) before it runs here")
    publish(metric, loaded, run_metric(metric, loaded, opts.inputs(loaded), opts), opts, out)


@command("rank")
@user_errors
@measuring
def rank_cli(model: Model,
             tol: Annotated[float, typer.Option(help="numerical rank: sigma > tol x max, in (0, 1)")] = 1e-3,
             weights_only: Annotated[bool, typer.Option("--weights-only", help="skip the head outputs")] = False,
             *, opts: Measuring):
    """Effective rank of W_V·W_O per head, and of the head outputs (gate on vs linearised)."""
    from . import measure
    from .metrics.rank import check_tol

    check_tol(tol)
    out = opts.output("rank", model)
    loaded = opts.load(model)
    r = measure.rank(loaded, tol=tol, tokens=False) if weights_only else \
        run_metric("rank", loaded, opts.inputs(loaded), opts, tol=tol)
    publish("rank", loaded, r, opts, out)


@command("emergence")
@user_errors
@measuring
def emergence_cli(runs: Annotated[list[str], typer.Argument(
        help="run folders trained with --keep-checkpoints (every checkpoint is measured), or model specs (one point)")],
        *, opts: Measuring):
    """Sink emergence across training (Gu et al. 2024): F-Attn, sink rate, M-Act and mean gate of every checkpoint
    a run kept, against tokens seen; baseline and gated twins on one figure."""
    from . import report
    from .emergence import emergence
    from .plots import emergence as plots

    out = opts.output("emergence", *runs)
    with progress("emergence") as bar:
        def on_checkpoint(run, step, n):
            task = bar.add_task(f"{run} step {step}", total=n)
            return lambda k: bar.advance(task, k)

        r = emergence(runs, seq_len=opts.length(), n_seqs=opts.n_seqs, bos=opts.bos,
                      text_file=str(opts.text) if opts.text else None, dataset=opts.dataset,
                      batch_size=opts.batch_size, device=_device(opts.device), dtype=opts.dtype,
                      on_checkpoint=on_checkpoint)
    payload = {**r.to_dict(), "provenance": report.provenance(r.settings, r.models)}
    view = r.display()

    def fill(w):
        for stem, df in r.tables().items():
            w.table(stem, df, view["title"])
        for stem, fig in plots.figures(r).items():
            w.figure(stem, fig)
        w.json("emergence.json", payload)

    files = _write(out, fill, payload, opts.json_out)
    if files is not None:
        show(view)
        out_console.print(f"wrote {len(files)} files to {out}/")


@command("compare")
@user_errors
@measuring
def compare_cli(models: Annotated[list[str], typer.Argument(help="BASELINE GATED... (first is the baseline)")],
                eps: Eps = 0.3, *, opts: Measuring):
    """The paper's table for any models: F-Attn, sink rate, M-Act, gate score, rank, perplexity."""
    from . import report
    from .compare import compare_models
    from .metrics.sink import check_eps

    if len(models) < 2:
        raise GatelensError("compare needs a baseline and at least one gated model: gatelens compare BASE GATED")
    check_eps(eps)
    n = opts.length()
    out = opts.output("compare", *models)
    with progress("compare") as bar:
        def on_model(name, inputs):
            task = bar.add_task(name, total=len(inputs.seqs))
            return lambda k: bar.advance(task, k)

        c = compare_models(models, text_file=str(opts.text) if opts.text else None, dataset=opts.dataset, seq_len=n,
                           n_seqs=opts.n_seqs, bos=opts.bos, batch_size=opts.batch_size, eps=eps,
                           device=_device(opts.device), dtype=opts.dtype, revision=opts.revision,
                           on_model=on_model)
    df = c.to_frame()
    payload = {**c.to_dict(), "provenance": report.provenance(c.settings, [r.info for r in c.results])}

    what = (f"{c.settings['input']}, {c.settings.get('n_seqs', opts.n_seqs)} x {c.settings.get('seq_len', n)} tokens"
            if not c.settings.get("inputs_differ") else
            "INPUTS DIFFER: " + "; ".join(f"{i['model']} on {i['input']} ({i['n_seqs']} x {i['seq_len']})"
                                          for i in c.settings["inputs"]))

    def fill(w):
        w.table("compare", df, f"gatelens compare: {what}")
        for stem, fig in c.figures().items():
            w.figure(stem, fig)
        w.json("compare.json", payload)

    files = _write(out, fill, payload, opts.json_out)
    if files is None:
        return
    labels = c.labels()
    names = [Path(m).name or m for m in df["model"]]
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind("-") + 1] if len(names) > 2 else ""  # ablate-none, ablate-value -> none, value
    table = Table(title=f"gatelens compare: {what}" + (f"; models {prefix}*" if prefix else ""))
    table.add_column("metric")
    for name in names:
        table.add_column(name[len(prefix):], justify="right", overflow="fold")
    for key, label in labels.items():
        ratio = df.get(f"{key}_ratio")
        cells = [_fmt(v) + ("" if ratio is None or i == 0 or ratio.iloc[i] != ratio.iloc[i] or ratio.iloc[i] is None
                            else f" ({ratio.iloc[i]:.2f}x)") for i, v in enumerate(df[key])]
        table.add_row(label, *cells)
    out_console.print(table)
    if c.settings.get("tokenizers_differ"):
        out_console.print("the models have different tokenizers: their perplexities are not comparable (no ratio)")
    for note in c.notes():
        out_console.print(note)
    out_console.print("Paper (15B MoE, 400B tokens): baseline F-Attn 0.467, M-Act 1053, PPL 6.026; "
                      "elementwise G1 0.048, 94, gate 0.116, PPL 5.761; headwise G1 0.073, 98, gate 0.172.")
    out_console.print(f"wrote {len(files)} files to {out}/")


def _train_option(field: str, text: str, *names: str):
    """A `gatelens train` option for a TrainConfig field; its help ends with the default used when neither the
    option nor the --config file sets the field (the option defaults to None: not given). A field whose default
    is None says in `text` what None means."""
    from dataclasses import MISSING, fields

    from .train.config import TrainConfig

    f = next(f for f in fields(TrainConfig) if f.name == field)
    if f.metadata.get("range") is not None:  # the range the field declares, shown where the option is
        text = f"{text}, {f.metadata['range']}"
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    flag = isinstance(default, bool)
    if flag:
        default = f"--{'' if default else 'no-'}{field.replace('_', '-')}"
    choices = {"gate": GATES, "device": ("cpu", "cuda", "cuda:N", "auto"), "save_dtype": ("float32", "bfloat16")}
    metavar = "" if flag else "[" + "|".join(choices[field]) + "]" if field in choices else None
    return typer.Option(*names, help=text if default in (MISSING, None) else f"{text} (default: {default})",
                        metavar=metavar)


def train_config_from_options(config: Path | None = None, **options):
    """The TrainConfig of `gatelens train`: the --config recipe (if any), then every option given (not None) over it."""
    from .train.config import TrainConfig, read_recipe

    settings = read_recipe(config) if config is not None else {}
    given = {k: v for k, v in options.items() if v is not None}
    if isinstance(given.get("task_params"), str):
        try:
            given["task_params"] = json.loads(given["task_params"])
        except json.JSONDecodeError as e:
            raise GatelensError(f"--task-params is not valid JSON ({e.msg}); example: '{{\"vocab\": 64}}'") from None
        if not isinstance(given["task_params"], dict):
            raise GatelensError("--task-params must be a JSON object; example: '{\"vocab\": 64}'")
    settings.update(given)
    if "out" not in settings:
        raise GatelensError("no output folder: pass --out DIR (or set out in the --config file)")
    cfg = TrainConfig(**settings)   # every field against its declared range, then the files it names
    check_writable(Path(cfg.out))
    return cfg


def train_options(fn: Callable) -> Callable:
    """Add an option for every TrainConfig field to `gatelens train`, made from the field's declaration (type, help,
    range, default): a field added to TrainConfig is an option without a line here. The command receives them as
    `options` (None: not given, so the --config recipe or the field's default holds)."""
    from dataclasses import fields as dc_fields

    from .train.config import TrainConfig

    hints = get_type_hints(TrainConfig)
    cli_type = {dict: str}   # task_params: JSON text on the command line
    params = []
    for f in dc_fields(TrainConfig):
        t = hints[f.name]
        t = next((a for a in get_args(t) if a is not type(None)), t)
        flag = (f"--{f.name.replace('_', '-')}/--no-{f.name.replace('_', '-')}",) if t is bool else ()
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[cli_type.get(t, t)], _train_option(f.name, f.metadata["help"], *flag)]))
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "options"]

    @wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, options={p.name: kwargs.pop(p.name) for p in params}, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + params)
    wrapper.__annotations__ = {p.name: p.annotation for p in own + params}
    return wrapper


@command("train")
@user_errors
@train_options
def train_cli(
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="a recipe: TOML whose keys are TrainConfig fields, e.g. gatelens/zoo/recipes/mech.toml; "
                         "options given here override it")] = None,
    json_out: Annotated[bool, typer.Option("--json", metavar="", help="print the summary as one JSON object")] = False,
    *, options: dict,
):
    """Train a baseline or gated twin (same init, data order and schedule for every --gate), from a --config recipe
    and/or options."""
    from .train.trainer import train

    cfg = train_config_from_options(config, **options)
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("", total=cfg.steps, info="")

        def on_step(step, total, loss, tok_s):
            bar.update(task, completed=step, total=total, info=f"loss {loss:.4f}  {tok_s:,.0f} tok/s")

        summary = train(cfg, on_step=on_step)
    if json_out:
        files = sorted(str(p) for p in Path(cfg.out).rglob("*") if p.is_file())
        return emit_json({**summary, "files": files})
    out_console.print(f"trained {cfg.gate} model: {summary.get('tokens', 0):,} tokens, final val loss "
                      f"{summary.get('final_val_loss', float('nan')):.4f}, F-Attn {summary.get('final_f_attn', float('nan')):.4f}")
    out_console.print(f"saved to {cfg.out}/ (load it with: gatelens sink {cfg.out})")


@command("bench")
@user_errors
def bench_cli(model: Annotated[str, typer.Argument(help="model spec, or random:PRESET (tiny-qwen3, qwen3-1.7b, "
                                                        "qwen3.5-gated-1.7b)")] = "random:tiny-qwen3",
              seq_len: SeqLen = "512,2048,8192", batch_size: BatchSize = 1,
              repeats: Annotated[int, typer.Option(min=1, help="timed runs per cell (the median is reported)")] = 3,
              device: Device = "cpu", dtype: Dtype = "float32",
              quick: Annotated[bool, typer.Option("--quick", help="tiny model, 256 and 1024 tokens, one timed run")] = False,
              methods: Annotated[Optional[tuple], typer.Option(
                  metavar="[" + "|".join(BENCH_METHODS) + "],...", parser=METHODS.typer(),
                  help="comma list of the passes to time (default: all of them)")] = None,
              out: Out = None, json_out: Json = False):
    """Time and peak memory of each gatelens pass against the bare forward, TransformerLens and eager."""
    import pandas as pd

    from . import bench, report
    from .models import random as random_models
    from .models.load import load

    wanted = list(methods) if methods is not None else None
    check_device(device)
    check_dtype(dtype)
    if quick:
        model, seq_len, repeats = "random:tiny-qwen3", (256, 1024), 1
    lens = list(seq_len)
    out = output_folder(out, "bench", [model])
    if model.startswith("random:"):
        spec = str(random_models.build_folder(model.split(":", 1)[1], max_context=max(lens)))
    else:
        spec = model
    loaded = load(spec, device=device, dtype=dtype)
    loaded.info.spec = model
    if max(lens) > (loaded.info.max_context or max(lens)):
        err_console.print(f"note: lengths beyond the model's window ({loaded.info.max_context}) measure cost only")
    bridge = None
    if wanted is None or "tl_cache" in wanted:
        try:
            bridge = loaded.bridge()
        except Exception as e:  # noqa: BLE001 - TransformerLens cannot wrap every model; the row says so
            err_console.print(f"note: TransformerLens bridge unavailable ({escape(str(e).splitlines()[0][:80])})")
    rows = []
    with progress("bench") as bar:
        task = bar.add_task("", total=len(lens) * len(wanted or bench.METHODS))
        bench.bench(loaded, lens, batch=batch_size, repeats=repeats, methods=wanted, bridge=bridge,
                    on_row=lambda r: (rows.append(r), bar.advance(task)))
    df = pd.DataFrame([vars(r) for r in rows])
    settings = {"model": model, "seq_lens": lens, "batch_size": batch_size, "repeats": repeats, "dtype": dtype,
                "device": device, "machine": bench.machine()}
    problem = bench.timing_problem(rows)
    payload = {"rows": df.to_dict(orient="records"), "provenance": report.provenance(settings, [loaded.info.to_dict()]),
               "timing_problem": problem}
    files = _write(out, lambda w: (w.table("bench", df), w.json("bench.json", payload)), payload, json_out)
    if problem:
        err_console.print(f"note: {problem}")
    if files is None:
        return
    show({"title": f"gatelens bench: {model} on {settings['machine']}", "frame": df,
          "columns": {"seq_len": "tokens", "method": "method", "seconds": "seconds (median)",
                      "time_ratio": "time / bare", "peak_mb": "peak MiB", "mem_ratio": "mem / bare",
                      "tokens_per_s": "tokens/s", "note": "note"}})
    out_console.print(f"wrote {len(files)} files to {out}/")


@command("attn-map")
@user_errors
def attn_map_cli(models: Annotated[list[str], typer.Argument(help="one model, or several side by side")],
                 layer: Annotated[int, typer.Option("--layer", help="attention layer index")] = 0,
                 head: Annotated[Optional[int], typer.Option("--head", help="head index; omit for the mean")] = None,
                 text: TextFile = None,
                 prompt: Annotated[Optional[str], typer.Option("--prompt", help="the text itself (instead of --text)")]
                 = None,
                 seq_len: Annotated[int, typer.Option("--seq-len", min=2, help="tokens to show")] = 64, bos: Bos = True,
                 log: Annotated[Optional[bool], typer.Option("--log/--linear", help="colour scale")] = None,
                 max_size: Annotated[int, typer.Option(help="pool longer texts into this many cells")] = 512,
                 device: Device = "cpu", dtype: Dtype = "float32", out: Out = None, json_out: Json = False,
                 html: Annotated[bool, typer.Option(
                     "--html", help="also write an interactive view per model: every head of --layer, hover for "
                                    "tokens and weights, attention received per key (self-contained, offline)")] = False):
    """Attention map of a layer and head (or the head mean) for one text; several models side by side."""
    import pandas as pd

    from . import data, measure, report
    from .patterns import text_map
    from .plots.attention import attention_figure

    if text is not None and prompt is not None:
        raise GatelensError("give --text FILE or --prompt TEXT, not both")
    check_device(device)
    check_dtype(dtype)
    out = output_folder(out, "attn-map", models)
    body = data.read_text(text) if text is not None else prompt
    loaded = [measure.as_loaded(m, device=device, dtype=dtype) for m in models]
    maps = [text_map(lm, body, layer, head, seq_len, bos, max_size) for lm in loaded]
    if html and any(mp.pooled != 1 for mp in maps):
        raise GatelensError(f"--html shows the exact map: give a text of at most --max-size {max_size} tokens "
                            "(or raise --max-size)")
    views = {}
    if html:
        from .views import attention_html

        for lm in loaded:
            every = [text_map(lm, body, layer, h, seq_len, bos, max_size) for h in [None, *range(lm.info.n_heads)]]
            views[Path(lm.info.spec).name] = attention_html(every)
    shares = {mp.model["spec"]: mp.first_token_share for mp in maps}
    n = max(mp.n_tokens for mp in maps)  # what was mapped: a short --prompt gives fewer tokens than --seq-len
    measured = {"seq_len": n, **({"seq_len_asked": seq_len} if n < seq_len else {})}
    payload = {"layer": layer, "head": head, **measured, "first_token_share": shares,
               "provenance": report.provenance({"layer": layer, "head": head, **measured, "bos": bos,
                                                "text": (body or "default data")[:200]}, [mp.model for mp in maps])}
    stem = f"attn_map_L{layer}" + ("_mean" if head is None else f"_H{head}")

    def fill(w):
        w.figure(stem, attention_figure(maps, log=log, text=(body or "")[:80]))
        for mp in maps:
            name = Path(mp.model["spec"]).name
            pd.DataFrame(mp.pattern.numpy()).to_csv(w.path(f"{stem}_{name}.csv"), index=False, float_format="%.6g")
        for name, page in views.items():
            w.html(f"attn_map_L{layer}_{name}", page)
        w.json(f"{stem}.json", payload)

    files = _write(out, fill, payload, json_out)
    if files is None:
        return
    for mp in maps:
        out_console.print(f"{mp.model['spec']}: layer {layer} {'mean over heads' if head is None else f'head {head}'}: "
                          f"first-token share {mp.first_token_share:.3f} of this one sequence ({mp.n_tokens} tokens, "
                          "queries >= 1; `gatelens sink` averages many)")
    out_console.print(f"wrote {len(files)} files to {out}/")


@command("figures")
@user_errors
def figures_cli(config: Annotated[Path, typer.Option("--config", help="models and settings (TOML)")]
                = Path("figures.toml"),
                only: Annotated[Optional[list[str]], typer.Option("--only", help="run just this analysis")] = None,
                json_out: Json = False):
    """Regenerate every paper figure and table (analyses/*.py) into the config's output folder."""
    from .figures import read_config, run_all

    cfg = read_config(config)
    steps = len(only or cfg.analyses) * len(cfg.groups)
    with progress("figures") as bar:
        task = bar.add_task("", total=steps)
        files = run_all(config, only=only, on_step=lambda name, group: bar.advance(task))
    if json_out:
        return emit_json({"out": str(cfg.out), "analyses": list(only or cfg.analyses), "files": files})
    out_console.print(f"wrote {len(files)} files to {cfg.out}/")


@command("models")
@user_errors
def models_cli(out: Annotated[Path, typer.Option("--out", help="Markdown table to write (a .json of the rows "
                                                              "is written beside it)")] = Path("results/MODELS.md"),
               types: Annotated[Optional[tuple], typer.Option("--types", metavar="TYPE[,TYPE...]", parser=TYPES.typer(),
                                                            help="only these model types (default: every one)")] = None,
               merge: Annotated[bool, typer.Option("--merge", help="replace the --types rows in the table already "
                                                   "at --out (its .json) and rewrite it, instead of a table of "
                                                   "only those types")] = False,
               scan_gates: Annotated[bool, typer.Option("--scan-gates", help="only read the installed transformers' "
                                                        "modeling files for sigmoid output gates gatelens does not "
                                                        "recognise (exit 1 if any); nothing is built or written")
                                     ] = False,
               json_out: Json = False):
    """Check every causal-LM type of the installed transformers on a tiny random instance (F-Attn against eager)."""
    import json

    import transformers

    from . import report
    from . import coverage

    if scan_gates:
        if types or merge:
            raise GatelensError("--scan-gates reads the modeling files of every type and writes nothing; "
                                "leave out --types and --merge")
        return _scan_gates_report(json_out)
    check_table_out(out)
    wanted = list(types) if types is not None else None
    known = set(coverage.causal_lm_types()) | set(coverage.PAPER_FORMATS)
    unknown = [t for t in wanted or [] if t not in known]
    if unknown:
        raise GatelensError(f"--types: {', '.join(unknown)} not a causal-LM model type of transformers "
                            f"{transformers.__version__}; `gatelens models` without --types checks every one")
    previous = None
    if merge:
        if not wanted:
            raise GatelensError("--merge replaces the rows of the --types given in an existing table; name them "
                                "(without --merge, `gatelens models` checks every type)")
        if not out.with_suffix(".json").is_file():
            raise GatelensError(f"--merge: no table to merge into at {out.with_suffix('.json')}; run "
                                "`gatelens models` without --merge first")
        previous = coverage.read_rows(out.with_suffix(".json"))

    def line(row):
        if not json_out:
            err_console.print(f"{row.model_type:<28} {row.status:<4} {escape(row.reason[:90])}", highlight=False)

    rows = coverage.sweep(wanted, line)
    import torch

    if previous is not None:
        rows = coverage.merge_rows(previous, rows)

    def fill(w):  # the table and its JSON, both or neither
        w.path(out.name).write_text(coverage.markdown(rows, f"transformers {transformers.__version__}, "
                                                            f"torch {torch.__version__}"))
        w.path(out.with_suffix(".json").name).write_text(json.dumps([r.to_dict() for r in rows], indent=1) + "\n")

    report.write_all(out.parent, fill)
    hf = [r for r in rows if r.model_type not in coverage.PAPER_FORMATS]   # the paper's format is counted apart
    paper = [r for r in rows if r.model_type in coverage.PAPER_FORMATS]
    ok = sum(r.status == "ok" for r in hf)
    paper_ok = sum(r.status == "ok" for r in paper)
    if json_out:
        return emit_json({"ok": ok, "types": len(hf), "paper_ok": paper_ok, "paper_formats": len(paper),
                          "table": str(out), "rows": [r.to_dict() for r in rows]})
    also = f", and {paper_ok} of {len(paper)} paper formats" if paper else ""
    out_console.print(f"{ok} of {len(hf)} model types measured exactly{also}; table in {out}")


def _scan_gates_report(json_out: bool) -> None:
    """`gatelens models --scan-gates`: the maintainer's check before raising coverage.VERIFIED_TRANSFORMERS."""
    from . import coverage

    version = coverage.installed_transformers()
    found = coverage.scan_gates()
    missing = coverage.unrecognised_gates(found)
    if json_out:
        emit_json({"transformers": version, "verified": coverage.VERIFIED_TRANSFORMERS,
                   "gated": found, "unrecognised": missing})
    elif missing:
        names = "; ".join(f"{f} ({', '.join(c)})" for f, c in missing.items())
        out_console.print(f"transformers {version}: {len(found)} modeling folders multiply an "
                          f"attention output by a sigmoid; not recognised: {names}. Add a GateReader to "
                          "gatelens/models/discover.py (GATED), then check it with `gatelens models --types T`",
                          highlight=False, soft_wrap=True)
    else:
        out_console.print(f"transformers {version}: {len(found)} modeling folders multiply an "
                          "attention output by a sigmoid; gatelens recognises every one", highlight=False,
                          soft_wrap=True)
    if missing:
        raise typer.Exit(1)


@command("zoo")
@user_errors
def zoo_cli(json_out: Json = False):
    """List the models shipped inside gatelens."""
    from .models import zoo

    rows = zoo.entries()
    if json_out:
        emit_json({"models": rows})
        return
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


@command("cache")
@user_errors
def cache_cli(clear: Annotated[bool, typer.Option("--clear", help="delete what gatelens wrote in its cache "
                                                  "(its gguf/ and offload/ folders; nothing else)")] = False,
              json_out: Json = False):
    """Show gatelens' cache (dequantized GGUF models, offloaded weights) and its size; --clear empties it."""
    from .models import cache

    root, entries = cache.entries()
    total = sum(e["bytes"] for e in entries)
    if clear:
        cache.clear()
    if json_out:
        return emit_json({"cache": str(root), "entries": entries, "bytes": total, "cleared": clear})
    table = Table(title=f"gatelens cache: {root} (set GATELENS_CACHE to move it)")
    for col in ("kind", "name", "size"):
        table.add_column(col, justify="right" if col == "size" else "left", overflow="fold")
    for e in entries:
        table.add_row(e["kind"], e["name"], f"{e['bytes'] / 2**20:,.1f} MiB")
    out_console.print(table)
    out_console.print(f"{'removed' if clear else 'total'}: {len(entries)} entries, {total / 2**20:,.1f} MiB"
                      + ("" if clear or not entries else "; `gatelens cache --clear` removes them"))
