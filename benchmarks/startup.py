"""What a user waits for before the first number: start-up, a zoo measurement end to end, and a huge --text.

    python benchmarks/startup.py            # best of 3 per row; run it on a quiet machine
    python benchmarks/startup.py --repeats 5

Each row is a fresh process (`python -m gatelens ...`), timed from the outside; peak memory is the child's
maximum resident set (os.wait4). Rows, and the targets they are read against (issue: hostile inputs):

    python -c pass                              the interpreter alone
    gatelens --help                             target < 1 s: no torch, transformers, pandas or matplotlib
    import torch + transformers.modeling_utils  the floor of any command that loads a model
    gatelens sink mech-baseline                 target < 4 s end to end (load, measure, CSV/MD/PNG/PDF)
    gatelens sink tiny-baseline --text 10 KB    2 x 256 tokens
    gatelens sink tiny-baseline --text 50 MB    the same 2 x 256 tokens: target < 2 s and < 300 MB above the 10 KB row

The ratio column is each row's time over the import floor (how much of it is gatelens' own work).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GL = [sys.executable, "-m", "gatelens"]


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one child process; fails loudly if the command fails."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def best(cmd: list[str], repeats: int) -> tuple[float, float]:
    runs = [run(cmd) for _ in range(repeats)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sample = (ROOT / "gatelens" / "data" / "eval_sample.txt").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp) / "10kb.txt", Path(tmp) / "50mb.txt"
        small.write_text(sample[:10_000], encoding="utf-8")
        with open(big, "w", encoding="utf-8") as f:
            while f.tell() < 50_000_000:
                f.write(sample)
        out = str(Path(tmp) / "out")
        text = ["sink", "tiny-baseline", "--seq-len", "256", "--n-seqs", "2", "--out", out, "--text"]
        rows = [("python -c pass", [sys.executable, "-c", "pass"]),
                ("gatelens --help", GL + ["--help"]),
                ("import torch + transformers.modeling_utils",
                 [sys.executable, "-c", "import torch, transformers.modeling_utils"]),
                ("gatelens sink mech-baseline", GL + ["sink", "mech-baseline", "--out", out]),
                ("gatelens sink tiny-baseline --text 10 KB (2 x 256)", GL + text + [str(small)]),
                ("gatelens sink tiny-baseline --text 50 MB (2 x 256)", GL + text + [str(big)])]
        results = {}
        for name, cmd in rows:
            results[name] = best(cmd, args.repeats)
            print(f"  {name}: {results[name][0]:.2f} s", file=sys.stderr, flush=True)
    floor = results["import torch + transformers.modeling_utils"][0]
    print(f"best of {args.repeats}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    print("| command | wall s | peak MiB | / import floor |\n|---|---:|---:|---:|")
    for name, (wall, mib) in results.items():
        print(f"| {name} | {wall:.2f} | {mib:.0f} | {wall / floor:.2f} |")
    s10, s50 = results["gatelens sink tiny-baseline --text 10 KB (2 x 256)"], \
        results["gatelens sink tiny-baseline --text 50 MB (2 x 256)"]
    print(f"\n50 MB text over 10 KB: +{s50[0] - s10[0]:.2f} s, +{s50[1] - s10[1]:.0f} MiB "
          f"(targets: < 2 s, < 300 MB)")
    print(f"gatelens --help: {results['gatelens --help'][0]:.2f} s (target < 1 s); "
          f"sink mech-baseline: {results['gatelens sink mech-baseline'][0]:.2f} s (target < 4 s), of which the "
          f"import floor is {floor:.2f} s")


if __name__ == "__main__":
    main()
