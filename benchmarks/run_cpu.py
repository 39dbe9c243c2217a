"""The full CPU benchmark behind benchmarks/RESULTS.md (all methods interleaved; times and peaks in two processes).

    python benchmarks/run_cpu.py [--out benchmarks]

Models: the zoo's tiny-baseline (4-layer Qwen3: every pass, TransformerLens and eager), tiny-gated (the same
with the elementwise gate: the gates pass) and smollm2-135m (real weights). Lengths go up to the longest the
2-core, 24 GB machine finishes in reasonable time; TransformerLens and eager are skipped where their n x n
patterns would not fit in half the free memory (the row says so).
"""

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

import gatelens
from gatelens.bench import bench, machine
from gatelens.report import markdown

# (model, lengths, repeats, methods or None for all)
# tiny models: 9 repeats (a 0.1 s forward on a shared 2-core VM scatters by +-10%); TransformerLens at 8K: 5
PLAN = [("tiny-baseline", [512, 2048], 9, None),
        ("tiny-baseline", [8192], 5, None),
        ("tiny-baseline", [32768], 9, ["bare", "sink", "massive", "all", "tl_cache", "eager"]),
        ("tiny-gated", [2048, 8192, 32768], 9, ["bare", "gates", "all"]),
        ("smollm2-135m", [512, 2048], 3, None),
        ("smollm2-135m", [8192], 2, ["bare", "sink", "massive", "all", "tl_cache", "eager"])]


# Two processes, each under the allocator setting that is honest for what it measures:
# - memory: glibc raises its mmap threshold after large frees, so freed tensors stay in the heap and the resident
#   set size stops following live memory (the same pass then reads 1.0x or 1.3x from run to run). A fixed
#   threshold returns every large tensor to the OS when it is freed; set before the process starts.
# - time: that setting turns every large allocation into a fresh mmap and page faults (on this VM up to 1 ms per
#   MB), a cost no user pays, so times come from a process with glibc's defaults (and no memory sampling thread).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
MEM_COLS = ["peak_mb", "mem_ratio"]


def part(kind: str, csv_out: Path) -> None:
    frames = []
    for spec, lens, repeats, methods in PLAN:
        loaded = gatelens.load(spec)
        try:
            bridge = loaded.bridge() if methods is None or "tl_cache" in methods else None
        except gatelens.GatelensError:
            bridge = None
        rows = bench(loaded, lens, repeats=repeats, methods=methods, bridge=bridge, measure=kind,
                     on_row=lambda r: print(kind, r, flush=True))
        frames.append(pd.DataFrame([vars(r) for r in rows]))
    pd.concat(frames, ignore_index=True).to_csv(csv_out, index=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent))
    ap.add_argument("--part", choices=["time", "memory"], help=argparse.SUPPRESS)
    ap.add_argument("--part-csv", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part:
        part(args.part, Path(args.part_csv))
        return
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        csvs = {}
        for kind in ("memory", "time"):
            env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
            if kind == "memory":
                env.update(MALLOC_ENV)
            csvs[kind] = Path(tmp) / f"{kind}.csv"
            subprocess.run([sys.executable, __file__, "--part", kind, "--part-csv", str(csvs[kind])], env=env, check=True)
        t, m = pd.read_csv(csvs["time"]), pd.read_csv(csvs["memory"])
    key = ["model", "seq_len", "method"]
    df = t.drop(columns=MEM_COLS).merge(m[key + MEM_COLS], on=key, how="left")
    df = df[list(t.columns)]
    df.to_csv(out / "results_cpu.csv", index=False, float_format="%.4g")
    cols = ["model", "seq_len", "method", "seconds", "time_ratio", "peak_mb", "mem_ratio", "tokens_per_s", "note"]
    (out / "RESULTS_cpu_table.md").write_text(
        f"Measured {datetime.date.today()} on {machine()}, torch fp32, batch 1, median of round-robin repeats; "
        f"times with glibc's default allocator, peak = resident set size above the level before the run "
        f"({', '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())}), from a separate process.\n\n"
        + markdown(df[cols].round(3)))
    print(markdown(df[cols].round(3)))


if __name__ == "__main__":
    main()
