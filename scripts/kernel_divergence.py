"""How fast two CPU kernel sets' trainings of one config drift apart: a Lyapunov-like exponent per recipe (issue #26).

The same config (recipe, gate, seed, data: bit-identical initial weights) is trained twice, each in its own process on
one torch thread: under ATen's default kernels (AVX512 on an AVX-512 processor) and under `ATEN_CPU_CAPABILITY=avx2`
(read when torch starts). Both keep their weights every --every steps (the trainer's keep_checkpoints), and
‖θ_default − θ_avx2‖ / ‖θ_default‖ over all parameters is written per kept step to <work>/<name>/divergence.csv.
Rounding differs by ~1e-8 at first; the distance's exponential growth rate (a least-squares fit of ln d on the step,
over the steps where 1e-6 < d < 1e-2, i.e. before it saturates) is the exponent the report gives, with the steps it
takes to grow tenfold. A run stops after --steps steps of the recipe's schedule (the cosine over the recipe's full
`steps`, so the first N steps are exactly those of a full run); --steps 0 trains the full recipe and measures the
finished model as scripts/train_zoo.py measures the zoo (F-Attn on the 8 held-out task sequences).

Commands run for docs/RECIPE_STABILITY.md, one at a time, each as `OMP_NUM_THREADS=1 nice -n 5 python ...` with this
checkout on PYTHONPATH (--work outside the repository; a 1000-step pair costs ~3 CPU-minutes, a full pair ~8.5):

    python scripts/kernel_divergence.py curves --record /work/main/gatelens/zoo/seed_kernels   # the recorded runs
    python scripts/kernel_divergence.py run --work /tmp/kdiv --name lr1e-2 --steps 1000 --every 10
    python scripts/kernel_divergence.py run --work /tmp/kdiv --name lr3e-3 --set lr=3e-3 --steps 1000 --every 10
    python scripts/kernel_divergence.py run --work /tmp/kdiv --name lr3e-3-full --set lr=3e-3 --steps 0 --every 50
    python scripts/kernel_divergence.py run --work /tmp/kdiv --name lr3e-3-full-baseline --gate none --set lr=3e-3 --steps 0 --every 50
    python scripts/kernel_divergence.py report --work /tmp/kdiv   # the table of every variant run so far

`--set FIELD=VALUE` overrides a TrainConfig field of the recipe (JSON value; repeatable); `--recipe ablation` starts from
scripts/train_ablation.py's 2-head recipe instead of the mech recipe (scripts/train_zoo.py's RECIPE).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RECORD = ROOT.parent / "gatelens" / "zoo" / "seed_kernels"   # scripts/seed_kernels.py's committed runs
KERNELS = ("default", "avx2")
FIT = (1e-6, 1e-2)   # the distances between which the growth is fitted: above the first steps' rounding, below saturation


class _Stop(Exception):
    """Raised from the trainer's on_step to end a run after --steps steps (its checkpoints stay in the work folder)."""


def recipe(name: str) -> dict:
    sys.path.insert(0, str(ROOT))
    if name == "ablation":
        import train_ablation
        return dict(train_ablation.RECIPE)
    import train_zoo
    return dict(train_zoo.RECIPE)


def run_folder(work: Path, name: str, kernel: str) -> Path:
    return work / name / kernel


def config(work: Path, name: str, kernel: str, spec: dict):
    from gatelens.train import TrainConfig

    return TrainConfig(**{**recipe(spec["recipe"]), **spec["set"], "ckpt_every": spec["every"]},
                       out=str(run_folder(work, name, kernel) / "model"), gate=spec["gate"], seed=spec["seed"],
                       keep_checkpoints=True, overwrite=True)


def one(work: Path, name: str, kernel: str) -> None:
    """Train one kernel set's run in this process (its ATEN_CPU_CAPABILITY already set) and write run.json."""
    import torch

    from gatelens.train import train

    torch.set_num_threads(1)
    spec = json.loads((work / name / "spec.json").read_text())
    cfg = config(work, name, kernel, spec)
    c0 = time.process_time()

    def stop(step, total, loss, speed):
        if spec["steps"] and step >= spec["steps"]:
            raise _Stop

    try:
        train(cfg, on_step=stop)
        folder, measured = Path(cfg.out), True
    except _Stop:
        folder, measured = Path(cfg.out).parent / f".{Path(cfg.out).name}.partial", False   # kept: it has checkpoints
    row = {"kernel": kernel, "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "folder": str(folder), "cpu_s": round(time.process_time() - c0, 1)}
    if measured:
        import train_zoo
        row.update(train_zoo.measure(folder))
    (run_folder(work, name, kernel) / "run.json").write_text(json.dumps(row, indent=1) + "\n")


def launch(work: Path, name: str, kernel: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT.parent), os.environ.get("PYTHONPATH")))))
    env.pop("ATEN_CPU_CAPABILITY", None)
    if kernel != "default":
        env["ATEN_CPU_CAPABILITY"] = kernel
    subprocess.run([sys.executable, __file__, "one", "--work", str(work), "--name", name, "--kernel", kernel],
                   env=env, check=True)


def weights(folder: Path) -> dict[int, Path]:
    """The kept checkpoints of a run folder: step -> model.safetensors."""
    return {json.loads((d / "checkpoint.json").read_text())["step"]: d / "model.safetensors"
            for d in sorted((folder / "checkpoints").glob("step-*")) if (d / "checkpoint.json").exists()}


def divergence(work: Path, name: str) -> list[dict]:
    """‖θ_default − θ_avx2‖ / ‖θ_default‖ at every step both runs kept, and the largest per-tensor relative distance."""
    from safetensors.torch import load_file

    runs = {k: json.loads((run_folder(work, name, k) / "run.json").read_text()) for k in KERNELS}
    a, b = (weights(Path(runs[k]["folder"])) for k in KERNELS)
    rows = []
    for step in sorted(set(a) & set(b)):
        ta, tb = load_file(str(a[step])), load_file(str(b[step]))
        diff = sum(float((ta[k].double() - tb[k].double()).pow(2).sum()) for k in ta)
        norm = sum(float(ta[k].double().pow(2).sum()) for k in ta)
        worst = max(ta, key=lambda k: float((ta[k] - tb[k]).norm() / ta[k].norm().clamp_min(1e-30)))
        rows.append({"step": step, "rel_dist": math.sqrt(diff / norm),
                     "worst_tensor": worst, "worst_rel": float((ta[worst] - tb[worst]).norm() / ta[worst].norm())})
    with (work / name / "divergence.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def growth(rows: list[dict]) -> dict:
    """Least-squares slope of ln d on the step over the kept steps with FIT[0] < d < FIT[1] up to the first step
    where d reaches FIT[1]: the exponent per step, and the steps d takes to grow tenfold."""
    pts = []
    for r in rows:
        if r["rel_dist"] >= FIT[1]:
            break
        if r["rel_dist"] > FIT[0]:
            pts.append((r["step"], math.log(r["rel_dist"])))
    if len(pts) < 3:
        return {"rate": None, "tenfold": None, "window": None}
    n, sx, sy = len(pts), sum(x for x, _ in pts), sum(y for _, y in pts)
    sxx, sxy = sum(x * x for x, _ in pts), sum(x * y for x, y in pts)
    rate = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    return {"rate": rate, "tenfold": math.log(10) / rate if rate > 0 else None, "window": (pts[0][0], pts[-1][0])}


def peak(rows: list[dict], span: int = 30) -> dict:
    """The fastest growth over any `span` steps before d reaches FIT[1]: (ln d_j - ln d_i) / span, and where."""
    at = {r["step"]: r["rel_dist"] for r in rows}
    best = {"rate": None, "window": None}
    for s, d in at.items():
        e = at.get(s + span)
        if d > 0 and e is not None and d < FIT[1]:
            rate = math.log(e / d) / span
            if best["rate"] is None or rate > best["rate"]:
                best = {"rate": rate, "window": (s, s + span)}
    return best


def first_step(rows: list[dict], threshold: float) -> int | None:
    return next((r["step"] for r in rows if r["rel_dist"] >= threshold), None)


def log(folder: Path) -> list[dict]:
    path = folder / "train_log.csv"
    return list(csv.DictReader(path.open())) if path.exists() else []


HEADER = ("| variant | gate, seed, changes to the recipe | d@100 | d@200 | d@300 | d@500 | d@last | d ≥ 1e-3 at | "
          "d ≥ 0.1 at | rate / step (fit window) | steps ×10 | peak rate over 30 steps | "
          "last eval: val loss default / avx2 | F-Attn default / avx2 |")


def _e(x: float | None) -> str:
    return "—" if x is None else f"{x:.1e}"


def report(work: Path) -> str:
    """One row per variant: its overrides, the distance at chosen steps, the fitted exponent, the last evaluation."""
    lines = [HEADER, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|---|"]
    for spec_path in sorted(work.glob("*/spec.json")):
        name, spec = spec_path.parent.name, json.loads(spec_path.read_text())
        if not all((run_folder(work, name, k) / "run.json").exists() for k in KERNELS):
            continue
        rows = divergence(work, name)
        at = {r["step"]: r["rel_dist"] for r in rows}
        g, top = growth(rows), peak(rows)
        runs = [json.loads((run_folder(work, name, k) / "run.json").read_text()) for k in KERNELS]
        last = [(log(Path(r["folder"])) or [{"val_loss": "nan", "f_attn": "nan"}])[-1] for r in runs]
        changes = "".join(f", {k}={v}" for k, v in spec["set"].items())
        rate = "—" if g["rate"] is None else f"{g['rate']:.4f} ({g['window'][0]}-{g['window'][1]})"
        tenfold = "—" if g["tenfold"] is None else str(round(g["tenfold"]))
        fast = "—" if top["rate"] is None else f"{top['rate']:.3f} ({top['window'][0]}-{top['window'][1]})"
        val = " / ".join(f"{float(x['val_loss']):.4f}" for x in last) + f" (step {last[0].get('step')})"
        f_attn = " / ".join(f"{float(x['f_attn']):.3f}" for x in last)
        if all("f_attn" in r for r in runs):   # a full run, measured as the zoo measures its models
            f_attn += f"; finished model, as the zoo measures it: {runs[0]['f_attn']:.3f} / {runs[1]['f_attn']:.3f}"
        lines.append(f"| {name} | {spec['gate']}, seed {spec['seed']}{changes} | {_e(at.get(100))} | "
                     f"{_e(at.get(200))} | {_e(at.get(300))} | {_e(at.get(500))} | "
                     f"{rows[-1]['rel_dist']:.1e} (step {rows[-1]['step']}) | {first_step(rows, 1e-3) or '—'} | "
                     f"{first_step(rows, 0.1) or '—'} | {rate} | {tenfold} | {fast} | {val} | {f_attn} |")
    return "\n".join(lines)


def floor() -> float:
    """The lowest validation loss any model can reach on the trainer's validation sequences of the mech recipe: the
    task's own next-token entropy (uniform over non-triggers after BOS, the bigram table's probability, 0 on a copy)."""
    import torch

    from gatelens import tasks
    from gatelens.train import TrainConfig
    from gatelens.train.data import task_data

    cfg = TrainConfig(out="unused", **recipe("mech"))
    p = tasks.task_params(cfg.data, **cfg.task_params)
    cdf, triggers = tasks.world(p)
    probs = torch.diff(cdf, dim=1, prepend=torch.zeros(p.vocab, 1)).double()
    probs[:, -1] -= 1e-6   # world()'s rounding guard on the last bucket
    trigger = torch.zeros(p.vocab, dtype=torch.bool)
    trigger[triggers] = True
    nll = []
    for x in task_data(cfg).val:   # [seq_len]: BOS, then symbols
        nll.append(math.log(p.vocab - len(triggers)))   # x[1]: uniform over the non-trigger symbols
        nll += [0.0 if trigger[x[t - 1]] else -math.log(float(probs[x[t - 1], x[t]])) for t in range(2, len(x))]
    return sum(nll) / len(nll)


def curves(record: Path = RECORD) -> str:
    """The recorded seed_kernels runs, default vs avx2 of one model and seed: where their curves split, and the
    final validation loss and F-Attn of each."""
    lines = [("| run | Δval loss @100 | @200 | first step with ΔF-Attn > 0.05 | final val loss default / avx2 | "
              "final F-Attn default / avx2 | F-Attn range after step 1000, default / avx2 |"),
             "|---|---:|---:|---:|---|---|---|"]
    for a in sorted(record.glob("default/*/train_log.csv")):
        b = record / "avx2" / a.parent.name / "train_log.csv"
        if not b.exists():
            continue
        A, B = list(csv.DictReader(a.open())), list(csv.DictReader(b.open()))
        dv = {ra["step"]: float(ra["val_loss"]) - float(rb["val_loss"]) for ra, rb in zip(A, B)}
        split = next((ra["step"] for ra, rb in zip(A, B) if abs(float(ra["f_attn"]) - float(rb["f_attn"])) > 0.05), "—")
        fin = [json.loads((p.parent / "result.json").read_text()) for p in (a, b)]
        rng = [f"{min(float(r['f_attn']) for r in X if int(r['step']) > 1000):.2f}-"
               f"{max(float(r['f_attn']) for r in X if int(r['step']) > 1000):.2f}" for X in (A, B)]
        lines.append(f"| {a.parent.name} | {dv.get('100', 0):+.1e} | {dv.get('200', 0):+.1e} | {split} | "
                     f"{fin[0]['val_loss']:.4f} / {fin[1]['val_loss']:.4f} | {fin[0]['f_attn']:.3f} / "
                     f"{fin[1]['f_attn']:.3f} | {rng[0]} / {rng[1]} |")
    lines += ["", f"The task's floor on these validation sequences (its own entropy): {floor():.4f} nats per token."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train one variant under both kernel sets (one after the other) and compare")
    r.add_argument("--work", required=True, type=Path)
    r.add_argument("--name", required=True, help="the variant's folder under --work")
    r.add_argument("--recipe", choices=("mech", "ablation"), default="mech")
    r.add_argument("--gate", default="value")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a recipe field (JSON)")
    r.add_argument("--steps", type=int, default=1000, help="stop after this many steps (0: the full recipe)")
    r.add_argument("--every", type=int, default=10, help="steps between kept weights")
    o = sub.add_parser("one", help=argparse.SUPPRESS)
    o.add_argument("--work", required=True, type=Path)
    o.add_argument("--name", required=True)
    o.add_argument("--kernel", required=True, choices=KERNELS)
    p = sub.add_parser("report", help="the table of every variant under --work")
    p.add_argument("--work", required=True, type=Path)
    c = sub.add_parser("curves", help="the recorded seed_kernels runs: where default and avx2 split")
    c.add_argument("--record", type=Path, default=RECORD, help="a seed_kernels record (default: this repository's)")
    args = ap.parse_args()
    if args.cmd == "run":
        overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
        spec = {"recipe": args.recipe, "gate": args.gate, "seed": args.seed, "set": overrides, "steps": args.steps,
                "every": args.every}
        (args.work / args.name).mkdir(parents=True, exist_ok=True)
        (args.work / args.name / "spec.json").write_text(json.dumps(spec, indent=1) + "\n")
        for kernel in KERNELS:
            launch(args.work, args.name, kernel)
        print(report(args.work))
    elif args.cmd == "one":
        one(args.work, args.name, args.kernel)
    elif args.cmd == "report":
        print(report(args.work))
    else:
        print(curves(args.record))


if __name__ == "__main__":
    main()
