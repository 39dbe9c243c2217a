"""Attention-map figures: one map, or baseline and gated side by side (shared colour scale)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.colors import LogNorm, Normalize

from ..patterns import AttentionMap
from . import style

MAX_LABELS = 48


def _draw(ax, m: AttentionMap, log: bool):
    p = m.pattern.clone()
    n = p.shape[0]
    norm = LogNorm(vmin=1e-4, vmax=1.0) if log else Normalize(vmin=0.0, vmax=1.0)
    values = (p.clamp(min=1e-4) if log else p).numpy()
    if n <= MAX_LABELS:
        img = ax.imshow(values, cmap="viridis", norm=norm, interpolation="nearest")
    else:
        # Long sequence: draw the first token's column (the sink stripe) wider than one cell, so it
        # stays visible at any resolution; the axis says so.
        import numpy as np

        w0 = max(1.0, n / 30)
        xedges = np.concatenate([[0.0], w0 + np.arange(n)])
        img = ax.pcolormesh(xedges, np.arange(n + 1), values, cmap="viridis", norm=norm, rasterized=True)
        ax.set_xlim(0, xedges[-1])
        ax.set_ylim(n, 0)
        ax.set_xticks([w0 / 2], ["1st"], fontsize=6)
    who = "mean over heads" if m.head is None else f"head {m.head}"
    ax.set_title(f"{style.short_label(m.model)}\nlayer {m.layer}, {who}\n"
                 f"first-token share {m.first_token_share:.2f}\nof this one sequence ({m.n_tokens} tokens)", fontsize=8)
    if m.tokens and n <= MAX_LABELS:
        labels = [t.replace("\n", "\\n") or "␣" for t in m.tokens]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=5)
        ax.set_yticks(range(n), labels, fontsize=5)
    else:
        unit = "tokens" if m.pooled == 1 else f"first token, then blocks of {m.pooled}"
        ax.set_xlabel(f"keys (1st token widened), {n} cells")
        ax.set_ylabel(f"query position ({unit})")
    ax.grid(False)
    return img


def attention_figure(maps: list[AttentionMap], log: bool | None = None, text: str = ""):
    """One panel per map; log-scaled colours by default for long sequences."""
    style.apply()
    log = maps[0].pattern.shape[0] > 64 if log is None else log
    fig, axes = plt.subplots(1, len(maps), figsize=(3.3 * len(maps) + 0.6, 3.5), squeeze=False)
    img = None
    for ax, m in zip(axes[0], maps):
        img = _draw(ax, m, log)
    fig.colorbar(img, ax=axes[0].tolist(), shrink=0.8, label="attention weight" + (" (log)" if log else ""))
    if text:
        fig.suptitle(text, fontsize=8, y=1.08)
    return fig
