"""Train and measure the paper's gate ablation as mechanism twins: every gate variant x three seeds.

    python scripts/train_ablation.py --work runs/ablation --jobs 2        # trains what is missing, then measures
    python scripts/train_ablation.py --work runs/ablation --measure-only  # re-measures finished runs

The recipe is the mechanism zoo's (gatelens/zoo/recipes/mech.toml, i.e. scripts/train_zoo.py's RECIPE) with
two heads of 64 dimensions instead of one of 128, because the paper's head-shared gate needs at least two
heads; every variant shares the baseline's seed, initial values (gate rows apart) and batches.
Runs are resumable (each finished run is skipped when its training.json matches this recipe) and each
writes its curve (train_log.csv) and config (training.json). Results: <work>/ablation.json, one row per run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_zoo  # noqa: E402  (the zoo's recipe and its measurement)

from gatelens.train.trainer import TrainConfig, train  # noqa: E402

VARIANTS = ("none", "elementwise", "headwise", "head-shared", "input-independent", "value")
SEEDS = (0, 1, 2)
RECIPE = {**train_zoo.RECIPE, "n_heads": 2, "n_kv_heads": 2, "head_dim": 64}


def config(work: Path, seed: int, gate: str) -> TrainConfig:
    return TrainConfig(out=str(work / f"seed{seed}-{gate}"), gate=gate, seed=seed, overwrite=True, **RECIPE)


def run_one(job: tuple[str, int, str, int, bool]) -> dict:
    work, seed, gate, threads, measure_only = job
    torch.set_num_threads(threads)
    cfg = config(Path(work), seed, gate)
    out = Path(cfg.out)
    done = out / "training.json"
    t = time.perf_counter()
    if not (done.exists() and json.loads(done.read_text())["config"] == asdict(cfg)):
        if measure_only:
            return {"seed": seed, "gate": gate, "missing": True}
        train(cfg)
    summary = json.loads(done.read_text())["summary"]
    m = train_zoo.measure(out)
    row = {"seed": seed, "gate": gate, "val_loss": summary["final_val_loss"], **m}
    print(f"seed {seed} {gate:18s} F-Attn {m['f_attn']:.3f} dormant {m['f_attn_dormant']:.3f} active "
          f"{m['f_attn_active']:.3f} gate {m['mean_gate']} M-Act {m['m_act']:.1f} val {row['val_loss']:.4f} "
          f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="folder of the per-run checkpoints (kept: runs are resumable)")
    ap.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once, each on cpu_count // jobs threads")
    ap.add_argument("--measure-only", action="store_true", help="measure finished runs; train nothing")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    jobs = [(str(work), s, g, threads, args.measure_only) for s in args.seeds for g in args.variants]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(run_one, jobs))
    else:
        rows = [run_one(j) for j in jobs]
    (work / "ablation.json").write_text(json.dumps({"recipe": RECIPE, "runs": rows}, indent=1) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
