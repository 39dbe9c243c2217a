"""The `gatelens` command line: each command parses options, calls one library function, prints.

Errors a user can fix arrive as GatelensError and are printed as one line (exit code 2).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import GatelensError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure what a sigmoid gate after SDPA changes inside a language model.")
out_console = Console()
err_console = Console(stderr=True)

# Options shared by many commands, declared once so they mean the same everywhere.
Model = Annotated[str, typer.Argument(help="zoo name, smollm2-135m, checkpoint folder, .gguf file or hub id")]
TextFile = Annotated[Optional[Path], typer.Option("--text", help="UTF-8 text file to measure on")]
Dataset = Annotated[Optional[str], typer.Option("--dataset", help="shipped dataset (eval_sample)")]
SeqLen = Annotated[str, typer.Option("--seq-len", help="tokens per sequence; a comma list sweeps lengths")]
NSeqs = Annotated[int, typer.Option("--n-seqs", min=1, help="number of sequences")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="sequences per forward pass")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N, or auto (accelerate device map)")]
Dtype = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16")]
Bos = Annotated[bool, typer.Option("--bos/--no-bos", help="prepend the model's BOS token to each sequence")]
Out = Annotated[Optional[Path], typer.Option("--out", help="output folder (default results/<command>/<model>)")]
Json = Annotated[bool, typer.Option("--json", help="print one JSON object to stdout and nothing else there")]


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF dequantizer draws its own tqdm bar
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def user_errors(fn: Callable) -> Callable:
    """Turn GatelensError (and out-of-memory) into one line on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        _quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except GatelensError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except MemoryError:
            err_console.print("[bold red]error:[/] out of memory; use a smaller --batch-size or --seq-len")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; nothing was written")
            raise typer.Exit(130) from None

    return wrapper


def progress(total: int, what: str):
    return Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, transient=True)


def _device(device: str) -> str:
    """Under torchrun (WORLD_SIZE > 1) each rank joins the group and takes its own GPU (or the CPU)."""
    from . import distributed

    return distributed.init_from_env() or device


def _main_process() -> bool:
    from . import distributed

    return distributed.rank() == 0


def _write(out: Path, fill, payload: dict, json_out: bool) -> list[str] | None:
    """Write a command's files (all or nothing); with --json print the payload. None: nothing left to print
    (JSON mode, or a torchrun rank other than 0, which neither writes nor prints)."""
    from . import report

    if not _main_process():
        return None
    files = report.write_all(out, fill)
    if json_out:
        emit_json(payload)
        return None
    return files


def measured(what: str, loaded, inputs, fn):
    """Run `fn(inputs, on_batch)` under a progress bar over sequences (on stderr)."""
    with progress(len(inputs.seqs), what) as bar:
        task = bar.add_task("", total=len(inputs.seqs))
        return fn(inputs, lambda k: bar.advance(task, k))


def single_len(value: str) -> int:
    lens = seq_lens(value)
    if len(lens) != 1:
        raise GatelensError("this command takes one --seq-len; sweeps are for `gatelens sink`")
    return lens[0]


def seq_lens(value: str) -> list[int]:
    try:
        lens = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise GatelensError(f"--seq-len {value!r}: give an integer or a comma list such as 256,1024") from None
    if not lens:
        raise GatelensError("--seq-len is empty")
    return lens


def default_out(command: str, spec: str) -> Path:
    return Path("results") / command / re.sub(r"[^A-Za-z0-9._-]+", "_", Path(spec).name or spec)


def emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


@app.command("sink")
@user_errors
def sink_cli(model: Model, text: TextFile = None, dataset: Dataset = None, seq_len: SeqLen = "256",
             n_seqs: NSeqs = 8, batch_size: BatchSize = 4, device: Device = "cpu", dtype: Dtype = "float32",
             bos: Bos = True, eps: Annotated[float, typer.Option(help="sink-rate threshold on key-0 share")] = 0.3,
             out: Out = None, json_out: Json = False):
    """First-token attention share (F-Attn) per layer and head, and the sink rate."""
    from . import measure, report
    from .plots import sink as sink_plots

    loaded = measure.as_loaded(model, device=_device(device), dtype=dtype)
    lens = seq_lens(seq_len)
    results = []
    for n in lens:
        inputs = measure.prepare_inputs(loaded, text_file=str(text) if text else None, dataset=dataset,
                                        seq_len=n, n_seqs=n_seqs, bos=bos)
        results.append(measured(f"sink {loaded.info.spec} @ {n}", loaded, inputs, lambda i, cb: measure.sink(
            loaded, i, batch_size=batch_size, eps=eps, on_batch=cb)))
    out = out or default_out("sink", model)
    prov = report.provenance({"seq_lens": lens, **results[-1].settings}, [loaded.info.to_dict()])

    def fill(w):
        for r in results:
            suffix = "" if len(results) == 1 else f"_{r.settings['seq_len']}"
            w.table(f"sink_heads{suffix}", r.to_frame())
            w.table(f"sink_layers{suffix}", r.layer_frame())
            w.figure(f"sink_heatmap{suffix}", sink_plots.heatmap(r))
        w.figure("sink_layers", sink_plots.per_layer(results))
        if len(results) > 1:
            w.table("sink_lengths", measure.length_frame(results))
            w.figure("sink_lengths", sink_plots.per_length(results))
        w.json("sink.json", payload)

    payload = {**results[0].to_dict(), "provenance": prov} if len(results) == 1 else \
        {"f_attn": {r.settings["seq_len"]: r.f_attn for r in results},
         "lengths": [{"seq_len": r.settings["seq_len"], **r.to_dict()} for r in results], "provenance": prov}
    files = _write(out, fill, payload, json_out)
    if files is None:
        return
    for r in results:
        table = Table(title=f"F-Attn of {loaded.info.spec} ({r.settings['input']}, {r.settings['n_seqs']} x "
                            f"{r.settings['seq_len']} tokens)")
        table.add_column("layer", justify="right")
        table.add_column("F-Attn", justify="right")
        table.add_column(f"sink rate (>{eps})", justify="right")
        for ly in r.layers:
            table.add_row(str(ly.layer), f"{ly.f_attn:.4f}", f"{ly.sink_rate:.3f}")
        table.add_section()
        table.add_row("model", f"{r.f_attn:.4f}", f"{r.sink_rate:.3f}", style="bold")
        out_console.print(table)
    out_console.print(f"wrote {len(files)} files to {out}/")


def _common_inputs(model, text, dataset, seq_len, n_seqs, bos, device, dtype):
    from . import measure

    loaded = measure.as_loaded(model, device=_device(device), dtype=dtype)
    inputs = measure.prepare_inputs(loaded, text_file=str(text) if text else None, dataset=dataset,
                                    seq_len=single_len(seq_len), n_seqs=n_seqs, bos=bos)
    return loaded, inputs


def _print_frame(title: str, df, cols: dict[str, str], total: dict | None = None) -> None:
    table = Table(title=title)
    for name in cols.values():
        table.add_column(name, justify="right")
    for row in df.itertuples(index=False):
        d = row._asdict()
        table.add_row(*[_fmt(d[c]) for c in cols])
    if total:
        table.add_section()
        table.add_row(*[_fmt(total.get(c, "")) for c in cols], style="bold")
    out_console.print(table)


def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return ""
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:.4g}"
        return f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"
    return "" if v is None else str(v)


@app.command("massive")
@user_errors
def massive_cli(model: Model, text: TextFile = None, dataset: Dataset = None, seq_len: SeqLen = "256",
                n_seqs: NSeqs = 8, batch_size: BatchSize = 4, device: Device = "cpu", dtype: Dtype = "float32",
                bos: Bos = True, top_k: Annotated[int, typer.Option(min=1, help="top activations per layer")] = 5,
                abs_threshold: Annotated[float, typer.Option(help="massive if |h| above this ...")] = 100.0,
                ratio: Annotated[float, typer.Option(help="... and above this x the layer median")] = 1000.0,
                out: Out = None, json_out: Json = False):
    """Massive activations: per-layer max |hidden| with position, token and channel (M-Act)."""
    from . import measure, report
    from .plots import massive as plots

    loaded, inputs = _common_inputs(model, text, dataset, seq_len, n_seqs, bos, device, dtype)
    r = measured(f"massive {loaded.info.spec}", loaded, inputs, lambda i, cb: measure.massive(
        loaded, i, batch_size=batch_size, top_k=top_k, abs_threshold=abs_threshold, ratio=ratio, on_batch=cb))
    payload = {**r.to_dict(), "provenance": report.provenance(r.settings, [loaded.info.to_dict()])}

    def fill(w):
        w.table("massive_layers", r.to_frame())
        w.table("massive_channels", r.channel_frame())
        w.figure("massive_layers", plots.per_layer([r]))
        w.json("massive.json", payload)

    out = out or default_out("massive", model)
    files = _write(out, fill, payload, json_out)
    if files is None:
        return
    _print_frame(f"Max |hidden| per layer of {loaded.info.spec}", r.to_frame(),
                 {"layer": "layer", "max_abs": "max |h|", "median_abs": "median |h|", "ratio": "ratio",
                  "n_massive": "# massive", "pos": "pos", "token": "token", "channel": "channel"},
                 {"layer": "model", "max_abs": r.m_act})
    out_console.print(f"M-Act: max over layers {r.m_act:.2f}, mean over layers {r.m_act_layer_mean:.2f}; "
                      f"{r.n_massive} massive values (|h| > {abs_threshold:g} and > {ratio:g} x median)")
    out_console.print(f"wrote {len(files)} files to {out}/")


@app.command("gates")
@user_errors
def gates_cli(model: Model, text: TextFile = None, dataset: Dataset = None, seq_len: SeqLen = "256",
              n_seqs: NSeqs = 8, batch_size: BatchSize = 4, device: Device = "cpu", dtype: Dtype = "float32",
              bos: Bos = True, out: Out = None, json_out: Json = False):
    """Gate-score sparsity of a gated model: per layer and head, histograms, query dependence."""
    from . import measure, report
    from .plots import gates as plots

    loaded, inputs = _common_inputs(model, text, dataset, seq_len, n_seqs, bos, device, dtype)
    r = measured(f"gates {loaded.info.spec}", loaded, inputs,
                 lambda i, cb: measure.gates(loaded, i, batch_size=batch_size, on_batch=cb))
    note = None
    if len(loaded.info.attention_layers) < loaded.info.n_layers:
        note = (f"hybrid model: only its {len(loaded.info.attention_layers)} full-attention layers "
                f"{loaded.info.attention_layers} have gates; the other layers are linear attention")
    payload = {**r.to_dict(), "note": note, "provenance": report.provenance(r.settings, [loaded.info.to_dict()])}

    def fill(w):
        w.table("gates_heads", r.to_frame())
        w.table("gates_layers", r.layer_frame())
        w.table("gates_hist", r.hist_frame())
        w.figure("gates_hist", plots.histograms(r))
        w.figure("gates_heatmap", plots.heatmap(r))
        w.figure("gates_layers", plots.per_layer(r))
        w.json("gates.json", payload)

    out = out or default_out("gates", model)
    files = _write(out, fill, payload, json_out)
    if files is None:
        return
    cols = {"layer": "layer", "mean": "mean", "median": "median", "frac_below_0.1": "<0.1",
            "frac_below_0.5": "<0.5", "frac_above_0.9": ">0.9", "token_var_share": "var: tokens",
            "first_token_mean": "1st token", "rest_mean": "others"}
    df = r.layer_frame().rename(columns=lambda c: c.replace(".", "_"))
    _print_frame(f"Gate scores of {loaded.info.spec} ({loaded.info.gate}, {loaded.info.gate_position})", df,
                 {k.replace(".", "_"): v for k, v in cols.items()},
                 {"layer": "model", **{k.replace(".", "_"): r.overall(k) for k in cols if k != "layer"}})
    if "mean_abs_sdpa" in r.layers[0].heads:
        o = {k: r.overall(k) for k in r.layers[0].heads}
        out_console.print(f"W_O input: mean |SDPA output| {o['mean_abs_sdpa']:.4g} -> gated {o['mean_abs_gated']:.4g} "
                          f"(mean-gate scaling {o['mean_abs_mean_scaled']:.4g}); share below 1e-2: "
                          f"{o['frac_small_sdpa']:.3f} -> {o['frac_small_gated']:.3f} "
                          f"(mean-gate scaling {o['frac_small_mean_scaled']:.3f})")
    if note:
        out_console.print(note)
    out_console.print(f"wrote {len(files)} files to {out}/")


@app.command("rank")
@user_errors
def rank_cli(model: Model, text: TextFile = None, dataset: Dataset = None, seq_len: SeqLen = "256",
             n_seqs: NSeqs = 8, batch_size: BatchSize = 4, device: Device = "cpu", dtype: Dtype = "float32",
             bos: Bos = True, tol: Annotated[float, typer.Option(help="numerical rank: sigma > tol x max")] = 1e-3,
             weights_only: Annotated[bool, typer.Option("--weights-only", help="skip the head outputs")] = False,
             out: Out = None, json_out: Json = False):
    """Effective rank of W_V·W_O per head, and of the head outputs (gate on vs linearised)."""
    from . import measure, report
    from .plots import rank as plots

    if weights_only:
        loaded = measure.as_loaded(model, device=_device(device), dtype=dtype)
        r = measure.rank(loaded, tol=tol, tokens=False)
    else:
        loaded, inputs = _common_inputs(model, text, dataset, seq_len, n_seqs, bos, device, dtype)
        r = measured(f"rank {loaded.info.spec}", loaded, inputs,
                     lambda i, cb: measure.rank(loaded, i, batch_size=batch_size, tol=tol, on_batch=cb))
    payload = {**r.to_dict(), "provenance": report.provenance(r.settings, [loaded.info.to_dict()])}

    def fill(w):
        w.table("rank_heads", r.to_frame())
        w.table("rank_layers", r.layer_frame())
        w.figure("rank_ov", plots.per_layer([r], "ov_effective_rank"))
        if "out_effective_rank_linearized" in r.layers[0].heads:
            w.figure("rank_gate_effect", plots.gate_effect(r))
        w.json("rank.json", payload)

    out = out or default_out("rank", model)
    files = _write(out, fill, payload, json_out)
    if files is None:
        return
    keys = [k for k in ("ov_effective_rank", "ov_stable_rank", "ov_numerical_rank", "out_effective_rank",
                        "out_effective_rank_linearized") if k in r.layers[0].heads]
    _print_frame(f"Rank per layer (mean over heads) of {loaded.info.spec}, d_head = {loaded.info.d_head}",
                 r.layer_frame(), {"layer": "layer", **{k: k.replace("_", " ") for k in keys}},
                 {"layer": "model", **{k: r.overall(k) for k in keys}})
    out_console.print(f"wrote {len(files)} files to {out}/")


@app.command("compare")
@user_errors
def compare_cli(models: Annotated[list[str], typer.Argument(help="BASELINE GATED... (first is the baseline)")],
                text: TextFile = None, dataset: Dataset = None, seq_len: SeqLen = "256", n_seqs: NSeqs = 8,
                batch_size: BatchSize = 4, device: Device = "cpu", dtype: Dtype = "float32", bos: Bos = True,
                eps: Annotated[float, typer.Option(help="sink-rate threshold")] = 0.3,
                out: Out = None, json_out: Json = False):
    """The paper's table for any models: F-Attn, sink rate, M-Act, gate score, rank, perplexity."""
    from . import report
    from .compare import compare_models
    from .plots import massive as massive_plots
    from .plots import rank as rank_plots
    from .plots import sink as sink_plots

    if len(models) < 2:
        raise GatelensError("compare needs a baseline and at least one gated model: gatelens compare BASE GATED")
    n = single_len(seq_len)
    with progress(len(models), "compare") as bar:
        tasks: dict = {}

        def on_model(name, inputs):
            tasks[name] = bar.add_task(name, total=len(inputs.seqs))
            return lambda k: bar.advance(tasks[name], k)

        c = compare_models(models, text_file=str(text) if text else None, dataset=dataset, seq_len=n,
                           n_seqs=n_seqs, bos=bos, batch_size=batch_size, eps=eps, device=_device(device), dtype=dtype,
                           on_model=on_model)
    df = c.to_frame()
    infos = [r.info for r in c.reports]
    payload = {**c.to_dict(), "provenance": report.provenance(c.settings, infos)}

    def fill(w):
        w.table("compare", df)
        w.figure("compare_sink_layers", sink_plots.per_layer([r.sink for r in c.reports]))
        w.figure("compare_massive_layers", massive_plots.per_layer([r.massive for r in c.reports]))
        w.figure("compare_rank_ov", rank_plots.per_layer([r.rank for r in c.reports], "ov_effective_rank"))
        w.figure("compare_rank_outputs", rank_plots.per_layer([r.rank for r in c.reports], "out_effective_rank"))
        w.json("compare.json", payload)

    out = out or Path("results") / "compare"
    files = _write(out, fill, payload, json_out)
    if files is None:
        return
    metrics = {"f_attn": "F-Attn", "sink_rate": "sink rate", "m_act": "M-Act (max over layers)",
               "m_act_layer_mean": "M-Act (mean over layers)", "mean_gate": "mean gate score",
               "ov_effective_rank": "eff. rank W_V·W_O", "out_effective_rank": "eff. rank head outputs",
               "out_effective_rank_linearized": "  ... gate linearised", "perplexity": "perplexity"}
    table = Table(title=f"gatelens compare: {c.settings['input']}, {n_seqs} x {n} tokens")
    table.add_column("metric")
    for name in df["model"]:
        table.add_column(Path(name).name or name, justify="right")
    for key, label in metrics.items():
        cells = []
        for i, v in enumerate(df[key]):
            ratio = df.get(f"{key}_ratio")
            rv = None if ratio is None or i == 0 else ratio.iloc[i]
            cells.append(_fmt(v) + ("" if rv is None or rv != rv else f" ({rv:.2f}x)"))
        table.add_row(label, *cells)
    out_console.print(table)
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
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    flag = isinstance(default, bool)
    if flag:
        default = f"--{'' if default else 'no-'}{field.replace('_', '-')}"
    return typer.Option(*names, help=text if default in (MISSING, None) else f"{text} (default: {default})",
                        metavar="" if flag else None)


def _gate_help() -> str:
    from .models.gated import GATE_KINDS

    return "the attention gate: " + ", ".join(k.name + (f" ({k.position})" if k.position else "")
                                              for k in GATE_KINDS.values())


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
    return TrainConfig(**settings)


@app.command("train")
@user_errors
def train_cli(
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="a recipe: TOML whose keys are TrainConfig fields, e.g. gatelens/zoo/recipes/mech.toml; "
                         "options given here override it")] = None,
    out: Annotated[Optional[str], _train_option("out", "output checkpoint folder (here or in --config)")] = None,
    data: Annotated[Optional[str], _train_option("data", "a named task (bigram-backcopy) or a text corpus file, "
                                                         "documents split by <|doc|> lines")] = None,
    gate: Annotated[Optional[str], _train_option("gate", _gate_help())] = None,
    final_norm: Annotated[Optional[bool], _train_option(
        "final_norm", "the last RMSNorm (without it: model_type gatelens)", "--final-norm/--no-final-norm")] = None,
    qk_norm: Annotated[Optional[bool], _train_option(
        "qk_norm", "Qwen3's RMSNorm on queries and keys", "--qk-norm/--no-qk-norm")] = None,
    pre_norm: Annotated[Optional[bool], _train_option(
        "pre_norm", "RMSNorm before attention and MLP", "--pre-norm/--no-pre-norm")] = None,
    d_model: Annotated[Optional[int], _train_option("d_model", "residual stream width")] = None,
    n_layers: Annotated[Optional[int], _train_option("n_layers", "decoder layers")] = None,
    n_heads: Annotated[Optional[int], _train_option("n_heads", "query heads per layer")] = None,
    n_kv_heads: Annotated[Optional[int], _train_option("n_kv_heads", "key/value heads (default: --n-heads)")] = None,
    head_dim: Annotated[Optional[int], _train_option("head_dim", "width of a head (default: d_model / n_heads)")] = None,
    ffn: Annotated[Optional[int], _train_option("ffn", "MLP hidden width")] = None,
    rope_theta: Annotated[Optional[float], _train_option("rope_theta", "RoPE base")] = None,
    tie_embeddings: Annotated[Optional[bool], _train_option(
        "tie_embeddings", "one matrix for input embedding and LM head", "--tie-embeddings/--no-tie-embeddings")] = None,
    init_std: Annotated[Optional[float], _train_option("init_std", "std of the initial weights")] = None,
    gate_init_std: Annotated[Optional[float], _train_option(
        "gate_init_std", "std of the initial gate rows (logits near 0: scores near 0.5)")] = None,
    seq_len: Annotated[Optional[int], _train_option("seq_len", "tokens per sequence, BOS included; also the "
                                                               "model's context")] = None,
    task_params: Annotated[Optional[str], _train_option(
        "task_params", 'task parameters as JSON, e.g. {"vocab": 64}; replaces the --config table')] = None,
    eval_seed: Annotated[Optional[int], _train_option("eval_seed", "seed of a task's held-out sequences")] = None,
    val_data: Annotated[Optional[str], _train_option(
        "val_data", "corpus only: validation text file (default: the last 5% of --data)")] = None,
    bpe_vocab: Annotated[Optional[int], _train_option("bpe_vocab", "corpus only: byte-level BPE vocabulary")] = None,
    batch_size: Annotated[Optional[int], _train_option("batch_size", "sequences per step")] = None,
    steps: Annotated[Optional[int], _train_option("steps", "optimiser steps")] = None,
    lr: Annotated[Optional[float], _train_option("lr", "peak learning rate (AdamW)")] = None,
    min_lr: Annotated[Optional[float], _train_option("min_lr", "learning rate at the end of the cosine")] = None,
    warmup_steps: Annotated[Optional[int], _train_option("warmup_steps", "linear warm-up steps")] = None,
    weight_decay: Annotated[Optional[float], _train_option("weight_decay", "AdamW weight decay on matrices")] = None,
    beta1: Annotated[Optional[float], _train_option("beta1", "AdamW beta1")] = None,
    beta2: Annotated[Optional[float], _train_option("beta2", "AdamW beta2")] = None,
    grad_clip: Annotated[Optional[float], _train_option("grad_clip", "gradient-norm clip")] = None,
    eval_every: Annotated[Optional[int], _train_option("eval_every", "steps between validation passes")] = None,
    eval_seqs: Annotated[Optional[int], _train_option("eval_seqs", "validation sequences")] = None,
    ckpt_every: Annotated[Optional[int], _train_option("ckpt_every", "steps between checkpoints")] = None,
    seed: Annotated[Optional[int], _train_option("seed", "seed of the initial weights and the batches")] = None,
    device: Annotated[Optional[str], _train_option(
        "device", "auto (CUDA if there is a GPU, else CPU), cpu, cuda or cuda:N")] = None,
    save_dtype: Annotated[Optional[str], _train_option("save_dtype", "saved weights: float32 or bfloat16")] = None,
    resume: Annotated[Optional[bool], _train_option(
        "resume", "continue from the last checkpoint of --out", "--resume/--no-resume")] = None,
    overwrite: Annotated[Optional[bool], _train_option(
        "overwrite", "replace an existing --out", "--overwrite/--no-overwrite")] = None,
    json_out: Annotated[bool, typer.Option("--json", metavar="", help="print the summary as one JSON object")] = False,
):
    """Train a baseline or gated twin (same init, data order and schedule for every --gate), from a --config recipe
    and/or options."""
    options = {k: v for k, v in locals().items() if k not in ("config", "json_out")}  # TrainConfig fields
    from .train.trainer import train

    cfg = train_config_from_options(config, **options)
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("", total=cfg.steps, info="")

        def on_step(step, total, loss, tok_s):
            bar.update(task, completed=step, total=total, info=f"loss {loss:.4f}  {tok_s:,.0f} tok/s")

        summary = train(cfg, on_step=on_step)
    if json_out:
        return emit_json(summary)
    out_console.print(f"trained {cfg.gate} model: {summary.get('tokens', 0):,} tokens, final val loss "
                      f"{summary.get('final_val_loss', float('nan')):.4f}, F-Attn {summary.get('final_f_attn', float('nan')):.4f}")
    out_console.print(f"saved to {cfg.out}/ (load it with: gatelens sink {cfg.out})")


@app.command("bench")
@user_errors
def bench_cli(model: Annotated[str, typer.Argument(help="model spec, or random:PRESET (tiny-qwen3, qwen3-1.7b, "
                                                        "qwen3.5-gated-1.7b)")] = "random:tiny-qwen3",
              seq_len: SeqLen = "512,2048,8192", batch_size: BatchSize = 1, repeats: int = 3,
              device: Device = "cpu", dtype: Dtype = "float32",
              quick: Annotated[bool, typer.Option("--quick", help="a few seconds: tiny model, short lengths")] = False,
              methods: Annotated[Optional[str], typer.Option(help="comma list of bare,sink,massive,gates,all,"
                                                                  "tl_cache,eager")] = None,
              out: Out = None, json_out: Json = False):
    """Time and peak memory of each gatelens pass against the bare forward, TransformerLens and eager."""
    import pandas as pd

    from . import bench, report
    from .models import random as random_models
    from .models.load import load

    if quick:
        model, seq_len, repeats = "random:tiny-qwen3", "256,1024", 1
    lens = seq_lens(seq_len)
    if model.startswith("random:"):
        spec = str(random_models.build_folder(model.split(":", 1)[1], max_context=max(lens)))
    else:
        spec = model
    loaded = load(spec, device=device, dtype=dtype)
    loaded.info.spec = model
    if max(lens) > (loaded.info.max_context or max(lens)):
        err_console.print(f"note: lengths beyond the model's window ({loaded.info.max_context}) measure cost only")
    wanted = methods.split(",") if methods else None
    bridge = None
    if wanted is None or "tl_cache" in wanted:
        try:
            bridge = loaded.bridge()
        except Exception as e:  # noqa: BLE001 - TransformerLens cannot wrap every model; the row says so
            err_console.print(f"note: TransformerLens bridge unavailable ({str(e).splitlines()[0][:80]})")
    rows = []
    with progress(1, "bench") as bar:
        task = bar.add_task("", total=len(lens) * len(wanted or bench.METHODS))
        bench.bench(loaded, lens, batch=batch_size, repeats=repeats, methods=wanted, bridge=bridge,
                    on_row=lambda r: (rows.append(r), bar.advance(task)))
    df = pd.DataFrame([vars(r) for r in rows])
    settings = {"model": model, "seq_lens": lens, "batch_size": batch_size, "repeats": repeats, "dtype": dtype,
                "device": device, "machine": bench.machine()}
    payload = {"rows": df.to_dict(orient="records"), "provenance": report.provenance(settings, [loaded.info.to_dict()])}
    out = out or Path("results") / "bench"
    files = _write(out, lambda w: (w.table("bench", df), w.json("bench.json", payload)), payload, json_out)
    if files is None:
        return
    _print_frame(f"gatelens bench: {model} on {settings['machine']}", df,
                 {"seq_len": "tokens", "method": "method", "seconds": "seconds (median)", "time_ratio": "time / bare",
                  "peak_mb": "peak MiB", "mem_ratio": "mem / bare", "tokens_per_s": "tokens/s", "note": "note"})
    out_console.print(f"wrote {len(files)} files to {out}/")


@app.command("attn-map")
@user_errors
def attn_map_cli(models: Annotated[list[str], typer.Argument(help="one model, or several side by side")],
                 layer: Annotated[int, typer.Option("--layer", help="attention layer index")] = 0,
                 head: Annotated[Optional[int], typer.Option("--head", help="head index; omit for the mean")] = None,
                 text: Annotated[Optional[str], typer.Option("--text", help="the text itself, or @FILE")] = None,
                 seq_len: Annotated[int, typer.Option("--seq-len")] = 64, bos: Bos = True,
                 log: Annotated[Optional[bool], typer.Option("--log/--linear", help="colour scale")] = None,
                 max_size: Annotated[int, typer.Option(help="pool longer texts into this many cells")] = 512,
                 device: Device = "cpu", dtype: Dtype = "float32", out: Out = None, json_out: Json = False):
    """Attention map of a layer and head (or the head mean) for one text; several models side by side."""
    import pandas as pd

    from . import data, measure, report
    from .patterns import text_map
    from .plots.attention import attention_figure

    body = data.read_text(text[1:]) if text and text.startswith("@") else text
    maps = [text_map(measure.as_loaded(m, device=device, dtype=dtype), body, layer, head, seq_len, bos, max_size)
            for m in models]
    shares = {mp.model["spec"]: mp.first_token_share for mp in maps}
    payload = {"layer": layer, "head": head, "seq_len": seq_len, "first_token_share": shares,
               "provenance": report.provenance({"layer": layer, "head": head, "seq_len": seq_len, "bos": bos,
                                                "text": (body or "default data")[:200]}, [mp.model for mp in maps])}
    stem = f"attn_map_L{layer}" + ("_mean" if head is None else f"_H{head}")

    def fill(w):
        w.figure(stem, attention_figure(maps, log=log, text=(body or "")[:80]))
        for mp in maps:
            name = Path(mp.model["spec"]).name
            pd.DataFrame(mp.pattern.numpy()).to_csv(w.path(f"{stem}_{name}.csv"), index=False, float_format="%.6g")
        w.json(f"{stem}.json", payload)

    out = out or Path("results") / "attn-map"
    files = _write(out, fill, payload, json_out)
    if files is None:
        return
    for spec, share in shares.items():
        out_console.print(f"{spec}: layer {layer} {'mean over heads' if head is None else f'head {head}'}: "
                          f"first-token share {share:.3f}")
    out_console.print(f"wrote {len(files)} files to {out}/")


@app.command("figures")
@user_errors
def figures_cli(config: Annotated[Path, typer.Option("--config", help="models and settings (TOML)")]
                = Path("figures.toml"),
                only: Annotated[Optional[list[str]], typer.Option("--only", help="run just this analysis")] = None):
    """Regenerate every paper figure and table (analyses/*.py) into the config's output folder."""
    from .figures import read_config, run_all

    cfg, _ = read_config(config)
    steps = len(only or cfg.analyses) * len(cfg.groups)
    with progress(steps, "figures") as bar:
        task = bar.add_task("", total=steps)
        files = run_all(config, only=only, on_step=lambda name, group: bar.advance(task))
    out_console.print(f"wrote {len(files)} files to {cfg.out}/")


@app.command("zoo")
@user_errors
def zoo_cli(json_out: Json = False):
    """List the models shipped inside gatelens."""
    from .models import zoo

    rows = zoo.entries()
    if json_out:
        emit_json({"models": rows})
        return
    table = Table(title="gatelens zoo (load any of these by name)")
    for col in ("name", "kind", "gate", "params", "F-Attn", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["kind"], r["gate"], f"{r['params']:,}",
                      "" if r.get("f_attn") is None else f"{r['f_attn']:.3f}", r["description"])
    out_console.print(table)


def main() -> None:  # pragma: no cover
    app()
