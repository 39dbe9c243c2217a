"""One small trainer for gatelens' twin models: a baseline and a gated model that differ only in the gate.

    cfg = TrainConfig(out="runs/base", data="bigram-backcopy", gate="none")
    summary = train(cfg)            # -> out/: config.json, model.safetensors, tokenizer, train_log.csv, training.json

The model is transformers' Qwen3 built by `models.native.build` (the gate added by `models.gated`),
initialised as its baseline twin (`init`); the data is a pure function of (seed, step) (`data`).
Plain PyTorch loop, nanoGPT-style: AdamW, linear warm-up + cosine decay, gradient clipping, bf16
autocast on CUDA (fp32 on CPU); every `eval_every` steps one measurement pass over the validation
sequences logs loss, F-Attn and mean gate score to train_log.csv; atomic checkpoints every
`ckpt_every` steps (`checkpoint`). The library never prints: progress goes to
`on_step(step, total, loss, tokens_per_s)`.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import attention
from ..errors import GatelensError
from ..measure import Inputs, run_probes
from ..models.load import Loaded, model_info, native_family
from ..report import runtime
from .checkpoint import (discard, last_loss, load_checkpoint, save_checkpoint, save_final, snapshot, work_folder,
                         write_log)
from .config import TrainConfig
from .data import load_data
from .init import initial_state, twin_model

__all__ = ["TrainConfig", "evaluate", "initial_state", "train"]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (embeddings, projections), none on norms (nanoGPT's split)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up to lr, then cosine decay to min_lr at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def lm_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy; logits [B, T, V], x [B, T]."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1))


def as_loaded(model: nn.Module, tokenizer, cfg: TrainConfig, model_cfg: dict, device: torch.device) -> Loaded:
    """The model being trained as gatelens.load(out) will see it once saved, so gatelens' probes can measure it."""
    from ..models import native
    from ..models.families import FAMILIES

    gate = native.native_gate(model_cfg)  # None: a plain Qwen3, which gatelens.load gives to transformers
    family = native_family(gate) if gate is not None else FAMILIES[model_cfg["model_type"]]
    info = model_info(cfg.out, family, model_cfg["model_type"], model.config, tokenizer, model_cfg, device=str(device))
    return Loaded(model, tokenizer, info, family)


def eval_probes(loaded: Loaded) -> list:
    """The probes of one validation pass: every registered metric marked `in_training` that applies (F-Attn,
    next-token loss and, for a gated model, the gate scores; and any metric added to the registry so marked)."""
    from ..metrics import METRICS, exact_for

    return [cls() for cls in METRICS.values() if cls.in_training and cls.applies(loaded) and exact_for(cls, loaded) is None]


@torch.no_grad()
def evaluate(loaded: Loaded, val: torch.Tensor) -> dict:
    """Validation loss, F-Attn and mean gate score on the fixed validation sequences val [n_val, seq_len]."""
    loaded.model.eval()
    inputs = Inputs(list(val.unbind(0)), "validation", val.shape[1], True)
    probes = eval_probes(loaded)
    r = dict(zip((p.name for p in probes), run_probes(loaded, probes, inputs, batch_size=8)))
    loaded.model.train()
    gates = r.get("gates")
    other = {f"{name}_{k}": v for name, res in r.items() if name not in ("sink", "perplexity", "gates")
             for k, v in (res.columns() or res.summary()).items()}      # a metric added to the registry, logged too
    return {"val_loss": r["perplexity"].loss, "f_attn": r["sink"].f_attn,
            "mean_gate": None if gates is None else gates.mean_gate, **other}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GatelensError(f"--device {name} asked for, but this machine has no CUDA GPU; use --device cpu")
    return torch.device(name)


def hardware(device: torch.device) -> dict:
    hw = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
          "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
    return hw


def _is_cpu_oom(e: RuntimeError) -> bool:
    """PyTorch's CPU allocator reports exhaustion as a RuntimeError ("DefaultCPUAllocator: can't allocate memory")."""
    msg = str(e)
    return "can't allocate memory" in msg or "not enough memory" in msg


def train(cfg: TrainConfig, on_step: Callable[[int, int, float, float], None] | None = None) -> dict:
    """Train (or resume) one model; write the finished folder to cfg.out; return a summary dict.

    A run that stops early leaves nothing unless it wrote a checkpoint: that one is kept for --resume, and the
    error (or the interruption) says where it is."""
    out = Path(cfg.out)
    made = [p for p in out.parents if not p.exists()]   # folders made for the run: removed with it if it stops early
    work = work_folder(cfg)
    kept = f"the checkpoint in {work} is kept: --resume continues it with the same settings, --overwrite starts afresh"
    try:
        return _train(cfg, out, work, on_step)
    except KeyboardInterrupt:
        if discard(work, cfg, made):
            raise KeyboardInterrupt(kept) from None
        raise
    except GatelensError as e:
        if discard(work, cfg, made) and not cfg.resume:
            raise GatelensError(f"{e}; {kept}") from None
        raise
    except BaseException:
        discard(work, cfg, made)
        raise


def _train(cfg: TrainConfig, out: Path, work: Path, on_step) -> dict:
    ckpt_path = work / "checkpoint.pt"
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(cfg.seed)
    attention.register()

    data = load_data(cfg, work)
    model, model_cfg = twin_model(cfg, data.tokenizer, data.eval_data)
    model.to(device).train()
    loaded = as_loaded(model, data.tokenizer, cfg, model_cfg, device)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(cfg, s) / cfg.lr)
    state = {"step": 0, "tokens": 0, "log": [], "wall_s": 0.0, "recent": []}  # recent: losses since the last eval
    if cfg.resume:
        state = load_checkpoint(ckpt_path, model, opt, sched, cfg)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    if cfg.keep_checkpoints and state["step"] == 0:
        snapshot(work, model, model_cfg, data.tokenizer, 0, 0)
    t0, tokens0, wall0 = time.perf_counter(), state["tokens"], state["wall_s"]
    loss_value = float("nan")
    try:
        while state["step"] < cfg.steps:
            step = state["step"]
            x = data.batch(step).to(device)  # [B, T]
            with autocast:
                logits = model(input_ids=x, use_cache=False).logits  # [B, T, V]
            loss = lm_loss(logits, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:  # 0: no clipping (nanoGPT's convention)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                shutil.rmtree(work)  # nothing to resume: the run diverged (--out itself was never touched)
                raise GatelensError(f"the training loss is {loss_value} at step {step + 1} of {cfg.steps}: the run "
                                    f"diverged; lower --lr (now {cfg.lr:g}) or raise --warmup-steps "
                                    f"(now {cfg.warmup_steps})")
            state["recent"].append(loss_value)
            state["step"], state["tokens"] = step + 1, state["tokens"] + x.numel()
            state["wall_s"] = wall0 + time.perf_counter() - t0
            last = state["step"] == cfg.steps
            if state["step"] % cfg.eval_every == 0 or last:
                recent = state["recent"]
                try:
                    val = evaluate(loaded, data.val)
                except GatelensError as e:  # a NaN/inf validation number: say at which step it appeared
                    raise GatelensError(f"validation at step {state['step']} of {cfg.steps}: {e}") from None
                state["log"].append({"step": state["step"], "tokens": state["tokens"],
                                     "train_loss": sum(recent) / len(recent), **val,
                                     "lr": opt.param_groups[0]["lr"], "wall_s": round(state["wall_s"], 2)})
                state["recent"] = []
                write_log(work / "train_log.csv", state["log"])
            if state["step"] % cfg.ckpt_every == 0 or last:
                if cfg.keep_checkpoints:
                    snapshot(work, model, model_cfg, data.tokenizer, state["step"], state["tokens"])
                save_checkpoint(ckpt_path, model, opt, sched, cfg, {**state, "last_loss": loss_value})
            if on_step is not None:
                speed = (state["tokens"] - tokens0) / max(time.perf_counter() - t0, 1e-9)
                on_step(state["step"], cfg.steps, loss_value, speed)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        if not (isinstance(e, (torch.OutOfMemoryError, MemoryError)) or _is_cpu_oom(e)):
            raise
        where = "CUDA" if isinstance(e, torch.OutOfMemoryError) else "the CPU"
        raise GatelensError(f"{where} ran out of memory at --batch-size {cfg.batch_size} x --seq-len {cfg.seq_len}; "
                            "retry with a smaller --batch-size") from None
    if math.isnan(loss_value):  # resumed after the last step: the checkpoint holds the final loss
        loss_value = last_loss(ckpt_path)

    final = state["log"][-1]
    summary = {
        "out": str(out), "steps": state["step"], "tokens": state["tokens"], "wall_s": round(state["wall_s"], 2),
        "final_train_loss": loss_value, "final_val_loss": final["val_loss"], "final_f_attn": final["f_attn"],
        "mean_gate": final["mean_gate"], "n_params": sum(p.numel() for p in model.parameters()),
        "model_type": model_cfg["model_type"],
    }
    training = {"config": asdict(cfg), "seed": cfg.seed, "data": data.description, "summary": summary,
                "hardware": hardware(device), "runtime": runtime()}
    save_final(work, out, model, model_cfg, data.tokenizer, cfg, training)
    return summary
