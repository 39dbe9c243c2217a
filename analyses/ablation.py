"""The paper's gate ablation (Table 1) as mechanism twins: every variant over seeds, the paper's numbers beside.

Reads the per-seed runs that scripts/train_ablation.py --ship recorded (the group's `per_seed` JSON), so the
figure is remade without retraining; `gatelens compare` on the shipped seed-0 models reproduces their rows.
"""

import json

import pandas as pd

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
    return files


if __name__ == "__main__":
    main_for_script("ablation")
