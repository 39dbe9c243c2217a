"""One small trainer for gatelens' twin models: a baseline and a gated model that differ only in the gate.

    cfg = TrainConfig(out="runs/base", data="bigram-backcopy", gate="none")
    summary = train(cfg)            # -> out/: config.json, model.safetensors, tokenizer, train_log.csv, training.json

The model is transformers' Qwen3 built by `models.native.build` (the gate added by `models.gated`).
Twins share everything but the gate: the parameters are drawn for the baseline-shaped model from
the seed and copied into the gated one (query rows of q_proj in the paper's grouped layout); the
gate rows come from a generator of their own. Data is a pure function of (seed, step), so the
batches, their order and the schedule are the same for both, and a resumed run needs only the step.

Plain PyTorch loop, nanoGPT-style: AdamW, linear warm-up + cosine decay, gradient clipping, bf16
autocast on CUDA (fp32 on CPU), periodic validation loss and F-Attn (`gatelens.sink`) logged to
train_log.csv, atomic checkpoints every `ckpt_every` steps. Work happens in a hidden sibling folder
`.<out>.partial/`, renamed to `out` only when training has finished. The library never prints:
progress goes to `on_step(step, total, loss, tokens_per_s)`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import attention, tasks
from .documents import read_documents
from ..errors import GatelensError
from ..models import native
from ..models.gated import GATE_KINDS, GATES, gate_rows
from ..models.load import Loaded, model_info, native_family
from ..models.tokenizer import SPECIALS, symbol_tokenizer

LOG_COLUMNS = ("step", "tokens", "train_loss", "val_loss", "f_attn", "mean_gate", "lr", "wall_s")
_NOT_COMPARED_ON_RESUME = ("resume", "overwrite", "device")


@dataclass
class TrainConfig:
    out: str                              # final output folder
    data: str = "bigram-backcopy"         # a task name or a text corpus file (documents split by <|doc|>)
    gate: str = "none"                    # none | elementwise | headwise | value
    final_norm: bool = True               # False drops the last RMSNorm (model_type "gatelens")
    qk_norm: bool = True                  # Qwen3's RMSNorm on queries and keys; False -> model_type "gatelens"
    pre_norm: bool = True                 # RMSNorm before attention and MLP; False -> model_type "gatelens"
    # model (Qwen3)
    d_model: int = 128
    n_layers: int = 1
    n_heads: int = 1
    n_kv_heads: int | None = None         # None: = n_heads
    head_dim: int | None = None           # None: d_model // n_heads
    ffn: int = 512
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    init_std: float = 0.02
    gate_init_std: float = 0.02           # gate rows; logits start near 0 (sigmoid 0.5)
    # data
    seq_len: int = 256                    # also the model's max_position_embeddings
    task_params: dict = field(default_factory=dict)  # e.g. {"vocab": 64, "n_triggers": 3}
    eval_seed: int = 1234                 # held-out task sequences (a seed namespace apart from training)
    val_data: str | None = None           # corpus only; None: the last 5% of the corpus' tokens
    bpe_vocab: int = 4096                 # corpus only: byte-level BPE trained on the training split
    # optimisation
    batch_size: int = 32
    steps: int = 500
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # bookkeeping
    eval_every: int = 50
    eval_seqs: int = 16
    ckpt_every: int = 100
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda[:i]
    save_dtype: str = "float32"           # float32 | bfloat16
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self):
        if self.gate not in GATES:
            raise GatelensError(f"unknown gate {self.gate!r}; use one of {', '.join(GATES)}")
        for name in ("d_model", "n_layers", "n_heads", "ffn", "batch_size", "steps", "eval_every", "eval_seqs",
                     "ckpt_every"):
            if getattr(self, name) < 1:
                raise GatelensError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise GatelensError(f"--seq-len {self.seq_len} is too short; use at least 2")
        self.n_kv_heads = self.n_kv_heads or self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise GatelensError(f"--n-heads {self.n_heads} is not a multiple of --n-kv-heads {self.n_kv_heads}")
        self.head_dim = self.head_dim or self.d_model // self.n_heads
        if self.head_dim < 1 or self.head_dim % 2:
            raise GatelensError(f"head_dim {self.head_dim} must be even and positive (RoPE); set --head-dim")
        if self.lr <= 0 or not 0 <= self.min_lr <= self.lr:
            raise GatelensError("--lr must be positive and --min-lr between 0 and --lr")
        if self.save_dtype not in ("float32", "bfloat16"):
            raise GatelensError(f"--save-dtype {self.save_dtype!r}; use float32 or bfloat16")
        if self.is_task:
            tasks.task_params(self.data, **self.task_params)  # raises on bad parameters
        else:
            self._check_corpus()

    @property
    def is_task(self) -> bool:
        return self.data in tasks.TASKS

    def _check_corpus(self) -> None:
        path = Path(self.data)
        if not path.exists():
            if path.suffix == "" and "/" not in self.data:
                raise GatelensError(f"unknown task {self.data!r}; known tasks: {', '.join(tasks.TASKS)} "
                                    "(or give the path of a text corpus)")
            raise GatelensError(f"corpus file {self.data} not found")
        if not path.is_file():
            raise GatelensError(f"--data {self.data} is a folder; give a text file (documents split by <|doc|>)")
        docs = read_documents(path)
        if not docs:
            raise GatelensError(f"corpus {self.data} is empty; give a text file with at least one document")
        # Byte-level BPE never makes more tokens than bytes: an upper bound, known before any tokenizer.
        most = sum(len(d.encode()) + 1 for d in docs)
        if most < self.seq_len:
            raise GatelensError(f"corpus {self.data} has at most {most} tokens, fewer than one sequence of "
                                f"{self.seq_len}; give a longer corpus or a smaller --seq-len")


# ----------------------------------------------------------------------------------------------------
# data: a task or a corpus, both as `batch(step)` + fixed validation sequences


@dataclass
class Data:
    tokenizer: object
    batch: Callable[[int], torch.Tensor]   # step -> [batch, seq_len] token ids, each row starting with BOS
    val: torch.Tensor                      # [n_val, seq_len]
    eval_data: dict                        # config.json's gatelens_eval
    description: dict


def task_data(cfg: TrainConfig) -> Data:
    p = tasks.task_params(cfg.data, **cfg.task_params)
    eval_data = {"kind": "task", "task": cfg.data, "seed": cfg.eval_seed, "params": p.to_dict()}
    val = torch.stack(tasks.eval_sequences(eval_data, cfg.seq_len, cfg.eval_seqs))
    _, triggers = tasks.world(p)
    return Data(symbol_tokenizer(p.vocab), lambda step: tasks.train_batch(p, cfg.batch_size, cfg.seq_len, cfg.seed, step),
                val, eval_data, {"task": cfg.data, **p.to_dict(), "triggers": triggers.tolist()})


def train_bpe(docs: list[str], vocab_size: int):
    """A byte-level BPE (tokenizers library) trained on `docs`, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS)


def corpus_data(cfg: TrainConfig, work: Path) -> Data:
    """Documents -> one token stream (each document followed by EOS); a sequence is BOS + a window."""
    from transformers import PreTrainedTokenizerFast

    docs = read_documents(Path(cfg.data))
    tok_dir = work / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():  # resuming: the very tokenizer the checkpoint was trained with
        tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    else:
        tok = train_bpe(docs, cfg.bpe_vocab)
        tok.save_pretrained(str(tok_dir))

    def stream(texts: list[str]) -> torch.Tensor:
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        return torch.tensor([t for doc in ids for t in (*doc, tok.eos_token_id)], dtype=torch.long)

    body = cfg.seq_len - 1
    if cfg.val_data is not None:
        train_ids, val_ids = stream(docs), stream(read_documents(Path(cfg.val_data)))
    else:
        all_ids = stream(docs)
        n_val = max(body, len(all_ids) // 20)
        train_ids, val_ids = all_ids[:-n_val], all_ids[-n_val:]
    if len(train_ids) < body or len(val_ids) < body:
        raise GatelensError(f"corpus {cfg.data} has {len(train_ids) + len(val_ids)} tokens, fewer than one training "
                            f"and one validation sequence of {cfg.seq_len}; give a longer corpus or a smaller --seq-len")
    bos = torch.tensor([tok.bos_token_id])
    n_val = min(cfg.eval_seqs, len(val_ids) // body)
    val = torch.stack([torch.cat([bos, val_ids[i * body:(i + 1) * body]]) for i in range(n_val)])

    def batch(step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(tasks.seed_of("train", cfg.seed, step))
        starts = torch.randint(0, len(train_ids) - body + 1, (cfg.batch_size,), generator=g)
        return torch.stack([torch.cat([bos, train_ids[s:s + body]]) for s in starts.tolist()])

    eval_data = {"kind": "dataset", "dataset": "eval_sample"}
    return Data(tok, batch, val, eval_data, {"corpus": str(cfg.data), "train_tokens": len(train_ids),
                                             "val_tokens": len(val_ids), "bpe_vocab": len(tok)})


def load_data(cfg: TrainConfig, work: Path) -> Data:
    return task_data(cfg) if cfg.is_task else corpus_data(cfg, work)


# ----------------------------------------------------------------------------------------------------
# model: config.json in the most standard format the model allows, and twin initialisation


def model_config(cfg: TrainConfig, tokenizer, eval_data: dict, gate: str | None = None) -> dict:
    """config.json: plain "qwen3" (no gate, final norm), the paper's "qwen3" + gate flag, or "gatelens"."""
    from transformers import Qwen3Config

    gate = cfg.gate if gate is None else gate
    base = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=cfg.d_model, intermediate_size=cfg.ffn,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.seq_len, tie_word_embeddings=cfg.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta}, initializer_range=cfg.init_std,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ).to_diff_dict()
    base.pop("transformers_version", None)
    out = {**base, "architectures": ["Qwen3ForCausalLM"], "gatelens_eval": eval_data}
    standard = cfg.final_norm and cfg.qk_norm and cfg.pre_norm
    if standard and gate == "none":
        return out
    if standard and gate in ("elementwise", "headwise"):
        return {**out, f"{gate}_attn_output_gate": True}
    return {**out, "model_type": native.NATIVE_MODEL_TYPE, "gate": gate, "final_norm": cfg.final_norm,
            "use_qk_norm": cfg.qk_norm, "pre_norm": cfg.pre_norm}


@torch.no_grad()
def init_model(cfg: TrainConfig, model_cfg: dict, baseline_cfg: dict) -> nn.Module:
    """The seeded model: every shared parameter equals the baseline's, whatever the gate."""
    attention.register()
    base = native.build(baseline_cfg, torch.float32, attention.ATTN_NAME)
    g = torch.Generator().manual_seed(cfg.seed)
    for name, p in base.named_parameters():  # tied lm_head appears once, as embed_tokens
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            p.copy_(torch.randn(p.shape, generator=g) * cfg.init_std)
    if cfg.gate == "none":
        return base
    model = native.build(model_cfg, torch.float32, attention.ATTN_NAME)
    shared = dict(base.named_parameters())
    proj, keep, gate_idx = gate_rows(cfg.gate, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim)
    g_gate = torch.Generator().manual_seed(tasks.seed_of("gate", cfg.seed))
    for name, p in model.named_parameters():
        if name.endswith(f"{proj}.weight"):
            p[keep] = shared[name]
            p[gate_idx] = torch.randn(len(gate_idx), p.shape[1], generator=g_gate) * cfg.gate_init_std
        elif name.endswith("gate_logit"):  # input-independent gate: its logits start near 0 like the others'
            p.copy_(torch.randn(p.shape, generator=g_gate) * cfg.gate_init_std)
        else:
            p.copy_(shared[name])
    return model


def initial_state(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The step-0 parameters `train(cfg)` starts from (for tests: twins share every baseline parameter)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = load_data(cfg, Path(tmp))
    model = init_model(cfg, model_config(cfg, data.tokenizer, data.eval_data),
                       model_config(cfg, data.tokenizer, data.eval_data, gate="none"))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def as_loaded(model: nn.Module, tokenizer, cfg: TrainConfig, model_cfg: dict, device: torch.device) -> Loaded:
    """The model being trained as gatelens.load(out) will see it once saved, so gatelens' probes can measure it."""
    family = native_family(cfg.gate)
    info = model_info(cfg.out, family, model_cfg["model_type"], model.config, tokenizer, model_cfg, device=str(device))
    return Loaded(model, tokenizer, info, family)


# ----------------------------------------------------------------------------------------------------
# optimisation


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


@torch.no_grad()
def evaluate(loaded: Loaded, val: torch.Tensor, gate: str) -> dict:
    """Validation loss, F-Attn (gatelens.sink) and mean gate score on the fixed validation sequences."""
    from ..measure import Inputs, sink

    model = loaded.model
    model.eval()
    device = next(model.parameters()).device
    gate_sum, gate_n, hooks = [0.0], [0], []
    if gate != "none":
        def on_gate(_module, _inp, logits):
            s = torch.sigmoid(logits.float())
            gate_sum[0] += float(s.sum())
            gate_n[0] += s.numel()
        hooks = [layer.self_attn.get_submodule(GATE_KINDS[gate].module).register_forward_hook(on_gate)
                 for layer in loaded.layers()]
    try:
        losses = [float(lm_loss(model(input_ids=x[None].to(device), use_cache=False).logits, x[None].to(device)))
                  for x in val]
    finally:
        for h in hooks:
            h.remove()
    f_attn = sink(loaded, Inputs(list(val.unbind(0)), "validation", val.shape[1], True), batch_size=8).f_attn
    model.train()
    return {"val_loss": sum(losses) / len(losses), "f_attn": f_attn,
            "mean_gate": gate_sum[0] / gate_n[0] if gate_n[0] else None}


# ----------------------------------------------------------------------------------------------------
# checkpoints and outputs


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_log(path: Path, rows: list[dict]) -> None:
    def write(tmp: Path):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
            w.writeheader()
            w.writerows({k: ("" if r.get(k) is None else r[k]) for k in LOG_COLUMNS} for r in rows)
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


def hardware(device: torch.device) -> dict:
    hw = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
          "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
    return hw


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GatelensError(f"--device {name} asked for, but this machine has no CUDA GPU; use --device cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------------------------------
# the loop


def _is_cpu_oom(e: RuntimeError) -> bool:
    """PyTorch's CPU allocator reports exhaustion as a RuntimeError ("DefaultCPUAllocator: can't allocate memory")."""
    msg = str(e)
    return "can't allocate memory" in msg or "not enough memory" in msg


def train(cfg: TrainConfig, on_step: Callable[[int, int, float, float], None] | None = None) -> dict:
    """Train (or resume) one model; write the finished folder to cfg.out; return a summary dict."""
    out = Path(cfg.out)
    work = out.parent / f".{out.name}.partial"
    ckpt_path = work / "checkpoint.pt"
    if out.exists() and not cfg.overwrite:
        raise GatelensError(f"{out} already exists; choose another --out or pass --overwrite")
    if cfg.resume and not ckpt_path.exists():
        raise GatelensError(f"no checkpoint to resume in {work}; start without --resume")
    if not cfg.resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)

    device = resolve_device(cfg.device)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(cfg.seed)
    attention.register()

    data = load_data(cfg, work)
    model_cfg = model_config(cfg, data.tokenizer, data.eval_data)
    model = init_model(cfg, model_cfg, model_config(cfg, data.tokenizer, data.eval_data, gate="none")).to(device)
    model.train()
    loaded = as_loaded(model, data.tokenizer, cfg, model_cfg, device)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(cfg, s) / cfg.lr)
    state = {"step": 0, "tokens": 0, "log": [], "wall_s": 0.0, "recent": []}  # recent: losses since the last eval
    if cfg.resume:
        state = load_checkpoint(ckpt_path, model, opt, sched, cfg)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    t0, tokens0, wall0 = time.perf_counter(), state["tokens"], state["wall_s"]
    loss_value = float("nan")
    try:
        while state["step"] < cfg.steps:
            step = state["step"]
            x = data.batch(step).to(device)  # [B, T]
            with autocast:
                logits = model(input_ids=x, use_cache=False).logits
            loss = lm_loss(logits, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            loss_value = float(loss.detach())
            state["recent"].append(loss_value)
            state["step"], state["tokens"] = step + 1, state["tokens"] + x.numel()
            state["wall_s"] = wall0 + time.perf_counter() - t0
            if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.steps:
                recent = state["recent"]
                row = {"step": state["step"], "tokens": state["tokens"], "train_loss": sum(recent) / len(recent),
                       **evaluate(loaded, data.val, cfg.gate), "lr": opt.param_groups[0]["lr"],
                       "wall_s": round(state["wall_s"], 2)}
                state["log"].append(row)
                state["recent"] = []
                write_log(work / "train_log.csv", state["log"])
            if state["step"] % cfg.ckpt_every == 0 or state["step"] == cfg.steps:
                save_checkpoint(ckpt_path, model, opt, sched, cfg, {**state, "last_loss": loss_value})
            if on_step is not None:
                speed = (state["tokens"] - tokens0) / max(time.perf_counter() - t0, 1e-9)
                on_step(state["step"], cfg.steps, loss_value, speed)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        if not (isinstance(e, (torch.OutOfMemoryError, MemoryError)) or _is_cpu_oom(e)):
            raise
        where = "CUDA" if isinstance(e, torch.OutOfMemoryError) else "the CPU"
        raise GatelensError(f"{where} ran out of memory at --batch-size {cfg.batch_size} x --seq-len {cfg.seq_len}; "
                            f"retry with a smaller --batch-size (the run resumes from its last checkpoint with "
                            f"--resume)") from None
    if math.isnan(loss_value):  # resumed after the last step: the checkpoint holds the final loss
        loss_value = torch.load(ckpt_path, map_location="cpu", weights_only=True)["last_loss"]

    # Finished: assemble the output next to the checkpoint, then move it into place in one rename.
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    save_dtype = torch.bfloat16 if cfg.save_dtype == "bfloat16" else torch.float32
    native.save(model.float().cpu(), final, model_cfg, dtype=save_dtype)
    data.tokenizer.save_pretrained(str(final))
    shutil.copy(work / "train_log.csv", final / "train_log.csv")
    last = state["log"][-1]
    summary = {
        "out": str(out), "steps": state["step"], "tokens": state["tokens"], "wall_s": round(state["wall_s"], 2),
        "final_train_loss": loss_value, "final_val_loss": last["val_loss"], "final_f_attn": last["f_attn"],
        "mean_gate": last["mean_gate"], "n_params": sum(p.numel() for p in model.parameters()),
        "model_type": model_cfg.get("model_type", "qwen3"),
    }
    training = {"config": asdict(cfg), "seed": cfg.seed, "data": data.description, "summary": summary,
                "hardware": hardware(device)}
    (final / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(final, out)
    shutil.rmtree(work)
    return summary
