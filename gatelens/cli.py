"""The `gatelens` command line: each command parses options, calls the library, writes, prints.

Parsing and printing only. The measuring options are `settings.Settings`' fields (declared there once, with their
help and ranges) plus the output options here, added to every measuring command by `@measuring`; a command's
files are made by `report` (tables, figures from `plots`, JSON with provenance), its terminal view by `terminal`.
Errors a user can fix arrive as GatelensError and are printed as one line (exit code 2).
"""

from __future__ import annotations  # noqa: I001 - two lines of option names from commandline

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import TextColumn

from . import commandline, terminal
from .commandline import (ABLATIONS, BENCH_METHODS, METHODS, TYPES, BatchSize, Bos, Device, Dtype,
                          Eps, Json, Model, Out, SeqLen, TextFile, measuring, train_options)
from .errors import GatelensError
from .options import HEADS, LAYERS
from .report import output_folder
from .settings import Settings, check_device, check_dtype
from .terminal import emit_json, out_console, progress, show, wrote

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=commandline.Group,
                  help="Measure what a sigmoid gate after SDPA changes inside a language model.")


def command(name: str):
    """`@app.command(name)` with gatelens' help style."""
    return app.command(name, cls=commandline.Command)


def _on_device(settings: Settings) -> Settings:
    """Under torchrun (WORLD_SIZE > 1) each rank joins the group and takes its own GPU (or the CPU)."""
    from . import distributed

    return replace(settings, device=distributed.init_from_env() or settings.device)


def _start(command: str, model: str, settings: Settings, out: Path | None):
    """The output folder, checked before any work, and the model loaded: (out, loaded)."""
    out = output_folder(out, command, [model])
    return out, _on_device(settings).load(model)


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


def run_metric(name: str, loaded, inputs, settings: Settings, **probe_options):
    """One metric of the registry on `inputs`, under a progress bar over sequences (on stderr)."""
    from . import measure
    from .metrics import METRICS

    with progress(f"{name} {loaded.info.spec} @ {inputs.seq_len}") as bar:
        task = bar.add_task("", total=len(inputs.seqs))
        return measure.run_probes(loaded, [METRICS[name](**probe_options)], inputs, batch_size=settings.batch_size,
                               on_batch=lambda k: bar.advance(task, k))[0]


def publish(command: str, result, models: list[dict], out: Path, json_out: bool, html: bool = False,
            extra: dict | None = None, caption: str | None = None) -> None:
    """A one-result command's files (`report.result_files`), then its terminal view."""
    from .report import result_files

    payload, fill = result_files(command, result, models, extra=extra, caption=caption, html=html)
    files = _write(out, fill, payload, json_out)
    if files is not None:
        show(result.display())
        wrote(files, out)


def measure_one(command: str, model: str, settings: Settings, out, json_out: bool, html: bool, *,
                check: Callable | None = None, extra: Callable | None = None, **probe_options) -> None:
    """The whole of a one-metric command: output folder checked, model loaded, inputs made, metric run, published."""
    out, loaded = _start(command, model, settings, out)
    r = run_metric(command, loaded, settings.inputs(loaded, check=check), settings, **probe_options)
    publish(command, r, [loaded.info.to_dict()], out, json_out, html, extra=extra(r) if extra else None)


@app.callback()
def main(version: commandline.Version = False):
    """Measure what a sigmoid gate after SDPA changes inside a language model."""


@command("sink")
@commandline.user_errors
@measuring
def sink_cli(model: Model, eps: Eps = 0.3, *, settings: Settings, out: Path, json_out: bool, html: bool):
    """First-token attention share (F-Attn) per layer and head, and the sink rate."""
    from .metrics.sink import check_eps
    from .report import sink_sweep_files

    check_eps(eps)
    out, loaded = _start("sink", model, settings, out)
    inputs = settings.sweep_inputs(loaded, check=settings.check_distinct)
    results = [run_metric("sink", loaded, i, settings, eps=eps) for i in inputs]
    if len(results) == 1:
        return publish("sink", results[0], [loaded.info.to_dict()], out, json_out, html)
    payload, fill = sink_sweep_files(results, loaded.info.to_dict(), settings.lengths())
    files = _write(out, fill, payload, json_out)
    if files is not None:
        for r in results:
            show(r.display())
        wrote(files, out)


@command("sinks")
@commandline.user_errors
@measuring
def sinks_cli(model: Model,
              top_k: Annotated[int, typer.Option(min=1, help="top keys per layer and head")] = 5,
              min_queries: Annotated[Optional[int], typer.Option(
                  min=1, help="rank only keys seen by at least this many queries (default: a quarter of the "
                              "sequence's)")] = None,
              eps: Eps = 0.3, *, settings: Settings, out: Path, json_out: bool, html: bool):
    """Which tokens are sinks (attention received per key, top keys, sink tokens, Gu et al.'s sink score of every
    position) and what they contribute (value norms, norm-weighted F-Attn)."""
    from .metrics.received import check_received_options
    from .metrics.sink import check_eps
    from .sinks import sinks

    check_received_options(top_k, min_queries, settings.length())
    check_eps(eps)
    out, loaded = _start("sinks", model, settings, out)
    inputs = settings.inputs(loaded, check=lambda i: check_received_options(top_k, min_queries, i.longest))
    with progress(f"sinks {loaded.info.spec} @ {inputs.seq_len}") as bar:
        task = bar.add_task("", total=len(inputs.seqs))
        r = sinks(loaded, inputs, top_k=top_k, min_queries=min_queries, eps=eps, batch_size=settings.batch_size,
                  on_batch=lambda k: bar.advance(task, k))
    publish("sinks", r, [loaded.info.to_dict()], out, json_out, html)


@command("ablate")
@commandline.user_errors
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
               *, settings: Settings, out: Path, json_out: bool, html: bool):
    """Causal tests, one forward each: loss change, F-Attn and M-Act with the sink or the gate ablated."""
    from .ablate import ablate, check_measurable, parse_layers

    if what not in ABLATIONS:
        raise GatelensError(f"--what {what!r}: use one of {', '.join(ABLATIONS)}")
    chosen, whole = parse_layers(layers)
    out, loaded = _start("ablate", model, settings, out)
    inputs = settings.inputs(loaded, check=lambda i: check_measurable(what, i))
    with progress(f"ablate {what} {loaded.info.spec}") as bar:
        def on_run(name):
            task = bar.add_task(name, total=len(inputs.seqs))
            return lambda k: bar.advance(task, k)

        r = ablate(loaded, what, chosen, all_layers=whole, inputs=inputs, batch_size=settings.batch_size,
                   on_run=on_run, heads=None if heads is None else list(heads))
    publish("ablate", r, [loaded.info.to_dict()], out, json_out, html)


@command("massive")
@commandline.user_errors
@measuring
def massive_cli(model: Model,
                top_k: Annotated[int, typer.Option(min=1, help="top activations per layer")] = 5,
                abs_threshold: Annotated[float, typer.Option(help="massive if |h| above this ...")] = 100.0,
                ratio: Annotated[float, typer.Option(help="... and above this x the layer median")] = 1000.0,
                *, settings: Settings, out: Path, json_out: bool, html: bool):
    """Massive activations: per-layer max |hidden| with position, token and channel (M-Act)."""
    from .metrics.massive import check_thresholds

    check_thresholds(abs_threshold, ratio, top_k)
    measure_one("massive", model, settings, out, json_out, html, top_k=top_k, abs_threshold=abs_threshold,
                ratio=ratio)


@command("gates")
@commandline.user_errors
@measuring
def gates_cli(model: Model, *, settings: Settings, out: Path, json_out: bool, html: bool):
    """Gate-score sparsity of a gated model: per layer and head, histograms, query dependence."""
    measure_one("gates", model, settings, out, json_out, html, extra=lambda r: {"note": r.note})


@command("norms")
@commandline.user_errors
@measuring
def norms_cli(model: Model, *, settings: Settings, out: Path, json_out: bool, html: bool):
    """Norms of every token's hidden state, key and value per layer (Gu et al. 2024, Sun et al. 2024): the first
    token against the median, per position and per token string."""
    measure_one("norms", model, settings, out, json_out, html)


@command("heads")
@commandline.user_errors
@measuring
def heads_cli(model: Model,
              sink_weight: Annotated[float, typer.Option(help="dormant: at least this weight on key 0, in (0, 1]")] = 0.5,
              output_ratio: Annotated[float, typer.Option(
                  help="dormant: output norm below this fraction of the layer's mean head output")] = 0.5,
              *, settings: Settings, out: Path, json_out: bool, html: bool):
    """Dormant and active heads (Guo et al. 2024, Sandoval-Segura et al. 2025): per head, the share of queries parked
    on the sink with a small output, first-token weight and output norm, ranked; test one with `ablate --what head`."""
    from .metrics.heads import check_dormant_options

    check_dormant_options(sink_weight, output_ratio)
    measure_one("heads", model, settings, out, json_out, html, sink_weight=sink_weight, output_ratio=output_ratio)


@command("measure")
@commandline.user_errors
@measuring
def measure_cli(metric: Annotated[str, typer.Argument(help="a registered metric (gatelens' own or another package's)")],
                model: Model, *, settings: Settings, out: Path, json_out: bool, html: bool):
    """Any metric of the registry on one model (its tables, figures, JSON and terminal view), those other packages
    register through the `gatelens.metrics` entry-point group included."""
    from .metrics import METRICS, check_runs_on

    if metric not in METRICS:
        raise GatelensError(f"unknown metric {metric!r}: the registry has {', '.join(METRICS)}")
    out, loaded = _start(metric, model, settings, out)
    check_runs_on(METRICS[metric], loaded)
    r = run_metric(metric, loaded, settings.inputs(loaded), settings)
    publish(metric, r, [loaded.info.to_dict()], out, json_out, html)


@command("rank")
@commandline.user_errors
@measuring
def rank_cli(model: Model,
             tol: Annotated[float, typer.Option(help="numerical rank: sigma > tol x max, in (0, 1)")] = 1e-3,
             weights_only: Annotated[bool, typer.Option("--weights-only", help="skip the head outputs")] = False,
             *, settings: Settings, out: Path, json_out: bool, html: bool):
    """Effective rank of W_V·W_O per head, and of the head outputs (gate on vs linearised)."""
    from . import measure
    from .metrics.rank import check_tol

    check_tol(tol)
    if not weights_only:
        return measure_one("rank", model, settings, out, json_out, html, tol=tol)
    out, loaded = _start("rank", model, settings, out)
    publish("rank", measure.rank(loaded, tol=tol, tokens=False), [loaded.info.to_dict()], out, json_out, html)


@command("emergence")
@commandline.user_errors
@measuring
def emergence_cli(runs: Annotated[list[str], typer.Argument(
        help="run folders trained with --keep-checkpoints (every checkpoint is measured), or model specs (one point)")],
        *, settings: Settings, out: Path, json_out: bool, html: bool):
    """Sink emergence across training (Gu et al. 2024): F-Attn, sink rate, M-Act and mean gate of every checkpoint
    a run kept, against tokens seen; baseline and gated twins on one figure."""
    from .emergence import emergence

    out = output_folder(out, "emergence", runs)
    s = _on_device(settings)
    with progress("emergence") as bar:
        def on_checkpoint(run, step, n):
            task = bar.add_task(f"{run} step {step}", total=n)
            return lambda k: bar.advance(task, k)

        r = emergence(runs, s, on_checkpoint=on_checkpoint)
    publish("emergence", r, r.models, out, json_out, caption=r.display()["title"])


@command("compare")
@commandline.user_errors
@measuring
def compare_cli(models: Annotated[list[str], typer.Argument(help="BASELINE GATED... (first is the baseline)")],
                eps: Eps = 0.3, *, settings: Settings, out: Path, json_out: bool, html: bool):
    """The paper's table for any models: F-Attn, sink rate, M-Act, gate score, rank, perplexity."""
    from .compare import compare_models
    from .metrics.sink import check_eps
    from .report import comparison_files

    if len(models) < 2:
        raise GatelensError("compare needs a baseline and at least one gated model: gatelens compare BASE GATED")
    check_eps(eps)
    settings.length()
    out = output_folder(out, "compare", models)
    with progress("compare") as bar:
        def on_model(name, inputs):
            task = bar.add_task(name, total=len(inputs.seqs))
            return lambda k: bar.advance(task, k)

        c = compare_models(models, _on_device(settings), on_model=on_model)
    payload, fill = comparison_files(c)
    files = _write(out, fill, payload, json_out)
    if files is not None:
        terminal.show_comparison(c, c.what())
        wrote(files, out)


@command("train")
@commandline.user_errors
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
    from .train.config import from_options
    from .train.trainer import train

    cfg = from_options(config, **options)
    with progress("train", TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task("", total=cfg.steps, info="")

        def on_step(step, total, loss, tok_s):
            bar.update(task, completed=step, total=total, info=f"loss {loss:.4f}  {tok_s:,.0f} tok/s")

        summary = train(cfg, on_step=on_step)
    if json_out:
        return emit_json({**summary, "files": sorted(str(p) for p in Path(cfg.out).rglob("*") if p.is_file())})
    terminal.show_training(summary, cfg.gate, cfg.out)


@command("bench")
@commandline.user_errors
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
    from . import bench

    wanted = list(methods) if methods is not None else None
    check_device(device)
    check_dtype(dtype)
    if quick:
        model, seq_len, repeats = "random:tiny-qwen3", (256, 1024), 1
    lens = list(seq_len)
    out = output_folder(out, "bench", [model])
    loaded, bridge = bench.load_for_bench(model, lens, device=device, dtype=dtype,
                                          tl=wanted is None or "tl_cache" in wanted)
    rows = []
    with progress("bench") as bar:
        task = bar.add_task("", total=len(lens) * len(wanted or bench.METHODS))
        bench.bench(loaded, lens, batch=batch_size, repeats=repeats, methods=wanted, bridge=bridge,
                    on_row=lambda r: (rows.append(r), bar.advance(task)))
    df, payload, fill = bench.bench_files(model, loaded, rows, lens, batch_size=batch_size, repeats=repeats,
                                          dtype=dtype, device=device)
    files = _write(out, fill, payload, json_out)
    if payload["timing_problem"]:
        terminal.note(payload["timing_problem"])
    if files is not None:
        terminal.show_bench(df, payload["provenance"]["settings"], bench.VIEW_COLUMNS)
        wrote(files, out)


@command("attn-map")
@commandline.user_errors
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
    from . import data
    from .patterns import attn_maps
    from .report import attn_map_files

    if text is not None and prompt is not None:
        raise GatelensError("give --text FILE or --prompt TEXT, not both")
    check_device(device)
    check_dtype(dtype)
    out = output_folder(out, "attn-map", models)
    body = data.read_text(text) if text is not None else prompt
    maps, heads = attn_maps(models, body, layer, head, seq_len, bos, max_size, device=device, dtype=dtype,
                            every_head=html)
    payload, fill = attn_map_files(maps, heads, layer=layer, head=head, seq_len=seq_len, bos=bos, text=body, log=log)
    files = _write(out, fill, payload, json_out)
    if files is None:
        return
    terminal.show_attn_maps(maps, layer, head)
    wrote(files, out)


@command("figures")
@commandline.user_errors
def figures_cli(config: Annotated[Path, typer.Option("--config", help="models and settings (TOML)")]
                = Path("figures.toml"),
                only: Annotated[Optional[list[str]], typer.Option("--only", help="run just this analysis")] = None,
                json_out: Json = False):
    """Regenerate every paper figure and table (analyses/*.py) into the config's output folder."""
    from .figures import read_config, run_all

    cfg = read_config(config)
    with progress("figures") as bar:
        task = bar.add_task("", total=len(only or cfg.analyses) * len(cfg.groups))
        files = run_all(config, only=only, on_step=lambda name, group: bar.advance(task))
    if json_out:
        return emit_json({"out": str(cfg.out), "analyses": list(only or cfg.analyses), "files": files})
    wrote(files, cfg.out)


@command("models")
@commandline.user_errors
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
    from . import coverage

    if scan_gates:
        if types or merge:
            raise GatelensError("--scan-gates reads the modeling files of every type and writes nothing; "
                                "leave out --types and --merge")
        scan = coverage.scan_report()
        emit_json(scan) if json_out else terminal.show_scan(scan)
        if scan["unrecognised"]:
            raise typer.Exit(1)
        return
    wanted = list(types) if types is not None else None
    previous = coverage.plan_table(out, wanted, merge)
    rows = coverage.sweep(wanted, None if json_out else terminal.coverage_line)
    if previous is not None:
        rows = coverage.merge_rows(previous, rows)
    n = coverage.write_table(out, rows)
    if json_out:
        return emit_json({**n, "table": str(out), "rows": [r.to_dict() for r in rows]})
    also = f", and {n['paper_ok']} of {n['paper_formats']} paper formats" if n["paper_formats"] else ""
    out_console.print(f"{n['ok']} of {n['types']} model types measured exactly{also}; table in {out}")


@command("zoo")
@commandline.user_errors
def zoo_cli(json_out: Json = False):
    """List the models shipped inside gatelens."""
    from .models import zoo

    emit_json({"models": zoo.entries()}) if json_out else terminal.show_zoo(zoo.entries())


@command("cache")
@commandline.user_errors
def cache_cli(clear: Annotated[bool, typer.Option("--clear", help="delete what gatelens wrote in its cache "
                                                  "(its gguf/ and offload/ folders; nothing else)")] = False,
              json_out: Json = False):
    """Show gatelens' cache (dequantized GGUF models, offloaded weights) and its size; --clear empties it."""
    from .models import cache

    root, entries = cache.entries()
    if clear:
        cache.clear()
    if json_out:
        return emit_json({"cache": str(root), "entries": entries, "bytes": sum(e["bytes"] for e in entries),
                          "cleared": clear})
    terminal.show_cache(root, entries, clear)
