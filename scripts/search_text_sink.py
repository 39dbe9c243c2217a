"""A bounded, recorded search for a text recipe whose baseline grows a first-token sink (issue: F-Attn >= 0.3).

    python scripts/build_corpus.py                              # once: corpus/train.txt, corpus/val.txt
    python scripts/search_text_sink.py --work runs/text-search  # runs the candidates in order, within the budget
    python scripts/search_text_sink.py --work runs/text-search --report   # only rewrites the record

Every candidate is the text twins' recipe (gatelens/zoo/recipes/text.toml) with the overrides listed in
CANDIDATES, trained as a baseline (no gate) on one CPU thread, seed 0. The search stops before its CPU budget
(default 3 CPU-hours in total, counted over every run it ever started, across sessions) would be exceeded.
Runs are resumable: an interrupted run continues from its last checkpoint (`resume`), a finished one is
skipped. The record, gatelens/zoo/TEXT_SEARCH.md, holds each candidate's overrides, cost and its F-Attn /
validation-loss curve (from train_log.csv, measured by the trainer every `eval_every` steps on validation
sequences of 256 tokens).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from gatelens.train import RECIPES, TrainConfig, read_recipe, train

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "gatelens" / "zoo" / "TEXT_SEARCH.md"
BASE = read_recipe(RECIPES / "text.toml")
TARGET = 0.3
NO_NORM = {"pre_norm": False, "final_norm": False, "qk_norm": False}
# name -> (why, overrides of the text recipe). In the order they are tried.
CANDIDATES: dict[str, tuple[str, dict]] = {
    "T1-nonorm-lr1e-2": ("no RMSNorm anywhere at a higher learning rate (what grew the sink in the zoo search)",
                         {**NO_NORM, "n_layers": 2, "lr": 1e-2, "min_lr": 1e-3, "steps": 1500}),
    "T2-small-long": ("a smaller model trained longer (2 layers, d_model 64, 4 heads of 16)",
                      {"n_layers": 2, "d_model": 64, "head_dim": 16, "ffn": 256, "steps": 5000}),
    "T3-nofinal-lr1e-2": ("the 4-layer text recipe without the final RMSNorm at lr 1e-2",
                          {"final_norm": False, "lr": 1e-2, "min_lr": 1e-3, "steps": 1500}),
    "T4-wide-1layer": ("fewer, wider layers: 1 layer, d_model 256, 4 heads of 64",
                       {"n_layers": 1, "d_model": 256, "head_dim": 64, "ffn": 1024, "steps": 1500}),
}


def config(work: Path, name: str) -> TrainConfig:
    fields = {**BASE, **CANDIDATES[name][1], "eval_every": 100, "ckpt_every": 100, "seed": 0}
    return TrainConfig(out=str(work / name), gate="none", overwrite=True, **fields)


def finished(cfg: TrainConfig) -> bool:
    done = Path(cfg.out) / "training.json"
    if not done.exists():
        return False
    ignore = ("resume", "overwrite", "device")
    saved, wanted = json.loads(done.read_text())["config"], asdict(cfg)
    return all(saved.get(k) == v for k, v in wanted.items() if k not in ignore)


def ledger_path(work: Path) -> Path:
    return work / "ledger.json"


def read_ledger(work: Path) -> dict:
    p = ledger_path(work)
    return json.loads(p.read_text()) if p.exists() else {"cpu_s": 0.0, "runs": {}}


def curve_rows(folder: Path) -> list[dict]:
    log = folder / "train_log.csv"
    if not log.exists():
        log = folder.parent / f".{folder.name}.partial" / "train_log.csv"
    return list(csv.DictReader(open(log))) if log.exists() else []


def write_record(work: Path) -> None:
    ledger = read_ledger(work)
    if not ledger["runs"] and RECORD.exists() and "CPU time spent so far: 0.00 h" not in RECORD.read_text():
        sys.exit(f"{work} holds no runs of this search (a fresh machine?): rewriting {RECORD.name} from it would "
                 "erase the committed curves and CPU time; copy the earlier --work folder here first")
    lines = ["# Text-pair sink search (scripts/search_text_sink.py)", "",
             "Goal (issue #16, point 4): a recipe under which a small LM trained by gatelens on the shipped prose grows "
             f"a first-token sink, F-Attn >= {TARGET} (uniform causal attention over 256 tokens gives about 0.020). "
             "Budget: three CPU-hours in total. Every candidate is `gatelens/zoo/recipes/text.toml` with the overrides "
             "below, baseline (no gate), seed 0, one CPU thread. F-Attn is the trainer's, on validation sequences of "
             "256 tokens.", "",
             f"CPU time spent so far: {ledger['cpu_s'] / 3600:.2f} h of 3.", "",
             "| candidate | why | overrides | steps done | CPU s | best F-Attn (step) | last F-Attn | last val loss |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    curves = []
    for name, (why, over) in CANDIDATES.items():
        rows = curve_rows(work / name)
        cost = ledger["runs"].get(name, {}).get("cpu_s", 0.0)
        if not rows:
            lines.append(f"| {name} | {why} | `{json.dumps(over)}` | 0 | {cost:.0f} | not run | | |")
            continue
        best = max(rows, key=lambda r: float(r["f_attn"]))
        last = rows[-1]
        lines.append(f"| {name} | {why} | `{json.dumps(over)}` | {last['step']} | {cost:.0f} | "
                     f"{float(best['f_attn']):.4f} ({best['step']}) | {float(last['f_attn']):.4f} | "
                     f"{float(last['val_loss']):.4f} |")
        curves += ["", f"### {name}", "", "| step | tokens | val loss | F-Attn |", "|---:|---:|---:|---:|"]
        curves += [f"| {r['step']} | {int(float(r['tokens'])):,} | {float(r['val_loss']):.4f} | "
                   f"{float(r['f_attn']):.4f} |" for r in rows]
    reached = [n for n in CANDIDATES if any(float(r["f_attn"]) >= TARGET for r in curve_rows(work / n))]
    lines += ["", "**Outcome:** " + (f"reached by {', '.join(reached)}." if reached else
                                     f"not reached (no candidate's F-Attn reached {TARGET} within the budget so far)."),
              "", "## Curves"] + curves
    RECORD.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "text-search")
    ap.add_argument("--budget-h", type=float, default=3.0, help="CPU-hours for the whole search, all sessions")
    ap.add_argument("--only", nargs="*", help="candidate names to run (default: all, in order)")
    ap.add_argument("--report", action="store_true", help="only rewrite gatelens/zoo/TEXT_SEARCH.md")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for name in args.only or list(CANDIDATES):
        if args.report:
            break
        cfg = config(args.work, name)
        if finished(cfg):
            continue
        ledger = read_ledger(args.work)
        if ledger["cpu_s"] >= args.budget_h * 3600:
            print(f"budget spent ({ledger['cpu_s'] / 3600:.2f} h); stopping before {name}", file=sys.stderr)
            break
        work_ckpt = Path(cfg.out).parent / f".{Path(cfg.out).name}.partial" / "checkpoint.pt"
        cfg.resume = work_ckpt.exists()
        print(f"{name}: {CANDIDATES[name][0]} (resume={cfg.resume})", file=sys.stderr, flush=True)
        t0 = time.process_time()
        try:
            train(cfg)
        finally:
            ledger = read_ledger(args.work)
            spent = time.process_time() - t0
            ledger["cpu_s"] += spent
            ledger["runs"].setdefault(name, {"cpu_s": 0.0})["cpu_s"] += spent
            ledger_path(args.work).write_text(json.dumps(ledger, indent=1))
            write_record(args.work)
    write_record(args.work)


if __name__ == "__main__":
    main()
