"""Per-token norms of the hidden state, key and value in every layer (Gu et al. 2024; Sun et al. 2024).

The sink token is unusual in all three: its hidden state carries the massive activations (Sun et al.), its key is
where every query's logit lands and its value is small ("value drain", Gu et al.). For every layer, the L2 norm of
each token's
  hidden   the decoder layer's output (the residual stream after the layer; hyper-connection streams flattened)
  key      its key as the attention reads it (after RoPE / k_norm), per KV head
  value    its value as the attention reads it, per KV head
summarised per position (mean over sequences and KV heads), per token string (positions >= 1, mean over occurrences,
layers and heads), and the sink token against the rest: per (KV) head, the position-0 norm summed over sequences
over the median norm of positions 1 <= j < length summed likewise (a ratio of sums), then the mean over heads and,
for the model's number, over layers (Contribution's `value_ratio` convention). Everything streams: per-position and per-token sums, no stored activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .base import Probe, Result, check_finite, hidden
from .contribution import sequence_medians
from .received import _pad_sum

Tensor = torch.Tensor
QUANTITIES = ("hidden", "key", "value")


def token_norms(x: Tensor) -> Tensor:
    """L2 norm over the last dimension in float64: [..., d] -> [...]."""
    return x.double().norm(dim=-1)


def norms_reference(x: Tensor, lengths: Tensor) -> dict[str, Tensor]:
    """Slow reference for one quantity of one layer, x [b, g, n, d] (g heads, 1 for the hidden state): the mean norm
    per position [n] over real tokens and heads, and position 0's norm over the median, per head a ratio of sums
    over sequences, then the mean over heads."""
    b, g, n, _ = x.shape
    nrm = x.double().norm(dim=-1)
    real = torch.arange(n)[None, :] < lengths[:, None]
    pos = torch.stack([nrm[:, :, j][real[:, j]].mean() if real[:, j].any() else torch.tensor(float("nan"))
                       for j in range(n)])
    seqs = [i for i in range(b) if lengths[i] > 1]
    ratios = [sum(float(nrm[i, h, 0]) for i in seqs) / sum(float(nrm[i, h, 1:lengths[i]].median()) for i in seqs)
              for h in range(g)]
    return {"position": pos, "ratio": torch.tensor(sum(ratios) / g, dtype=torch.float64)}


class Norms(Probe):
    """Norms of the hidden state, key and value of every token, per layer; position 0 against the median."""

    name = "norms"
    listens_to_attention = True
    exact_with = frozenset({"softcap", "learned_sink"})   # reads keys and values only, never the pattern
    REDUCE: ClassVar = {**{f"{q}_{f}": _pad_sum for q in QUANTITIES for f in ("pos_sum", "pos_n")},
                        **{f"{q}_tok_{f}": _pad_sum for q in QUANTITIES for f in ("sum", "n")}}

    def attach(self, loaded):
        super().attach(loaded)
        return [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(loaded.layers())]

    def _hook(self, layer: int):
        def hook(module, args, output):
            self.update(layer, "hidden", hidden(output)[:, None], self.batch)      # [b, 1, n, d]
        return hook

    def on_attention(self, ev, batch):
        n = ev.query.shape[2]
        self.update(ev.layer, "key", ev.key[:, :, -n:], batch)                    # the sequence's own keys
        if ev.value is not None:
            self.update(ev.layer, "value", ev.value[:, :, -n:], batch)

    def update(self, layer: int, what: str, x: Tensor, batch) -> None:
        """Fold one batch of one quantity, x [b, g, n, d], into the state."""
        nrm = token_norms(x.detach())                                              # [b, g, n]
        check_finite(f"the {what} norms of layer {layer}", nrm)
        b, g, n = nrm.shape
        lengths = batch.lengths.to(nrm.device)
        real = (torch.arange(n, device=nrm.device)[None, :] < lengths[:, None])    # [b, n]
        counted = lengths > 1
        med = sequence_medians(nrm, lengths)                                       # [b, g] (NaN: length 1)
        later = real.clone()
        later[:, 0] = False
        ids = batch.input_ids.to(nrm.device)[:, :n]
        per_token = nrm.mean(1)                                                    # mean over heads, [b, n]
        self.add(layer, **{f"{what}_pos_sum": (nrm * real[:, None]).sum((0, 1)).cpu(),
                           f"{what}_pos_n": (real.double() * g).sum(0).cpu(),
                           f"{what}_first": nrm[counted, :, 0].sum(0).cpu(),          # [g]
                           f"{what}_median": med[counted].sum(0).cpu()})
        self.add("tokens", **{f"{what}_tok_sum": torch.bincount(ids[later], weights=per_token[later]).cpu(),
                              f"{what}_tok_n": torch.bincount(ids[later]).double().cpu()})

    def finish(self, loaded, settings):
        text = lambda t: loaded.tokenizer.decode([t])  # noqa: E731
        layers = []
        for layer in sorted(k for k in self.acc if isinstance(k, int)):
            a = self.acc[layer]
            row = {"layer": layer}
            for q in QUANTITIES:
                if f"{q}_pos_sum" not in a:
                    continue
                prof = a[f"{q}_pos_sum"] / a[f"{q}_pos_n"].clamp(min=1)
                first, median = a[f"{q}_first"], a[f"{q}_median"]                  # per head, summed over sequences
                row[q] = {"first": float(first.mean()), "median": float(median.mean()),
                          "ratio": float((first / median).mean()),
                          "mean": float(a[f"{q}_pos_sum"].sum() / a[f"{q}_pos_n"].sum().clamp(min=1)),
                          "position": torch.where(a[f"{q}_pos_n"] > 0, prof, float("nan"))}
            layers.append(row)
        return NormsResult(model=loaded.info.to_dict(), settings=settings, layers=layers,
                           tokens=self._token_rows(text))

    def _token_rows(self, text) -> list[dict]:
        t = self.acc.get("tokens", {})
        rows: dict[str, dict] = {}
        for q in QUANTITIES:
            if f"{q}_tok_n" not in t:
                continue
            s, c = t[f"{q}_tok_sum"], t[f"{q}_tok_n"]
            s = torch.nn.functional.pad(s, (0, len(c) - len(s)))
            for tid in (c > 0).nonzero().flatten().tolist():
                r = rows.setdefault(text(tid), {"token": text(tid)})
                r[f"{q}_sum"] = r.get(f"{q}_sum", 0.0) + float(s[tid])
                r[f"{q}_n"] = r.get(f"{q}_n", 0.0) + float(c[tid])
        out = []
        for r in rows.values():
            out.append({"token": r["token"], **{q: r[f"{q}_sum"] / r[f"{q}_n"] for q in QUANTITIES if f"{q}_n" in r},
                        "n": int(r.get("hidden_n", r.get("key_n", 0)))})
        return sorted(out, key=lambda r: (-r.get("hidden", 0.0), r["token"]))


@dataclass(repr=False)
class NormsResult(Result):
    """Per layer: hidden-state, key and value norms per position and of position 0 against the median; per token."""

    model: dict
    settings: dict
    layers: list[dict] = field(default_factory=list)
    tokens: list[dict] = field(default_factory=list)

    COLUMNS: ClassVar = ()
    RATIOS: ClassVar = ()

    def ratio(self, what: str) -> float | None:
        """Mean over layers of position 0's norm over the median norm (mean over heads of per-head ratios of sums over
        sequences); None: not measured."""
        xs = [ly[what]["ratio"] for ly in self.layers if what in ly]
        return sum(xs) / len(xs) if xs else None

    def summary(self) -> dict:
        return {f"{q}_first_to_median": self.ratio(q) for q in QUANTITIES}

    def columns(self) -> dict:
        return {}

    def to_frame(self):
        """One row per layer: for each quantity position 0's norm / the median (ratio of sums) and the mean norm."""
        import pandas as pd

        return pd.DataFrame([{"layer": ly["layer"], **{f"{q}_{k}": ly[q][k] if q in ly else None
                                                        for q in QUANTITIES for k in ("ratio", "mean")}}
                             for ly in self.layers])

    def position_frame(self):
        """Mean norm per (layer, position) of each quantity."""
        import pandas as pd

        rows = []
        for ly in self.layers:
            n = max(len(ly[q]["position"]) for q in QUANTITIES if q in ly)
            for p in range(n):
                rows.append({"layer": ly["layer"], "pos": p,
                             **{q: float(ly[q]["position"][p]) if q in ly else None for q in QUANTITIES}})
        return pd.DataFrame(rows, columns=["layer", "pos", *QUANTITIES])

    def token_frame(self):
        import pandas as pd

        return pd.DataFrame(self.tokens, columns=["token", *QUANTITIES, "n"])

    def tables(self) -> dict:
        return {"norms_layers": self.to_frame(), "norms_positions": self.position_frame(),
                "norms_tokens": self.token_frame()}

    def to_dict(self) -> dict:
        return {"summary": self.summary(),
                "layers": [{"layer": ly["layer"], **{q: {k: v.tolist() if k == "position" else v for k, v in ly[q].items()}
                                                     for q in QUANTITIES if q in ly}} for ly in self.layers],
                "tokens": self.tokens[:50], "model": self.model, "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict) -> NormsResult:
        layers = [{"layer": ly["layer"], **{q: {**ly[q], "position": torch.tensor(ly[q]["position"], dtype=torch.float64)}
                                            for q in QUANTITIES if q in ly}} for ly in d["layers"]]
        return cls(d["model"], d["settings"], layers, d.get("tokens", []))

    def display(self) -> dict:
        s = self.settings
        top = ", ".join(f"{r['token']!r} {r['hidden']:.1f}" for r in self.tokens[:5] if "hidden" in r)
        return {"title": f"Token norms of {self.model['spec']} ({s['input']}, {s['n_seqs']} x {s['seq_len']} tokens)",
                "frame": self.to_frame(),
                "columns": {"layer": "layer", "hidden_ratio": "|h0|/median", "key_ratio": "|k0|/median",
                            "value_ratio": "|v0|/median", "hidden_mean": "mean |h|"},
                "total": {"layer": "model", **{f"{q}_ratio": self.ratio(q) for q in QUANTITIES}},
                "notes": ["x0/median: position 0's norm over the median of positions >= 1 of its sequence (and KV "
                          "head), ratio of sums; mean over layers in the model row",
                          f"tokens (positions >= 1) with the largest hidden-state norm: {top or 'none'}"]}


Norms.result_type = NormsResult
