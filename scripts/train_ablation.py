"""Train and measure the paper's gate ablation as mechanism twins: every gate variant x three seeds.

    python scripts/train_ablation.py --work runs/ablation --jobs 2        # trains what is missing, then measures
    python scripts/train_ablation.py --work runs/ablation --measure-only  # re-measures finished runs
    python scripts/train_ablation.py --work runs/ablation --ship          # + ships the seed-0 variants to the zoo

The recipe is the mechanism zoo's (gatelens/zoo/recipes/mech.toml, i.e. scripts/train_zoo.py's RECIPE) with
two heads of 64 dimensions instead of one of 128, because the paper's head-shared gate needs at least two
heads; every variant shares the baseline's seed, initial values (gate rows apart) and batches.
Runs are resumable (each finished run is skipped when its training.json matches this recipe) and each
writes its curve (train_log.csv) and config (training.json). Results: <work>/ablation.json, one row per run.
`--ship` copies the seed-0 run of every variant to gatelens/zoo/ablate-<gate>/ (weights, tokenizer, curve,
MODEL_CARD.md, card.json) and writes gatelens/zoo/ablation.json (every run's numbers, which `gatelens figures`
turns into the ablation table and figure) and gatelens/zoo/ABLATION.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_zoo  # noqa: E402  (the zoo's recipe and its measurement)

from gatelens.report import describe_runtime  # noqa: E402
from gatelens.train.trainer import TrainConfig, train  # noqa: E402

VARIANTS = ("none", "elementwise", "headwise", "head-shared", "value", "input-independent")
ZOO = train_zoo.ZOO
SHIP_SEED = 0
# The paper's Table 1 (15B MoE, 400B tokens): mean gate score, M-Act, F-Attn, perplexity ("—": not reported)
PAPER = {"none": ("baseline", None, 1053, 0.467, 6.026),
         "elementwise": ("SDPA elementwise gate (G1)", 0.116, 94, 0.048, 5.761),
         "headwise": ("SDPA headwise gate (G1)", 0.172, 98, 0.073, 5.792),
         "head-shared": ("SDPA elementwise, head-shared (G1)", 0.271, 286, 0.301, None),
         "value": ("value gate, elementwise (G2)", 0.221, 125, 0.297, None),
         "input-independent": ("input-independent gate", 0.335, 471, 0.364, None)}
WHAT = {"none": "no gate (the baseline)",
        "elementwise": "G1, one query-dependent score per head and dimension: σ(X W_θ) multiplies the SDPA output",
        "headwise": "G1, one query-dependent score per head",
        "head-shared": "G1, one query-dependent score per dimension, shared by both heads (W_θ: d_model x d_head)",
        "value": "G2, one query-dependent score per KV head and dimension on the values (rows inside v_proj)",
        "input-independent": "G1, a learned logit per head and dimension, the same for every token: σ(b)"}
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
    ap.add_argument("--ship", action="store_true", help="ship the seed-0 variants and the tables to gatelens/zoo/")
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
    if args.ship:
        ship(work, rows)
    print(json.dumps(rows, indent=1))


# ----------------------------------------------------------------------------------------------------
# shipping


def _stat(rows: list[dict], key: str) -> str:
    xs = [r[key] for r in rows if r.get(key) is not None]
    if not xs:
        return "—"
    mean = sum(xs) / len(xs)
    sd = (sum((x - mean) ** 2 for x in xs) / max(len(xs) - 1, 1)) ** 0.5
    return f"{mean:.3f} ± {sd:.3f}" if abs(mean) < 10 else f"{mean:.1f} ± {sd:.1f}"


def _paper(x) -> str:
    return "—" if x is None else f"{x:g}"


def table(rows: list[dict]) -> str:
    """The paper's table beside ours: mean ± sd over seeds, the paper's number after the slash."""
    lines = ["| variant | seeds | F-Attn (paper) | F-Attn dormant | F-Attn trigger | mean gate (paper) | M-Act (paper) "
             "| val loss |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for gate in VARIANTS:
        rs = [r for r in rows if r["gate"] == gate and not r.get("missing")]
        name, p_gate, p_mact, p_fattn, _ = PAPER[gate]
        lines.append(f"| `ablate-{gate}` ({name}) | {len(rs)} | {_stat(rs, 'f_attn')} ({_paper(p_fattn)}) | "
                     f"{_stat(rs, 'f_attn_dormant')} | {_stat(rs, 'f_attn_active')} | {_stat(rs, 'mean_gate')} "
                     f"({_paper(p_gate)}) | {_stat(rs, 'm_act')} ({_paper(p_mact)}) | {_stat(rs, 'val_loss')} |")
    return "\n".join(lines)


def per_seed_table(rows: list[dict]) -> str:
    lines = ["| variant | seed | F-Attn | dormant | trigger | mean gate | gate on trigger / other queries | M-Act "
             "| val loss |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    f = train_zoo._fmt
    for r in sorted((r for r in rows if not r.get("missing")), key=lambda r: (VARIANTS.index(r["gate"]), r["seed"])):
        lines.append(f"| {r['gate']} | {r['seed']} | {r['f_attn']:.3f} | {r['f_attn_dormant']:.3f} | "
                     f"{r['f_attn_active']:.3f} | {f(r['mean_gate'])} | {f(r['gate_active'])} / {f(r['gate_dormant'])} "
                     f"| {r['m_act']:.1f} | {r['val_loss']:.4f} |")
    return "\n".join(lines)


def card(gate: str, folder: Path, m: dict, rows: list[dict]) -> str:
    training = json.loads((folder / "training.json").read_text())
    cfg, s = training["config"], training["summary"]
    mine = [r for r in rows if r["gate"] == gate]
    name, p_gate, p_mact, p_fattn, p_ppl = PAPER[gate]
    return f"""# ablate-{gate}

**A synthetic-task mechanism model, not a language model**: one row of the paper's gate ablation (Qiu et al. 2025,
arXiv 2505.06708, Table 1: {name}) in miniature, trained on the Bigram-Backcopy task (Guo et al. 2024). Its
siblings `ablate-*` share its recipe, seed, batches and every initial parameter except the gate.

## Model
- Gate: **{gate}**: {WHAT[gate]}.
- Qwen3 decoder block without any RMSNorm (as the mechanism zoo), {cfg['n_layers']} layer, **{cfg['n_heads']} heads** of
  {cfg['head_dim']} dimensions (the head-shared gate needs two), d_model {cfg['d_model']}, FFN {cfg['ffn']}, untied embeddings,
  context {cfg['seq_len']}; `model_type` "gatelens" (loads with gatelens). Parameters: {s['n_params']:,}.
- Recipe: gatelens/zoo/recipes/mech.toml with `n_heads = 2`, `n_kv_heads = 2`, `head_dim = 64` (scripts/train_ablation.py);
  seed {training['seed']}, {s['steps']} steps, {s['tokens']:,} tokens, wall time {s['wall_s']:.0f} s on one CPU thread;
  {describe_runtime(training.get('runtime'))}.

## Measurements (held-out task sequences, 8 x 256 tokens; `gatelens compare ablate-none ablate-{gate}`)
| metric | this model (seed {training['seed']}) | over seeds {sorted(r['seed'] for r in mine)} (mean ± sd) | paper (15B MoE) |
|---|---:|---:|---:|
| F-Attn | {m['f_attn']:.4f} | {_stat(mine, 'f_attn')} | {_paper(p_fattn)} |
| F-Attn, dormant queries | {m['f_attn_dormant']:.4f} | {_stat(mine, 'f_attn_dormant')} | — |
| F-Attn, trigger queries | {m['f_attn_active']:.4f} | {_stat(mine, 'f_attn_active')} | — |
| mean gate score | {train_zoo._fmt(m['mean_gate'], 4)} | {_stat(mine, 'mean_gate')} | {_paper(p_gate)} |
| M-Act | {m['m_act']:.2f} | {_stat(mine, 'm_act')} | {_paper(p_mact)} |
| validation loss (nats/token) | {s['final_val_loss']:.4f} | {_stat(mine, 'val_loss')} | PPL {_paper(p_ppl)} |

F-Attn is the mean over both heads; a head whose gate is (nearly) closed on every token contributes nothing to
the output, and its attention pattern, whatever it is, no longer matters to the loss.

## F-Attn during training (validation sequences, from train_log.csv)
{train_zoo.curve_table(folder)}

Reproduce: `python scripts/train_ablation.py --work runs/ablation --jobs 2 --ship`.
"""


def ship(work: Path, rows: list[dict]) -> None:
    missing = [f"seed {r['seed']} {r['gate']}" for r in rows if r.get("missing")]
    if missing:
        sys.exit(f"cannot ship: runs not finished: {', '.join(missing)}")
    for gate in VARIANTS:
        src = work / f"seed{SHIP_SEED}-{gate}"
        name = f"ablate-{gate}"
        tmp = ZOO / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("*.partial"))
        m = train_zoo.measure(tmp)
        (tmp / "MODEL_CARD.md").write_text(card(gate, tmp, m, rows))
        training = json.loads((tmp / "training.json").read_text())
        (tmp / "card.json").write_text(json.dumps({
            "kind": "mechanism", "eval": dict(train_zoo.EVAL), "params": training["summary"]["n_params"],
            "tokens": training["summary"]["tokens"], "val_loss": training["summary"]["final_val_loss"],
            **{k: m[k] for k in ("f_attn", "sink_rate", "f_attn_dormant", "f_attn_active", "mean_gate", "gate_active",
                                 "gate_dormant", "m_act")}, "seed": SHIP_SEED,
            "description": f"ablation: {gate} gate; 1 layer, 2 heads, Bigram-Backcopy (not a language model)"},
            indent=2) + "\n")
        shutil.rmtree(ZOO / name, ignore_errors=True)
        tmp.rename(ZOO / name)
    (ZOO / "ablation.json").write_text(json.dumps({"recipe": RECIPE, "paper": PAPER, "runs": rows}, indent=1) + "\n")
    (ZOO / "ABLATION.md").write_text(f"""# The paper's gate ablation as mechanism twins

Made by `python scripts/train_ablation.py --work runs/ablation --jobs 2 --ship` (every run: curve and config in
its folder; the numbers in gatelens/zoo/ablation.json). Recipe: the mechanism zoo's (gatelens/zoo/recipes/mech.toml)
with two heads of 64 dimensions, so that the head-shared gate has heads to share across. Measured on 8 held-out
task sequences of 256 tokens; each cell is mean ± sd over seeds, the paper's number (15B MoE) in parentheses.
These are AVX2 runs (seeds 0-2). The same variants at seeds 0-4 under both CPU kernel sets (AVX-512 and AVX2, 10
runs each) are in gatelens/zoo/seed_kernels/README.md; read the findings from those (README, "Over seeds and CPU
kernel sets"): single runs of this recipe depend on the kernel set (docs/RECIPE_STABILITY.md).

{table(rows)}

## Every run
{per_seed_table(rows)}
""")


if __name__ == "__main__":
    main()
