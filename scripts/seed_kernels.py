"""The mechanism twins' findings over seeds and CPU kernel sets (issue: claims that hold on any machine).

    python scripts/seed_kernels.py --work runs/seed-kernels                  # trains what is missing, within budget
    python scripts/seed_kernels.py --work runs/seed-kernels --budget-hours 5 # the whole grid's bound (CPU-hours)
    python scripts/seed_kernels.py --work runs/seed-kernels --jobs 2         # two runs at once (echo 1 > runs/seed-kernels/jobs
                                                                             # slows it to one when a run ends)
    python scripts/seed_kernels.py --work runs/seed-kernels --report         # tables from the finished runs

Why: ATen picks its CPU kernels at start-up (AVX-512 where the processor has it, else AVX2); their rounding differs
by ~1e-8, and under the mech recipe's lr 1e-2 that grew into a different outcome for the 1-head value-gated twin
(F-Attn 0.742 under AVX-512, 0.136 under AVX2, same seed, data and initial weights). A single run is an anecdote, so
every twin is trained at seeds 0-4 under each kernel set this machine offers (`ATEN_CPU_CAPABILITY=avx2` and the
default), each run in its own process (the variable is read when torch starts), one thread each.

What a finished run leaves is committed to the repository (gatelens/zoo/seed_kernels/: result.json, the curve
train_log.csv and training.json per run, and ledger.csv, the CPU time each run took), so a later session on another
machine skips it; its weights stay in --work.

The grid: the 1-head value twin of the mech recipe (`mech-value`) and the six 2-head ablation variants
(scripts/train_ablation.py's RECIPE). Runs are resumable (the trainer's checkpoints) and skipped when finished;
every finished run writes <work>/<kernel>/<model>-s<seed>/result.json (the measurement, the kernel set torch
reported, CPU seconds) and appends a line to <work>/ledger.csv, so the budget is written down as it is spent.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RECORD = ROOT.parent / "gatelens" / "zoo" / "seed_kernels"   # committed: what every finished run measured
KERNELS = ("default", "avx2")  # "default": what ATen picks on this machine (AVX512 on an AVX-512 processor)
SEEDS = (0, 1, 2, 3, 4)
# (model, gate): the 1-head value twin first (the finding that flipped), then the ablation's baseline and G1
# elementwise (the paper's main contrast), then the other gates.
MODELS = (("mech-value", "value"), ("ablate-none", "none"), ("ablate-elementwise", "elementwise"),
          ("ablate-value", "value"), ("ablate-headwise", "headwise"), ("ablate-head-shared", "head-shared"),
          ("ablate-input-independent", "input-independent"))
LEDGER_COLUMNS = ("finished_at", "kernel", "model", "seed", "cpu_s", "wall_s", "capability", "f_attn")


def run_folder(work: Path, kernel: str, model: str, seed: int) -> Path:
    return work / kernel / f"{model}-s{seed}"


def config(work: Path, kernel: str, model: str, gate: str, seed: int):
    sys.path.insert(0, str(ROOT))
    import train_ablation
    import train_zoo

    from gatelens.train import TrainConfig
    recipe = train_zoo.RECIPE if model.startswith("mech-") else train_ablation.RECIPE
    return TrainConfig(out=str(run_folder(work, kernel, model, seed) / "model"), gate=gate, seed=seed,
                       overwrite=True, **recipe)


def one(work: Path, kernel: str, model: str, gate: str, seed: int) -> None:
    """Train (or resume) and measure one run, in this process (its ATEN_CPU_CAPABILITY is already set)."""
    import torch

    sys.path.insert(0, str(ROOT))
    import train_zoo

    from gatelens.train import train
    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = config(work, kernel, model, gate, seed)
    out = Path(cfg.out)
    partial = out.parent / f".{out.name}.partial"
    done = out / "training.json"
    if not (done.exists() and json.loads(done.read_text())["config"] == asdict(cfg)):
        cfg.resume = (partial / "checkpoint.pt").exists()
        train(cfg)
    training = json.loads(done.read_text())
    row = {"model": model, "gate": gate, "seed": seed, "kernel": kernel,
           "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
           "val_loss": training["summary"]["final_val_loss"], **train_zoo.measure(out),
           "cpu_s": round(time.process_time() - c0, 1), "wall_s": round(time.perf_counter() - t0, 1)}
    (out.parent / "result.json").write_text(json.dumps(row, indent=1) + "\n")


def record(work: Path, kernel: str, model: str, seed: int) -> Path:
    """Copy a finished run's result, curve and config into the committed record; return its folder."""
    import shutil

    src = run_folder(work, kernel, model, seed)
    dst = RECORD / kernel / f"{model}-s{seed}"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "result.json", dst / "result.json")
    for name in ("train_log.csv", "training.json"):
        shutil.copy(src / "model" / name, dst / name)
    return dst


def ledger(work: Path) -> list[dict]:
    path = RECORD / "ledger.csv"
    return list(csv.DictReader(path.open())) if path.exists() else []


def _launch(work: Path, kernel: str, model: str, gate: str, seed: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT.parent), os.environ.get("PYTHONPATH")))))
    env.pop("ATEN_CPU_CAPABILITY", None)
    if kernel != "default":
        env["ATEN_CPU_CAPABILITY"] = kernel
    return subprocess.Popen([sys.executable, __file__, "--work", str(work), "--one", kernel, model, gate, str(seed)],
                            env=env)


def _jobs(work: Path, jobs: int) -> int:
    """How many runs may go at once: --jobs, or the number in <work>/jobs when that file exists (it is read each
    time a run ends, so a long grid can be slowed to one process, or drained with 0, without stopping a run)."""
    path = work / "jobs"
    try:
        return max(0, int(path.read_text().strip())) if path.exists() else jobs
    except ValueError:
        return jobs


def _finish(work: Path, kernel: str, model: str, seed: int, cpu: float, wall: float, spent: float,
            budget_h: float) -> None:
    row = json.loads((run_folder(work, kernel, model, seed) / "result.json").read_text())
    record(work, kernel, model, seed)
    path = RECORD / "ledger.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LEDGER_COLUMNS)
        if new:
            w.writeheader()
        w.writerow({"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "kernel": kernel, "model": model,
                    "seed": seed, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
                    "capability": row["capability"], "f_attn": round(row["f_attn"], 4)})
    write_table()
    print(f"{kernel:7s} {model:26s} seed {seed}: F-Attn {row['f_attn']:.3f} dormant "
          f"{row['f_attn_dormant']:.3f} val {row['val_loss']:.4f} ({cpu:.0f} CPU-s; "
          f"{spent / 3600:.2f} of {budget_h} CPU-hours)", flush=True)


def drive(work: Path, budget_h: float, seeds, models, kernels, jobs: int = 1) -> None:
    """Train every missing run of the grid, up to `jobs` processes at once (one torch thread each), within budget.

    Each process's CPU time is read from its own rusage (os.wait4) and written to the ledger when it ends."""
    work.mkdir(parents=True, exist_ok=True)
    RECORD.mkdir(parents=True, exist_ok=True)
    spent = sum(float(r["cpu_s"]) for r in ledger(work))
    todo = [(kernel, model, gate, seed) for seed in seeds for model, gate in models for kernel in kernels
            if not (RECORD / kernel / f"{model}-s{seed}" / "result.json").exists()]
    running: dict[int, tuple] = {}
    failures = 0
    while todo or running:
        while todo and len(running) < _jobs(work, jobs):
            if spent >= budget_h * 3600:
                print(f"budget of {budget_h} CPU-hours spent ({spent / 3600:.2f}); starting no more runs", flush=True)
                todo = []
                break
            kernel, model, gate, seed = todo.pop(0)
            proc = _launch(work, kernel, model, gate, seed)
            running[proc.pid] = (proc, kernel, model, seed, time.perf_counter())
        if not running:
            break
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        proc, kernel, model, seed, t = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
        spent += cpu
        if proc.returncode != 0:
            failures += 1
            print(f"{kernel} {model} seed {seed}: failed (exit {proc.returncode})", flush=True)
            if failures >= 2:
                print("two runs failed; starting no more (see their output above)", flush=True)
                todo = []
            continue
        _finish(work, kernel, model, seed, cpu, time.perf_counter() - t, spent, budget_h)


def rows() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RECORD.glob("*/*/result.json"))]


def _stat(xs: list[float]) -> str:
    if not xs:
        return "—"
    m = sum(xs) / len(xs)
    sd = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else float("nan")
    return f"{m:.3f} ± {sd:.3f}" if len(xs) > 1 else f"{m:.3f}"


def write_table() -> Path:
    """RECORD/README.md: every finished run, mean ± sd per (model, kernel set), and the budget spent so far."""
    rs = rows()
    spent = sum(float(r["cpu_s"]) for r in ledger(Path(".")))
    lines = ["# The mech twins over seeds and CPU kernel sets", "",
             "Made by `python scripts/seed_kernels.py --work runs/seed-kernels` (resumable; `--table` rewrites this page "
             "from the runs recorded here). Each run: the recipe's 3000 steps at one seed, in its own process on one "
             "torch thread, under ATen's default kernels (`default`: AVX512 on this AVX-512 machine) or "
             "`ATEN_CPU_CAPABILITY=avx2`; measured on the 8 held-out task sequences of 256 tokens. "
             f"Budget: {spent / 3600:.2f} of 5 CPU-hours spent (ledger.csv; a run that was interrupted and resumed "
             "counts only its last process).", "",
             "| model | kernel set | runs (seeds) | F-Attn | F-Attn, dormant queries | mean gate | val loss |",
             "|---|---|---|---:|---:|---:|---:|"]
    for model, _ in MODELS:
        for kernel in KERNELS:
            g = [r for r in rs if r["model"] == model and r["kernel"] == kernel]
            if g:
                gates = [r["mean_gate"] for r in g if r.get("mean_gate") is not None]
                lines.append(f"| {model} | {kernel} ({g[0]['capability']}) | {len(g)} "
                             f"({', '.join(str(r['seed']) for r in sorted(g, key=lambda r: r['seed']))}) | "
                             f"{_stat([r['f_attn'] for r in g])} | {_stat([r['f_attn_dormant'] for r in g])} | "
                             f"{_stat(gates)} | {_stat([r['val_loss'] for r in g])} |")
    lines += ["", "## Every run", "", "| model | seed | kernel set | F-Attn | dormant | trigger | mean gate | val loss |",
              "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rs, key=lambda r: ([m for m, _ in MODELS].index(r["model"]), r["seed"], r["kernel"])):
        gate = "—" if r.get("mean_gate") is None else f"{r['mean_gate']:.3f}"
        lines.append(f"| {r['model']} | {r['seed']} | {r['kernel']} ({r['capability']}) | {r['f_attn']:.3f} | "
                     f"{r['f_attn_dormant']:.3f} | {r['f_attn_active']:.3f} | {gate} | {r['val_loss']:.4f} |")
    path = RECORD / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="folder of the runs (kept: resumable)")
    ap.add_argument("--budget-hours", type=float, default=5.0, help="CPU-hours for the whole grid, ledger included")
    ap.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    ap.add_argument("--models", nargs="*", default=[m for m, _ in MODELS], choices=[m for m, _ in MODELS])
    ap.add_argument("--kernels", nargs="*", default=list(KERNELS), choices=KERNELS)
    ap.add_argument("--jobs", type=int, default=1, help="runs at once, one torch thread each (<work>/jobs overrides)")
    ap.add_argument("--report", action="store_true", help="print every finished run as JSON; train nothing")
    ap.add_argument("--table", action="store_true", help="rewrite the record's README.md table; train nothing")
    ap.add_argument("--one", nargs=4, metavar=("KERNEL", "MODEL", "GATE", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        kernel, model, gate, seed = args.one
        one(args.work, kernel, model, gate, int(seed))
    elif args.table:
        print(write_table())
    elif args.report:
        print(json.dumps(rows(), indent=1))
    else:
        drive(args.work, args.budget_hours, args.seeds, [m for m in MODELS if m[0] in args.models], args.kernels,
              args.jobs)


if __name__ == "__main__":
    main()
