"""Next-token loss and perplexity over all valid positions, from the logits the forward computes anyway."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Probe, Result


class Perplexity(Probe):
    """Summed next-token negative log-likelihood (nats) and the count of predicted tokens."""

    name = "perplexity"
    in_training = True

    def attach(self, loaded):
        super().attach(loaded)
        return [loaded.model.get_output_embeddings().register_forward_hook(self._hook)]

    def _hook(self, module, args, output):
        logits = output.float()[:, :-1]                                      # [batch, pos - 1, vocab]
        target = self.batch.input_ids[:, 1:].to(logits.device)
        valid = self.batch.valid()[:, 1:].to(logits.device)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        self.add(None, nll=float((nll * valid).sum()), n=int(valid.sum()))

    def finish(self, loaded, settings):
        a = self.acc.get(None, {"nll": 0.0, "n": 0})
        return PerplexityResult(loaded.info.to_dict(), settings, a["nll"], a["n"])


@dataclass(repr=False)
class PerplexityResult(Result):
    model: dict
    settings: dict
    nll_sum: float
    n_tokens: int

    COLUMNS: ClassVar = ("perplexity",)
    LABELS: ClassVar = {"perplexity": "perplexity"}
    RATIOS: ClassVar = ("perplexity",)

    @property
    def loss(self) -> float:
        """Mean next-token loss, nats per predicted token."""
        return self.nll_sum / max(self.n_tokens, 1)

    @property
    def perplexity(self) -> float:
        try:
            return math.exp(self.loss)
        except OverflowError:  # a finite loss above ~709 nats: reported (and refused) as inf, not a traceback
            return float("inf")

    def columns(self) -> dict:
        return {"perplexity": self.perplexity}

    @classmethod
    def from_dict(cls, d: dict) -> PerplexityResult:
        return cls(d["model"], d["settings"], d["loss"] * d["n_tokens"], d["n_tokens"])

    def to_dict(self) -> dict:
        return {"perplexity": self.perplexity, "loss": self.loss, "n_tokens": self.n_tokens,
                "model": self.model, "settings": self.settings}


Perplexity.result_type = PerplexityResult
