"""Training data, a task or a text corpus, both as `batch(step)` plus fixed validation sequences.

A batch is a pure function of (seed, step), so twins see the same batches in the same order and a
resumed run needs only the step. Every sequence starts with BOS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import tasks
from ..data import token_ids
from ..errors import GatelensError
from ..models.tokenizer import SPECIALS, symbol_tokenizer
from .config import TrainConfig
from .documents import read_documents


@dataclass
class Data:
    tokenizer: object
    batch: Callable[[int], torch.Tensor]   # step -> [batch, seq_len] token ids, each row starting with BOS
    val: torch.Tensor                      # [n_val, seq_len]
    eval_data: dict                        # config.json's gatelens_eval
    description: dict                      # training.json's data


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

    docs = read_documents(cfg.data)
    tok_dir = work / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():  # resuming: the very tokenizer the checkpoint was trained with
        tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    else:
        tok = train_bpe(docs, cfg.bpe_vocab)
        tok.save_pretrained(str(tok_dir))

    def stream(texts: list[str]) -> torch.Tensor:  # [n_tokens]
        ids = token_ids(tok, texts)
        return torch.tensor([t for doc in ids for t in (*doc, tok.eos_token_id)], dtype=torch.long)

    body = cfg.seq_len - 1
    if cfg.val_data is not None:
        train_ids, val_ids = stream(docs), stream(read_documents(cfg.val_data))
    else:
        all_ids = stream(docs)
        n_val = max(body, len(all_ids) // 20)
        train_ids, val_ids = all_ids[:-n_val], all_ids[-n_val:]
    if len(train_ids) < body or len(val_ids) < body:
        raise GatelensError(f"corpus {cfg.data} has {len(train_ids) + len(val_ids)} tokens, fewer than one training "
                            f"and one validation sequence of {cfg.seq_len}; give a longer corpus or a smaller --seq-len")
    bos = torch.tensor([tok.bos_token_id])
    n_val = min(cfg.eval_seqs, len(val_ids) // body)
    val = torch.stack([torch.cat([bos, val_ids[i * body:(i + 1) * body]]) for i in range(n_val)])  # [n_val, seq_len]

    def batch(step: int) -> torch.Tensor:  # [batch_size, seq_len]
        g = torch.Generator().manual_seed(tasks.seed_of("train", cfg.seed, step))
        starts = torch.randint(0, len(train_ids) - body + 1, (cfg.batch_size,), generator=g)
        return torch.stack([torch.cat([bos, train_ids[s:s + body]]) for s in starts.tolist()])

    eval_data = {"kind": "dataset", "dataset": "eval_sample"}
    return Data(tok, batch, val, eval_data, {"corpus": str(cfg.data), "train_tokens": len(train_ids),
                                             "val_tokens": len(val_ids), "bpe_vocab": len(tok)})


def load_data(cfg: TrainConfig, work: Path) -> Data:
    """The run's data; `work` holds a corpus run's tokenizer (trained once, reused on resume)."""
    return task_data(cfg) if cfg.is_task else corpus_data(cfg, work)
