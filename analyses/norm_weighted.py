"""Norm-weighted F-Attn (key 0's share of the norms |a_ij v_j W_O|) next to plain F-Attn, per layer, baseline vs
gated: how much of the attention on the sink is a no-op (value drain)."""

import pandas as pd

from gatelens.figures import main_for_script
from gatelens.plots.sinks import norm_weighted


def make(ctx, group):
    results = [r.contribution for r in ctx.group_results(group)]
    df = pd.concat([r.layer_frame().assign(model=r.model["spec"]) for r in results], ignore_index=True)
    return ctx.write(f"{group.name}_norm_weighted", df, norm_weighted(results), [r.model for r in results],
                     results[0].settings)


if __name__ == "__main__":
    main_for_script("norm_weighted")
