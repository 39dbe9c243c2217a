"""A run's files: the hidden work folder, atomic checkpoints and log, and the finished output folder.

Work happens in a hidden sibling folder `.<out>.partial/` (checkpoint.pt, train_log.csv, a corpus
run's tokenizer/), renamed to `out` only when training has finished; every file in it is written
to a temporary name first and moved into place, so a kill never leaves half a file. A run that stops
after its first checkpoint keeps the work folder, and `--resume` continues it; a run that stops before
(a refused input, an error in the first steps) removes it: nothing of it is left (`discard`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import GatelensError
from ..models import native
from .config import TrainConfig

LOG_COLUMNS = ("step", "tokens", "train_loss", "val_loss", "f_attn", "mean_gate", "lr", "wall_s")
_NOT_COMPARED_ON_RESUME = ("resume", "overwrite", "device", "keep_checkpoints")


def work_folder(cfg: TrainConfig) -> Path:
    """The run's hidden work folder, fresh unless resuming; refuses to clobber a finished `out`."""
    out = Path(cfg.out)
    work = out.parent / f".{out.name}.partial"
    if out.exists() and not cfg.overwrite:
        raise GatelensError(f"{out} already exists; choose another --out or pass --overwrite")
    if cfg.resume and not (work / "checkpoint.pt").exists():
        raise GatelensError(f"no checkpoint to resume in {work}; start without --resume")
    if not cfg.resume and (work / "checkpoint.pt").exists() and not cfg.overwrite:
        raise GatelensError(f"{work} holds the checkpoint of an interrupted run of {out}; continue it with --resume, "
                            "or pass --overwrite to start afresh")
    if not cfg.resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    return work


def discard(work: Path, cfg: TrainConfig, made: list[Path]) -> bool:
    """After a run stopped early: remove its work folder, and the folders `made` for it (deepest first, while
    empty), unless it holds a checkpoint to resume (always kept for a --resume run, whose folder was there
    before). True when a checkpoint is kept."""
    if cfg.resume or (work / "checkpoint.pt").exists():
        return True
    shutil.rmtree(work, ignore_errors=True)
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            break
    return False


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_log(path: Path, rows: list[dict]) -> None:
    def write(tmp: Path):
        with open(tmp, "w", newline="") as f:
            extra = sorted({k for r in rows for k in r} - set(LOG_COLUMNS))   # metrics added to the registry
            w = csv.DictWriter(f, fieldnames=[*LOG_COLUMNS, *extra])
            w.writeheader()
            w.writerows({k: ("" if r.get(k) is None else r[k]) for k in [*LOG_COLUMNS, *extra]} for r in rows)
    _atomic_write(path, write)


def _compared(cfg: TrainConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in _NOT_COMPARED_ON_RESUME}


def save_checkpoint(path: Path, model, opt, sched, cfg: TrainConfig, state: dict) -> None:
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "config": _compared(cfg), **state}
    _atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


def load_checkpoint(path: Path, model, opt, sched, cfg: TrainConfig) -> dict:
    """Restore model, optimiser, schedule and RNG in place; return the loop state (step, tokens, log, ...)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    diff = [k for k, v in _compared(cfg).items() if ckpt["config"].get(k) != v]
    if diff:
        raise GatelensError(f"the checkpoint in {path.parent} was written with a different {diff[0]} "
                            f"({ckpt['config'].get(diff[0])!r}, now {getattr(cfg, diff[0])!r}); "
                            "resume with the same settings or start afresh with --overwrite")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if ckpt["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    return {k: ckpt[k] for k in ("step", "tokens", "log", "wall_s", "recent")}


def last_loss(path: Path) -> float:
    """The final training loss a finished checkpoint recorded (for a run resumed after its last step)."""
    return torch.load(path, map_location="cpu", weights_only=True)["last_loss"]


def snapshot(work: Path, model, model_cfg: dict, tokenizer, step: int, tokens: int) -> None:
    """A loadable copy of the model as it is at `step` (weights, config, tokenizer, checkpoint.json), kept in
    the run's checkpoints/ folder for measuring across training (`gatelens emergence`)."""
    folder = work / "checkpoints" / f"step-{step:06d}"
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    state_model = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    native.save_state(state_model, tmp, model_cfg)
    tokenizer.save_pretrained(str(tmp))
    (tmp / "checkpoint.json").write_text(json.dumps({"step": step, "tokens": tokens}) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def save_final(work: Path, out: Path, model, model_cfg: dict, tokenizer, cfg: TrainConfig, training: dict) -> None:
    """Assemble the output folder next to the checkpoint, then move it into place in one rename."""
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    save_dtype = torch.bfloat16 if cfg.save_dtype == "bfloat16" else torch.float32
    native.save(model.float().cpu(), final, model_cfg, dtype=save_dtype)
    tokenizer.save_pretrained(str(final))
    shutil.copy(work / "train_log.csv", final / "train_log.csv")
    (final / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    if (work / "checkpoints").exists():
        os.replace(work / "checkpoints", final / "checkpoints")
    if out.exists():
        shutil.rmtree(out)
    os.replace(final, out)
    shutil.rmtree(work)
