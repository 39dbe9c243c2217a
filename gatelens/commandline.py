"""How the command line is made (cli.py holds the commands): options made from the settings' declarations
(`settings.Settings` for every measuring command, `train.config.TrainConfig` for `gatelens train`), gatelens' help
style, and every user mistake as one line on stderr with exit code 2 (a bad option while the command line is read,
a GatelensError or out-of-memory while it runs).
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import MISSING, fields
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional, get_args, get_type_hints

import typer

from . import terminal
from .errors import GatelensError
from .models.gate_kinds import GATES
from .options import SEQ_LENS, ListOption
from .settings import Settings
from .train.config import TrainConfig


def _untyped_flags(params: list) -> list:
    """Help as the ecosystem writes it: a flag shows no type (click's style, not typer 0.29's `<bool>`)."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


class Command(typer.core.TyperCommand):
    def get_params(self, ctx):
        return _untyped_flags(super().get_params(ctx))


class Group(typer.core.TyperGroup):
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


def quiet_libraries() -> None:
    """transformers' warnings and progress bars off, by environment (read when transformers is first imported,
    so a command that never loads a model never imports it)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF dequantizer draws its own tqdm bar
    if "transformers" in sys.modules:  # a notebook or test that imported it first
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def user_errors(fn: Callable) -> Callable:
    """Turn GatelensError (and out-of-memory) into one line on stderr and exit code 2."""
    own = inspect.signature(fn).parameters  # the command's options: a message names only those it has

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            quiet_libraries()
            terminal.show_notes()
            return fn(*args, **kwargs)
        except GatelensError as e:
            terminal.error(str(e))
            raise typer.Exit(2) from None
        except MemoryError:
            smaller = " or ".join(f"--{n.replace('_', '-')}" for n in ("batch_size", "seq_len") if n in own)
            terminal.error(f"out of memory; {f'use a smaller {smaller}' if smaller else 'close other programs'}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:  # its message, if any, says what was kept (train's checkpoint)
            terminal.err_console.print(f"interrupted; {e or 'nothing was written'}", markup=False)
            raise typer.Exit(130) from None

    return wrapper


# the type Typer reads for a Settings field where it is not the declared one (a path, a parsed comma list, Optional)
_CLI_TYPES = {"text_file": Optional[Path], "dataset": Optional[str], "seq_len": tuple, "revision": Optional[str]}


def _setting_option(f) -> object:
    """`Annotated[type, typer.Option]` of a Settings field, made from its declaration (name, help, metavar, lower
    bound)."""
    name = "--" + ("text" if f.name == "text_file" else f.name.replace("_", "-"))
    meta, kw = f.metadata, {}
    if f.name == "seq_len":
        kw["parser"] = SEQ_LENS.typer()
    if meta["range"] is not None and meta["range"].ge is not None and f.type in ("int", int):
        kw["min"] = meta["range"].ge
    names = (f"{name}/--no-{name[2:]}",) if f.type in ("bool", bool) else (name,)
    hint = _CLI_TYPES.get(f.name, get_type_hints(Settings)[f.name])
    return Annotated[hint, typer.Option(*names, help=meta["help"], metavar=meta["metavar"], **kw)]


def setting_option(name: str):
    """The option of one `settings.Settings` field, for a command that takes that setting without the rest
    (`bench --device`)."""
    return _setting_option(next(f for f in fields(Settings) if f.name == name))


def measuring_options(output: dict):
    """A decorator adding an option for every `settings.Settings` field (but eps, which the commands that use it
    declare) and the `output` options ({name: (annotation, default)}) to a command; the command receives
    `settings` (a Settings) and each output option by name."""
    wanted = [f for f in fields(Settings) if f.name != "eps"]
    extra = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                               default="256" if f.name == "seq_len" else f.default, annotation=_setting_option(f))
             for f in wanted]
    extra += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
              for k, (a, d) in output.items()]

    def decorate(fn):
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name not in ("settings", *output)]

        @wraps(fn)
        def wrapper(*args, **kwargs):
            given = {f.name: kwargs.pop(f.name) for f in wanted}
            settings = Settings(**given, **({"eps": kwargs["eps"]} if "eps" in kwargs else {}))
            return fn(*args, settings=settings, **{k: kwargs.pop(k) for k in output}, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=own + extra)
        wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
        return wrapper

    return decorate


def _train_option(f, choices: dict, *names: str):
    """A `gatelens train` option for a TrainConfig field; its help ends with the default used when neither the
    option nor the --config file sets the field (the option defaults to None: not given). A field whose default
    is None says in its help what None means."""
    text = f.metadata["help"]
    if f.metadata.get("range") is not None:  # the range the field declares, shown where the option is
        text = f"{text}, {f.metadata['range']}"
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    flag = isinstance(default, bool)
    if flag:
        default = f"--{'' if default else 'no-'}{f.name.replace('_', '-')}"
    metavar = "" if flag else "[" + "|".join(choices[f.name]) + "]" if f.name in choices else None
    return typer.Option(*names, help=text if default in (MISSING, None) else f"{text} (default: {default})",
                        metavar=metavar)


def train_options(fn):
    """Add an option for every TrainConfig field to `gatelens train`, made from the field's declaration (type, help,
    range, default): a field added to TrainConfig is an option without a line in cli.py. The command receives them
    as `options` (None: not given, so the --config recipe or the field's default holds)."""

    choices = {"gate": GATES, "device": ("cpu", "cuda", "cuda:N", "auto"), "save_dtype": ("float32", "bfloat16")}
    hints = get_type_hints(TrainConfig)
    cli_type = {dict: str}   # task_params: JSON text on the command line
    params = []
    for f in fields(TrainConfig):
        t = hints[f.name]
        t = next((a for a in get_args(t) if a is not type(None)), t)
        flag = (f"--{f.name.replace('_', '-')}/--no-{f.name.replace('_', '-')}",) if t is bool else ()
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[cli_type.get(t, t)], _train_option(f, choices, *flag)]))
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "options"]

    @wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, options={p.name: kwargs.pop(p.name) for p in params}, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + params)
    wrapper.__annotations__ = {p.name: p.annotation for p in own + params}
    return wrapper


# --- the options, declared once so they mean the same in every command --------------------------------------------

BENCH_METHODS = ("bare", "sink", "massive", "gates", "norms", "heads", "all", "tl_cache", "eager")  # bench.METHODS
METHODS = ListOption("--methods", str, "passes", choices=BENCH_METHODS, example="bare,sink",
                     omitted="every pass is timed")
TYPES = ListOption("--types", str, "model types", example="llama,qwen3", omitted="every type is checked")
ABLATIONS = ("sink", "sink-value", "gate-mean", "gate-one", "head", "massive-zero", "massive-mean")  # ablate.WHAT

Model = Annotated[str, typer.Argument(help="zoo name, smollm2-135m, checkpoint folder, .gguf file or hub id")]
Out = Annotated[Optional[Path], typer.Option("--out", help="output folder (default results/<command>/<model>)")]
Json = Annotated[bool, typer.Option("--json", help="print one JSON object to stdout and nothing else there")]
Html = Annotated[bool, typer.Option("--html", help="also write interactive views (self-contained HTML, offline)")]
Eps = setting_option("eps")
measuring = measuring_options({"out": (Out, None), "json_out": (Json, False), "html": (Html, False)})
# the Settings fields that other commands take too, each as its own option
SeqLen, BatchSize, Device, Dtype, TextFile, Bos = (setting_option(n) for n in ("seq_len", "batch_size", "device",
                                                                                "dtype", "text_file", "bos"))


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        terminal.out_console.print(f"gatelens {__version__}")
        raise typer.Exit()


Version = Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")]
