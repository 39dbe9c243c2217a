"""First-token attention share per layer, baseline vs gated."""

import pandas as pd

from gatelens.figures import main_for_script
from gatelens.plots import sink


def make(ctx, group):
    results = [r.sink for r in ctx.group_results(group)]
    df = pd.concat([r.layer_frame().assign(model=r.model["spec"]) for r in results], ignore_index=True)
    return ctx.write(f"{group.name}_sink_per_layer", df, sink.per_layer(results), [r.model for r in results],
                     results[0].settings)


if __name__ == "__main__":
    main_for_script("sink_per_layer")
