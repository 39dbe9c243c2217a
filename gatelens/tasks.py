"""Bigram-Backcopy (Guo et al. 2024, arXiv 2410.13835): the synthetic task on which a sink grows fast.

A sequence is BOS, then a random bigram chain over `vocab` symbols, except that right after one
of `n_triggers` trigger symbols the next token copies the token *before* the trigger:

    BOS  a  b  T  b  c  ...        (T a trigger: the token after T repeats b, the one before T)

A one-layer model solves the bigram part with its MLP alone, so its attention head is needed only
at trigger positions (it must look one token back). On every other query the head is "dormant"
and parks its attention on BOS: the attention sink, measured here on held-out sequences.

Everything is generated on the fly from seeds. The task's "world" (bigram table, triggers) comes
from `params["world_seed"]`; training batches from (train seed, step); evaluation sequences from
the recorded eval seed. Train and eval draw from separate seed namespaces, so they never coincide.
Token ids are the symbol ids of `models.tokenizer.symbol_tokenizer(vocab)`, with BOS = vocab.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: `gatelens --help` and TrainConfig do not need it
    import torch

from .data import check_length
from .errors import GatelensError

TASKS = ("bigram-backcopy",)



@dataclass(frozen=True)
class BigramBackcopy:
    vocab: int = 64           # symbols t0 .. t{vocab-1}; BOS is id `vocab`
    n_triggers: int = 3       # trigger symbols, chosen from the world seed
    sparsity: int = 8         # successors each symbol can have in the bigram table
    temperature: float = 1.0  # softmax temperature over the successors' Gaussian logits
    world_seed: int = 0       # bigram table + triggers: shared by training and evaluation
    trigger_choice: str = "random"  # "random" symbols, or the chain's most "frequent" ones (as Guo et al.)

    def __post_init__(self):
        if self.trigger_choice not in ("random", "frequent"):
            raise GatelensError(f"trigger_choice must be random or frequent, got {self.trigger_choice!r}")
        if self.vocab < 4:
            raise GatelensError(f"bigram-backcopy needs vocab >= 4, got {self.vocab}")
        if not 1 <= self.n_triggers <= self.vocab // 2:
            raise GatelensError(f"n_triggers must be between 1 and vocab/2 ({self.vocab // 2}), got {self.n_triggers}")
        if not 1 <= self.sparsity <= self.vocab - self.n_triggers:
            raise GatelensError(f"sparsity must be between 1 and vocab - n_triggers, got {self.sparsity}")
        if not 0 < self.temperature < float("inf"):
            raise GatelensError(f"temperature must be positive and finite, got {self.temperature}")
        if not 0 <= self.world_seed < 2**63:
            raise GatelensError(f"world_seed must be in [0, 2^63), got {self.world_seed}")

    @property
    def bos_id(self) -> int:
        return self.vocab

    @property
    def n_tokens(self) -> int:
        """Model vocabulary: the symbols plus BOS/EOS/PAD of `symbol_tokenizer`."""
        return self.vocab + 3

    def to_dict(self) -> dict:
        return asdict(self)


def task_params(task: str, **params) -> BigramBackcopy:
    if task not in TASKS:
        raise GatelensError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    types = {f.name: f.type for f in fields(BigramBackcopy)}   # "int", "float", "str" (postponed annotations)
    for key, value in params.items():
        if key not in types:
            raise GatelensError(f"bad parameters for task {task}: unknown {key!r}; known: {', '.join(types)}")
        ok = type(value).__name__ == types[key] or (types[key] == "float" and type(value) is int)
        if not ok:   # exact: a TOML true is no integer
            raise GatelensError(f"bad parameters for task {task}: {key} = {value!r} should be {types[key]}")
    return BigramBackcopy(**params)


@lru_cache(maxsize=16)
def world(p: BigramBackcopy) -> tuple[torch.Tensor, torch.Tensor]:
    """(cumulative bigram table [vocab, vocab], trigger ids [n_triggers]); trigger rows go unused.

    Two triggers never follow each other: x[1] is no trigger, and a trigger at t-1 makes x[t] a
    copy of x[t-2], which by induction is no trigger either. So every copy source is a plain symbol.
    """
    import torch

    g = torch.Generator().manual_seed(p.world_seed)
    if p.trigger_choice == "random":
        triggers = torch.randperm(p.vocab, generator=g)[: p.n_triggers].sort().values
    probs = torch.zeros(p.vocab, p.vocab)
    for a in range(p.vocab):
        succ = torch.randperm(p.vocab, generator=g)[: p.sparsity]
        logits = torch.randn(p.sparsity, generator=g) / p.temperature
        probs[a, succ] = torch.softmax(logits, 0)
    if p.trigger_choice == "frequent":  # the bigram chain's most visited symbols (its stationary distribution)
        pi = torch.full((p.vocab,), 1.0 / p.vocab, dtype=torch.float64)
        for _ in range(1000):
            pi = pi @ probs.double()
        triggers = pi.topk(p.n_triggers).indices.sort().values
    cdf = probs.cumsum(-1)
    cdf[:, -1] = 1.0 + 1e-6  # guard against rounding: every uniform sample finds a bucket
    return cdf, triggers


def seed_of(namespace: str, *parts: int) -> int:
    """A 63-bit seed from a namespace and integers (stable across runs and platforms)."""
    h = 1469598103934665603
    for x in (namespace.encode(), *[str(int(v)).encode() for v in parts]):
        for byte in x + b"|":
            h = ((h ^ byte) * 1099511628211) % (1 << 63)
    return h


def generate(p: BigramBackcopy, n_seqs: int, seq_len: int, seed: int) -> torch.Tensor:
    """[n_seqs, seq_len] token ids: BOS, then the bigram chain with back-copies after triggers."""
    import torch

    if seq_len < 2:
        raise GatelensError(f"seq_len {seq_len} is too short; a task sequence needs BOS plus at least one token")
    cdf, triggers = world(p)
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n_seqs, seq_len, generator=g)
    x = torch.empty(n_seqs, seq_len, dtype=torch.long)
    x[:, 0] = p.bos_id
    non_trigger = torch.ones(p.vocab, dtype=torch.bool)
    non_trigger[triggers] = False
    starts = non_trigger.nonzero().squeeze(1)
    x[:, 1] = starts[torch.randint(len(starts), (n_seqs,), generator=g)]
    is_trigger = ~non_trigger
    for t in range(2, seq_len):
        prev = x[:, t - 1]
        bigram = torch.searchsorted(cdf[prev], u[:, t : t + 1].contiguous()).squeeze(1)
        x[:, t] = torch.where(is_trigger[prev], x[:, t - 2], bigram)
    return x


def train_batch(p: BigramBackcopy, batch_size: int, seq_len: int, seed: int, step: int) -> torch.Tensor:
    """The training batch of one step: a pure function of (seed, step), so resuming needs only the step."""
    return generate(p, batch_size, seq_len, seed_of("train", seed, step))


def eval_sequences(eval_data: dict, seq_len: int, n_seqs: int, max_context: int | None = None) -> list[torch.torch.Tensor]:
    """Held-out sequences for a model's recorded `gatelens_eval` = {"kind": "task", "task", "seed", "params"}."""
    check_length(seq_len, max_context)
    if n_seqs < 1:
        raise GatelensError("--n-seqs must be at least 1")
    p = task_params(eval_data.get("task", ""), **eval_data.get("params", {}))
    return list(generate(p, n_seqs, seq_len, seed_of("eval", int(eval_data["seed"]))).unbind(0))


def active_queries(seq: torch.Tensor, params: dict | BigramBackcopy) -> torch.Tensor:
    """Bool [len]: query positions holding a trigger, whose next token is a back-copy ("trigger-next").

    These are the queries on which the head must attend one token back (active); every other
    query from position 1 on is dormant. Position 0 (BOS) is never counted by F-Attn.
    """
    import torch

    p = params if isinstance(params, BigramBackcopy) else task_params("bigram-backcopy", **params)
    _, triggers = world(p)
    active = torch.isin(seq, triggers)
    active[0] = False
    return active


def check_copy_rule(x: torch.Tensor, p: BigramBackcopy) -> bool:
    """True if every token after a trigger equals the token before the trigger (a task invariant)."""
    import torch

    _, triggers = world(p)
    trig = torch.isin(x[:, 1:-1], triggers)
    return bool((x[:, 2:][trig] == x[:, :-2][trig]).all())
