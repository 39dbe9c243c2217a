"""Loss change (nats per token) when the sink is removed, in each attention layer alone and in all at once,
baseline vs gated (`gatelens.ablate`: key 0 masked for queries >= 1, one forward per batch each)."""

import pandas as pd

from gatelens.ablate import ablate
from gatelens.figures import main_for_script
from gatelens.measure import prepare_inputs
from gatelens.plots.ablate import loss_change


def make(ctx, group):
    results = []
    for spec in group.models:
        loaded = ctx.loaded(spec)
        inputs = prepare_inputs(loaded, seq_len=group.seq_len, n_seqs=group.n_seqs)
        results.append(ablate(loaded, "sink", inputs=inputs, batch_size=ctx.config.batch_size))
    df = pd.concat([r.to_frame().assign(model=r.model["spec"]) for r in results], ignore_index=True)
    return ctx.write(f"{group.name}_sink_ablation", df, loss_change(results), [r.model for r in results],
                     {**results[0].settings, "layers": "each, then all"})


if __name__ == "__main__":
    main_for_script("sink_ablation")
