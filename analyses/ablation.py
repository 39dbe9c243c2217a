"""The paper's gate ablation (Table 1) as mechanism twins: every variant over seeds, the paper's numbers beside.

Reads the per-seed runs that scripts/train_ablation.py --ship recorded (the group's `per_seed` JSON), so the
figure is remade without retraining; `gatelens compare` on the shipped seed-0 models reproduces their rows.
"""

import json

import pandas as pd

from gatelens.errors import GatelensError
from gatelens.figures import main_for_script
from gatelens.plots import ablation

METRICS = ("f_attn", "f_attn_dormant", "f_attn_active", "mean_gate", "m_act", "val_loss")


def make(ctx, group):
    if not group.per_seed:
        return []
    data = json.loads((ctx.config.root / group.per_seed).read_text())
    runs = pd.DataFrame([{"variant": r["gate"], "seed": r["seed"], **{k: r[k] for k in METRICS}} for r in data["runs"]])
    order = list(data["paper"])
    rows = []
    for v in order:
        rs = runs[runs["variant"] == v]
        name, p_gate, p_mact, p_fattn, p_ppl = data["paper"][v]
        row = {"variant": v, "paper_name": name, "n_seeds": len(rs)}
        for k in METRICS:
            row[f"{k}_mean"], row[f"{k}_sd"] = rs[k].mean(), rs[k].std(ddof=1)
        row.update({"paper_f_attn": p_fattn, "paper_mean_gate": p_gate, "paper_m_act": p_mact, "paper_ppl": p_ppl})
        rows.append(row)
    summary = pd.DataFrame(rows)
    fig = ablation.seeds_figure(runs, summary, f"{group.title}: {len(set(runs['seed']))} seeds per variant")
    models = [ctx.loaded(m).info.to_dict() for m in group.models]
    settings = {"per_seed": group.per_seed, "recipe": data["recipe"], "seeds": sorted(set(runs["seed"])),
                "eval": "held-out task sequences, 8 x 256 tokens"}
    files = ctx.write(f"{group.name}_seeds", summary, fig, models, settings)
    files += ctx.write(f"{group.name}_runs", runs.sort_values(["variant", "seed"], key=lambda c: c.map(
        {v: i for i, v in enumerate(order)}) if c.name == "variant" else c, ignore_index=True), None, models, settings)
    if group.seed_kernels:
        files += seed_kernels(ctx, group, models)
    return files


def seed_kernels(ctx, group, models):
    """The seed x CPU-kernel-set grid (scripts/seed_kernels.py's record): every run, and per model and kernel set the
    mean, sd, min and max over seeds."""
    folder = ctx.config.root / group.seed_kernels
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*/*/result.json"))]
    if not rows:   # a mistyped folder must not leave the figure out in silence
        raise GatelensError(f"figures group {group.name}: seed_kernels = {group.seed_kernels!r} holds no "
                            "<kernel>/<model>-s<seed>/result.json (scripts/seed_kernels.py's record); fix the path")
    cols = ("model", "gate", "kernel", "capability", "seed", "f_attn", "f_attn_dormant", "f_attn_active", "mean_gate",
            "val_loss")
    order = [m for m in SEED_KERNEL_MODELS if any(r["model"] == m for r in rows)]
    runs = pd.DataFrame([{k: r.get(k) for k in cols} for r in rows])
    runs = runs.sort_values(["model", "kernel", "seed"], key=lambda c: c.map({m: i for i, m in enumerate(order)})
                            if c.name == "model" else c, ignore_index=True)
    stats = []
    for (model, kernel), g in runs.groupby(["model", "kernel"], sort=False):
        row = {"model": model, "kernel": kernel, "capability": g["capability"].iloc[0], "n_runs": len(g),
               "seeds": " ".join(str(s) for s in sorted(g["seed"]))}
        for k in ("f_attn", "f_attn_dormant", "mean_gate", "val_loss"):
            x = g[k].dropna().astype(float)
            row.update({f"{k}_mean": x.mean() if len(x) else None, f"{k}_sd": x.std(ddof=1) if len(x) > 1 else None,
                        f"{k}_min": x.min() if len(x) else None, f"{k}_max": x.max() if len(x) else None})
        stats.append(row)
    summary = pd.DataFrame(stats)
    settings = {"seed_kernels": group.seed_kernels, "seeds": sorted(set(runs["seed"])),
                "kernels": sorted(set(runs["kernel"])), "eval": "held-out task sequences, 8 x 256 tokens",
                "made_by": "python scripts/seed_kernels.py --work runs/seed-kernels"}
    n = runs.groupby(["model", "kernel"]).size()
    fig = ablation.kernels_figure(runs, order, f"{group.title}: {n.min()}-{n.max()} seeds per model and CPU kernel set")
    return (ctx.write(f"{group.name}_seed_kernels", summary, fig, models, settings)
            + ctx.write(f"{group.name}_seed_kernels_runs", runs, None, models, settings))


SEED_KERNEL_MODELS = ("ablate-none", "ablate-elementwise", "ablate-headwise", "ablate-head-shared", "ablate-value",
                      "ablate-input-independent", "mech-value")


if __name__ == "__main__":
    main_for_script("ablation")
