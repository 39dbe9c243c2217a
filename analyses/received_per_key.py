"""Attention received per key position for one text (mean over layers and heads), baseline vs gated.

Which tokens besides the first collect attention: each key's mean weight over the queries that see it, exact
from the LSE (`gatelens.metrics.received`), on the group's attention-map text (or the model's own data).
"""

import pandas as pd

from gatelens.figures import main_for_script
from gatelens.measure import prepare_inputs
from gatelens.plots.sinks import received_profile
from gatelens.sinks import sinks


def make(ctx, group):
    results, rows = [], []
    labels = None
    for spec in group.models:
        loaded = ctx.loaded(spec)
        kw = {"text": group.text} if group.text else {}
        inputs = prepare_inputs(loaded, seq_len=group.attn_seq_len, n_seqs=1, **kw)
        r = sinks(loaded, inputs, batch_size=1).received
        ids = inputs.seqs[0].tolist()
        toks = [loaded.tokenizer.decode([t]) for t in ids]
        labels = labels or [repr(t)[1:-1] for t in toks]
        for pos, (tok, v) in enumerate(zip(toks, r.profile().tolist())):
            rows.append({"model": spec, "pos": pos, "token": tok, "received": v})
        results.append(r)
    fig = received_profile(results, tokens=labels if len({len(r.profile()) for r in results}) == 1 else None)
    return ctx.write(f"{group.name}_received_per_key", pd.DataFrame(rows), fig, [r.model for r in results],
                     {"seq_len": group.attn_seq_len, "text": group.text or "default data", "n_seqs": 1,
                      "top_not_first": {r.model["spec"]: r.top_not_first for r in results}})


if __name__ == "__main__":
    main_for_script("received_per_key")
