"""The full CPU benchmark behind benchmarks/RESULTS.md (one process per model, all methods interleaved).

    python benchmarks/run_cpu.py [--out benchmarks]

Models: the zoo's tiny-baseline (4-layer Qwen3: every pass, TransformerLens and eager), tiny-gated (the same
with the elementwise gate: the gates pass) and smollm2-135m (real weights). Lengths go up to the longest the
2-core, 24 GB machine finishes in reasonable time; TransformerLens and eager are skipped where their n x n
patterns would not fit in half the free memory (the row says so).
"""

import argparse
import datetime
import os
import sys
from pathlib import Path

import pandas as pd

import gatelens
from gatelens.bench import bench, machine
from gatelens.report import markdown

# (model, lengths, repeats, methods or None for all)
PLAN = [("tiny-baseline", [512, 2048, 8192, 32768], 3, None),
        ("tiny-gated", [2048, 8192, 32768], 3, ["bare", "gates", "all"]),
        ("smollm2-135m", [512, 2048], 3, None),
        ("smollm2-135m", [8192], 2, ["bare", "sink", "massive", "all", "tl_cache", "eager"])]


# glibc raises its mmap threshold after large frees, so freed tensors stay in the heap and the resident set
# size stops following live memory (the same pass then reads 1.0x or 1.3x from run to run). A fixed
# threshold returns every large tensor to the OS when it is freed; set before the process starts.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def main():
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent))
    args = ap.parse_args()
    frames = []
    for spec, lens, repeats, methods in PLAN:
        loaded = gatelens.load(spec)
        try:
            bridge = loaded.bridge() if methods is None or "tl_cache" in methods else None
        except gatelens.GatelensError:
            bridge = None
        rows = bench(loaded, lens, repeats=repeats, methods=methods, bridge=bridge,
                     on_row=lambda r: print(r, flush=True))
        frames.append(pd.DataFrame([vars(r) for r in rows]))
    df = pd.concat(frames, ignore_index=True)
    out = Path(args.out)
    df.to_csv(out / "results_cpu.csv", index=False, float_format="%.4g")
    cols = ["model", "seq_len", "method", "seconds", "time_ratio", "peak_mb", "mem_ratio", "tokens_per_s", "note"]
    (out / "RESULTS_cpu_table.md").write_text(
        f"Measured {datetime.date.today()} on {machine()}, torch fp32, batch 1, median of round-robin repeats, "
        f"peak = resident set size above the level before each run ({', '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())}).\n\n"
        + markdown(df[cols].round(3)))
    print(markdown(df[cols].round(3)))


if __name__ == "__main__":
    main()
