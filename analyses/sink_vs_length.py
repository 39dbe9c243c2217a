"""F-Attn against context length, baseline vs gated: the paper's long-context argument."""

from gatelens.figures import main_for_script
from gatelens.metrics.sink import length_frame
from gatelens.plots import sink


def make(ctx, group):
    if not group.lengths:
        return []
    results = [ctx.results(m, n, max(1, min(group.n_seqs, group.n_seqs * group.seq_len // n))).sink
               for m in group.models for n in group.lengths]
    df = length_frame(results)
    df.insert(0, "model", [r.model["spec"] for r in results])
    return ctx.write(f"{group.name}_sink_vs_length", df, sink.per_length(results), [r.model for r in results[:: len(group.lengths)]],
                     {"lengths": group.lengths, "input": results[0].settings["input"]})


if __name__ == "__main__":
    main_for_script("sink_vs_length")
