"""Input conventions shared by every command.

A text is tokenized as one stream without special tokens (a special token's string inside it is text) and cut
into consecutive, non-overlapping sequences of `seq_len` tokens, the first `n_seqs` of them. With `bos`, the model's
BOS token is prepended to each sequence and takes one of its `seq_len` places (so results compare across tools).
Sequences of different lengths batch with right padding; the metrics ignore padded positions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import GatelensError

DATA_DIR = Path(__file__).resolve().parent / "data"
DOC_SEPARATOR = "<|doc|>"
DATASETS = {"eval_sample": DATA_DIR / "eval_sample.txt"}


@dataclass
class Batch:
    input_ids: torch.Tensor       # [batch, pos], right-padded
    lengths: torch.Tensor         # [batch]
    attention_mask: torch.Tensor | None  # [batch, pos] (1 = token), None when nothing is padded
    seq_ids: list[int] | None = None  # index of each sequence in the whole input set (default 0..batch-1)

    def seq_id(self, i: int) -> int:
        return i if self.seq_ids is None else self.seq_ids[i]

    def valid(self) -> torch.Tensor:
        """[batch, pos] bool: real (not padded) positions."""
        return torch.arange(self.input_ids.shape[1])[None, :] < self.lengths[:, None]


def dataset_text(name: str) -> str:
    """The text of a shipped dataset, its documents joined by blank lines."""
    path = DATASETS.get(name)
    if path is None:
        raise GatelensError(f"unknown dataset {name!r}; shipped datasets: {', '.join(DATASETS)}")
    if not path.exists():
        raise GatelensError(f"the shipped dataset file {path} is missing; reinstall gatelens")
    raw = path.read_text(encoding="utf-8")
    return "\n\n".join(d.strip() for d in raw.split(DOC_SEPARATOR) if d.strip())


def read_text(path: str | Path) -> str:
    """A user's text file as text: UTF-8, a leading byte-order mark dropped; binary or empty files refused."""
    p = Path(path)
    if p.is_dir():
        raise GatelensError(f"{path} is a folder, not a text file; pass one UTF-8 text file")
    if not p.is_file():
        raise GatelensError(f"text file {path} not found")
    raw = p.read_bytes()
    if b"\0" in raw:
        raise GatelensError(f"{path} holds NUL bytes: a binary file, not UTF-8 text; pass a text file")
    try:
        text = raw.decode("utf-8-sig")   # a byte-order mark at the start is not part of the text
    except UnicodeDecodeError:
        raise GatelensError(f"{path} is not UTF-8 text; convert it with iconv or pass another file") from None
    if not text.strip():
        raise GatelensError(f"{path} is empty" + (" (only whitespace)" if text else "") + "; pass a file with text")
    return text


def check_length(seq_len: int, max_context: int | None) -> None:
    """The one check of a sequence length against F-Attn's minimum and the model's context window."""
    if seq_len < 2:
        raise GatelensError(f"--seq-len {seq_len} is too short; F-Attn needs at least 2 tokens per sequence")
    if max_context is not None and seq_len > max_context:
        raise GatelensError(f"--seq-len {seq_len} exceeds the model's context window of {max_context} tokens; "
                            f"use --seq-len {max_context} or less")


def sequences(tokenizer, text: str, seq_len: int, n_seqs: int, bos: bool = True,
              max_context: int | None = None) -> list[torch.Tensor]:
    """Cut a text into the first `n_seqs` consecutive sequences of `seq_len` tokens (see module doc)."""
    check_length(seq_len, max_context)
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos and bos_id is None:
        raise GatelensError("this tokenizer has no BOS token; run with --no-bos")
    body = seq_len - 1 if bos else seq_len
    ids = prefix_ids(tokenizer, text, n_seqs * body)
    if len(ids) + (1 if bos else 0) < 2:
        raise GatelensError(f"the text has {len(ids)} token(s); at least 2 are needed (give a longer text)")
    seqs = []
    for start in range(0, len(ids), body):
        chunk = ids[start:start + body]
        if len(chunk) < body and seqs:
            break  # a short tail after full sequences is dropped
        seqs.append(torch.tensor(([bos_id] if bos else []) + chunk, dtype=torch.long))
        if len(seqs) == n_seqs:
            break
    return seqs


def prefix_ids(tokenizer, text: str, need: int, margin: int = 64) -> list[int]:
    """The token ids of the text's start, at least `need` of them if the text has them, without tokenizing a
    long text whole: growing prefixes cut at a space, whose tokens (a margin before the cut) are those of the
    whole text, since byte-level BPE and SentencePiece never merge across the pre-tokenizer's word boundaries."""
    chars = max(4096, 8 * (need + margin))
    while chars < len(text):
        cut = text.rfind(" ", 0, chars)
        ids = token_ids(tokenizer, text[: cut if cut > 0 else chars])
        if len(ids) >= need + margin:
            return ids[:need]
        chars *= 4
    return token_ids(tokenizer, text)


def token_ids(tokenizer, text: str | list[str]) -> list[int] | list[list[int]]:
    """A user's text as token ids: no BOS/EOS added, and a special token's string inside the text (`<|endoftext|>`,
    `<s>` ...) tokenized as the characters it is, never as the control token."""
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def batches(seqs: Sequence[torch.Tensor], batch_size: int, pad_id: int = 0,
            seq_ids: Sequence[int] | None = None) -> Iterator[Batch]:
    """Right-padded batches; `attention_mask` is None when a batch needs no padding."""
    seq_ids = list(range(len(seqs))) if seq_ids is None else list(seq_ids)
    if batch_size < 1:
        raise GatelensError("--batch-size must be at least 1")
    for s in range(0, len(seqs), batch_size):
        group = seqs[s:s + batch_size]
        lengths = torch.tensor([len(x) for x in group])
        n = int(lengths.max())
        ids = torch.full((len(group), n), pad_id, dtype=torch.long)
        for i, x in enumerate(group):
            ids[i, : len(x)] = x
        mask = None
        if int(lengths.min()) != n:
            mask = (torch.arange(n)[None, :] < lengths[:, None]).long()
        yield Batch(ids, lengths, mask, seq_ids=seq_ids[s:s + batch_size])
