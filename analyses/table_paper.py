"""The paper's table: F-Attn, sink rate, M-Act, mean gate score, perplexity (+ our rank columns)."""

import matplotlib.pyplot as plt
import pandas as pd

from gatelens.compare import Comparison
from gatelens.figures import main_for_script
from gatelens.plots import style


def make(ctx, group):
    measured = ctx.group_results(group)
    df = Comparison(measured).to_frame() if len(measured) > 1 else pd.DataFrame([measured[0].row()])
    style.apply()
    fig, axes = plt.subplots(1, 3, figsize=(style.FULL_WIDTH, 2.3))
    names = [style.short_label(r.info) for r in measured]
    for ax, (col, label, log) in zip(axes, [("f_attn", "F-Attn", False), ("m_act", "M-Act (max |h|)", True),
                                             ("perplexity", "perplexity", False)]):
        ax.bar(range(len(df)), df[col], color=[style.color(i) for i in range(len(df))])
        for i, v in enumerate(df[col]):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(df)), names, rotation=20, ha="right", fontsize=6)
        ax.set_title(label)
        if log:
            ax.set_yscale("log")
    fig.suptitle(f"{group.title or group.name}: the paper's table, {group.n_seqs} x {group.seq_len} tokens",
                 fontsize=9)
    fig.tight_layout()
    return ctx.write(f"{group.name}_table", df, fig, [r.info for r in measured],
                     {"seq_len": group.seq_len, "n_seqs": group.n_seqs, "input": measured[0].sink.settings["input"]})


if __name__ == "__main__":
    main_for_script("table_paper")
