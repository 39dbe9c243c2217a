"""Train, measure and ship the mechanism zoo (synthetic Bigram-Backcopy twins), in one command:

    python scripts/train_zoo.py            # 3 seeds x (baseline, elementwise) + headwise at the zoo seed
    python scripts/train_zoo.py --jobs 2 --work /tmp/zoo   # as shipped (two trainings at once on 2 cores)

Writes gatelens/zoo/{mech-baseline, mech-gated, mech-gated-headwise}/ (weights, tokenizer,
train_log.csv, training.json, MODEL_CARD.md, card.json) and gatelens/zoo/README.md (recipe + per-seed table).
Every number in the cards is computed here with gatelens' own functions on the models' held-out
task sequences. `--jobs N` runs N trainings at once (one thread each on 2 cores); `--reuse` re-measures
finished runs in --work instead of retraining them. Each training takes ~4 minutes on one CPU thread.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import torch

import gatelens
from gatelens import tasks
from gatelens.models import native
from gatelens.metrics import Queries, standard_probes
from gatelens.report import describe_runtime
from gatelens.train import RECIPES, TrainConfig, initial_state, read_recipe, train

ZOO = Path(__file__).resolve().parent.parent / "gatelens" / "zoo"
SEARCH = ZOO / "RECIPE_SEARCH.md"  # the recipe search (every probe run); copied into the zoo README
SEEDS = (0, 1, 2)
ZOO_SEED = 0
MODELS = {"mech-baseline": "none", "mech-gated": "elementwise", "mech-gated-headwise": "headwise"}

RECIPE = read_recipe(RECIPES / "mech.toml")  # TrainConfig fields but out, gate and seed (the file says why)
MIN_F_ATTN, MIN_DORMANT = 0.3, 0.6  # what "the baseline has a clear sink" means, at every seed
EVAL = {"seq_len": 256, "n_seqs": 8}  # exactly what `gatelens sink <model>` measures with no options (its defaults)


def measure(path: Path) -> dict:
    """F-Attn, sink rate, mean gate, M-Act, first-token norm, and F-Attn / gate split by trigger vs other queries;
    `columns`: the table columns of every standard metric of the registry, as `compare` shows them."""
    loaded = gatelens.load(str(path))
    inputs = gatelens.prepare_inputs(loaded, **EVAL)
    probes = standard_probes(loaded) + [Queries()]
    results = dict(zip((p.name for p in probes), gatelens.measure.run_probes(loaded, probes, inputs)))
    sink, massive, trace, gates = results["sink"], results["massive"], results["queries"], results.get("gates")
    params = loaded.info.eval_data["params"]
    split = trace.split([tasks.active_queries(x, params) for x in inputs.seqs])
    active, dormant = split["selected"], split["rest"]
    last = massive.layers[-1]  # the residual stream after the (only) layer: what the LM head reads
    return {"f_attn": sink.f_attn, "sink_rate": sink.sink_rate,
            "f_attn_active": active["first_token"], "f_attn_dormant": dormant["first_token"],
            "n_active": active["n"], "n_dormant": dormant["n"],
            "mean_gate": gates.mean_gate if gates else None,
            "gate_active": active["gate"], "gate_dormant": dormant["gate"],
            "m_act": massive.m_act, "first_token_norm": last.first_norm, "other_token_norm": last.other_norm,
            # every standard metric of the registry (a metric registered later, another package's too, included)
            "columns": {k: v for r in results.values() if hasattr(r, "columns") for k, v in r.columns().items()}}


def initial_norms(folder: Path) -> dict:
    """First-token vs other-token hidden-state norm at step 0 (same seed and init as the trained model)."""
    training = json.loads((folder / "training.json").read_text())
    cfg = TrainConfig(**{**training["config"], "out": str(folder / "step0"), "overwrite": True})
    with tempfile.TemporaryDirectory() as tmp:
        step0 = Path(tmp) / "step0"
        shutil.copytree(folder, step0, ignore=shutil.ignore_patterns("model.safetensors"))
        model_cfg = json.loads((folder / "config.json").read_text())
        model = native.build(model_cfg)
        native.load_weights(model, initial_state(cfg), step0)
        native.save(model, step0, model_cfg)
        loaded = gatelens.load(str(step0))
        last = gatelens.measure.massive(loaded, **EVAL).layers[-1]
    return {"first_token_norm": last.first_norm, "other_token_norm": last.other_norm}


def bf16_if_harmless(folder: Path, fp32: dict) -> bool:
    """Store the weights as bf16 only if F-Attn of the bf16 copy equals the fp32 one to 1e-4."""
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / folder.name
        shutil.copytree(folder, trial)
        cfg = json.loads((trial / "config.json").read_text())
        model = native.build(cfg)
        native.load_weights(model, native.read_state(native.weight_files(trial)), trial)
        native.save(model, trial, cfg, dtype=torch.bfloat16)
        bf = measure(trial)
        if abs(bf["f_attn"] - fp32["f_attn"]) < 1e-4:
            shutil.copy(trial / "model.safetensors", folder / "model.safetensors")
            return True
    return False


def recipe_config(out: Path, gate: str, **overrides) -> TrainConfig:
    """The recipe for one run: what `gatelens train --config gatelens/zoo/recipes/mech.toml --out OUT --gate GATE
    [--seed ...]` builds."""
    return TrainConfig(**{**RECIPE, **overrides}, out=str(out), gate=gate)


def run_one(work: Path, seed: int, gate: str, reuse: bool = False) -> tuple[Path, dict, dict]:
    out = work / f"seed{seed}-{gate}"
    cfg = recipe_config(out, gate, seed=seed, overwrite=True)
    t = time.perf_counter()
    done = out / "training.json"
    if reuse and done.exists() and json.loads(done.read_text())["config"] == asdict(cfg):
        summary = json.loads(done.read_text())["summary"]  # finished earlier with this very recipe: measure only
    else:
        summary = train(cfg)
    m = measure(out)
    print(f"seed {seed} {gate:12s} F-Attn {m['f_attn']:.3f} dormant {m['f_attn_dormant']:.3f} "
          f"active {m['f_attn_active']:.3f} gate {m['mean_gate']} val {summary['final_val_loss']:.4f} "
          f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    return out, summary, m


# ----------------------------------------------------------------------------------------------------
# documents


def _fmt(x, nd=3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def curve_table(folder: Path) -> str:
    rows = list(csv.DictReader((folder / "train_log.csv").open()))
    lines = ["| step | tokens | train loss | val loss | F-Attn | mean gate |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if int(r["step"]) % 100 and r is not rows[-1]:
            continue
        gate = _fmt(float(r["mean_gate"])) if r["mean_gate"] else "—"
        lines.append(f"| {r['step']} | {int(r['tokens']):,} | {float(r['train_loss']):.4f} | {float(r['val_loss']):.4f} "
                     f"| {float(r['f_attn']):.3f} | {gate} |")
    return "\n".join(lines)


def model_card(name: str, folder: Path, m: dict, init: dict, bf16: bool, weak: list[int] = ()) -> str:
    training = json.loads((folder / "training.json").read_text())
    cfg, s, hw, data = training["config"], training["summary"], training["hardware"], training["data"]
    config = json.loads((folder / "config.json").read_text())
    gate = MODELS[name]
    if config["model_type"] == "gatelens":
        flags = ", ".join(f'`{k}` {str(config.get(k, True)).lower()}' for k in ("pre_norm", "use_qk_norm", "final_norm"))
        fmt = f'`model_type` "gatelens" (`gate` "{gate}", {flags}; loaded by gatelens)'
    elif gate != "none":
        fmt = f'`model_type` "qwen3" + `{gate}_attn_output_gate: true` (the paper\'s release format)'
    else:
        fmt = '`model_type` "qwen3" (plain transformers Qwen3)'
    caveat = (f"\n**Caveat: the recipe is not robust across seeds.** With the same recipe, the baseline of seed(s) "
              f"{list(weak)} missed the sink bar (F-Attn >= {MIN_F_ATTN}, dormant >= {MIN_DORMANT}); these models are "
              f"seed {ZOO_SEED}, shipped with `--force`. Per-seed numbers: gatelens/zoo/README.md.\n" if weak else "")
    return f"""# {name}

**A synthetic-task mechanism model, not a language model.** It was trained only on the Bigram-Backcopy
task (Guo et al. 2024, arXiv 2410.13835) to show, in miniature, the attention sink that a sigmoid
gate after SDPA (Qiu et al. 2025, arXiv 2505.06708) removes in large models. It knows nothing about natural text.
Its twins ({", ".join(f"`{n}`" for n in MODELS if n != name)}) share its recipe, seed, data order and
every initial parameter except the gate rows.
{caveat}
## Model
- Qwen3 decoder, {cfg['n_layers']} layer, {cfg['n_heads']} head (KV heads {cfg['n_kv_heads']}), d_model {cfg['d_model']},
  head_dim {cfg['head_dim']}, FFN {cfg['ffn']}, RoPE θ {cfg['rope_theta']:g}, {"tied" if cfg['tie_embeddings'] else "untied"} embeddings,
  RMSNorm before attention and MLP {"yes" if cfg.get('pre_norm', True) else "no"}, QK-norm {"yes" if cfg.get('qk_norm', True) else "no"},
  final RMSNorm {"yes" if cfg['final_norm'] else "no"}, context {cfg['seq_len']} tokens.
{nonstandard(cfg)}- Gate: **{gate}**{" (G1: σ(X·W_θ) multiplies the SDPA output before W_O)" if gate != "none" else ""}. Format: {fmt}.
- Parameters: {s['n_params']:,}. Weights stored as {"bfloat16 (F-Attn unchanged to 1e-4)" if bf16 else "float32"}.

## Data
- Task `bigram-backcopy`: vocabulary {data['vocab']} symbols (+ BOS/EOS/PAD), {data['n_triggers']} trigger symbols
  {data['triggers']}; bigram table with {data['sparsity']} successors per symbol, softmax temperature {data['temperature']},
  world seed {data['world_seed']}. After a trigger the next token copies the token before the trigger; every sequence starts with BOS.
- Training: seed {training['seed']}, {s['steps']} steps × {cfg['batch_size']} sequences × {cfg['seq_len']} tokens = **{s['tokens']:,} tokens**,
  generated on the fly. Evaluation: held-out sequences from eval seed {cfg['eval_seed']} (`gatelens_eval` in config.json).
- Optimisation: AdamW (lr {cfg['lr']:g} → {cfg['min_lr']:g}, warm-up {cfg['warmup_steps']} steps, cosine; betas {cfg['beta1']}/{cfg['beta2']},
  weight decay {cfg['weight_decay']}, clip {cfg['grad_clip']}), fp32.
- Wall time {s['wall_s']:.0f} s on {hw['platform']}, {hw['cpu_count']} CPU cores, torch {hw['torch']} ({hw['device']});
  {describe_runtime(training.get('runtime'))}.
- Final validation loss: {s['final_val_loss']:.4f} nats/token.

## Measurements (held-out task sequences: {EVAL['n_seqs']} × {EVAL['seq_len']} tokens; `gatelens sink {name}` reproduces F-Attn)
| metric | value |
|---|---:|
| F-Attn (mean first-token attention share, queries ≥ 1) | {m['f_attn']:.4f} |
| sink rate (ε = 0.3) | {m['sink_rate']:.4f} |
| F-Attn on trigger queries (active: must copy the previous token; n = {m['n_active']}) | {m['f_attn_active']:.4f} |
| F-Attn on all other queries (dormant; n = {m['n_dormant']}) | {m['f_attn_dormant']:.4f} |
| mean gate score σ (`gatelens gates`) | {_fmt(m['mean_gate'], 4)} |
| mean gate score on trigger / other queries | {_fmt(m['gate_active'], 4)} / {_fmt(m['gate_dormant'], 4)} |
| M-Act (largest \\|hidden state\\| after the layer, `gatelens massive`) | {m['m_act']:.2f} |
| hidden-state norm of the first token / mean of the others, after training | {m['first_token_norm']:.2f} / {m['other_token_norm']:.2f} |
| the same at step 0 (same seed and initial values) | {init['first_token_norm']:.2f} / {init['other_token_norm']:.2f} |

{norm_reading(m, init)}

## F-Attn during training (validation sequences, from train_log.csv)
{curve_table(folder)}

Reproduce: `python scripts/train_zoo.py{' --jobs 2 --force' if weak else ''}` (retrains all zoo models and rewrites this card).
"""


def nonstandard(cfg: dict) -> str:
    """The card's line on what differs from transformers' Qwen3, or nothing for a standard one."""
    dropped = [name for key, name in (("pre_norm", "the RMSNorms before attention and MLP"), ("qk_norm", "QK-norm"),
                                      ("final_norm", "the final RMSNorm")) if not cfg.get(key, True)]
    if not dropped:
        return ""
    return (f"- **Not the standard Qwen3 architecture: {', '.join(dropped)} dropped** (with an RMSNorm before attention "
            "the dormant queries of some seeds settle on their own token instead of the first one; see the zoo README), "
            "so the weights load with gatelens, not plain transformers.\n")


def norm_reading(m: dict, init: dict) -> str:
    """One sentence on the first token's hidden-state norm: does it grow out of line with the others?"""
    g_first = m["first_token_norm"] / init["first_token_norm"]
    g_other = m["other_token_norm"] / init["other_token_norm"]
    stands_out = m["first_token_norm"] > 2 * m["other_token_norm"]
    return (f"In training the first token's hidden-state norm grew {g_first:.1f}x and the other tokens' {g_other:.1f}x: "
            + ("the first token stands out (a residual-state peak)." if stands_out else
               "the first token does not stand out, i.e. no residual-state peak or massive activation at this depth "
               "(one layer)" + ("; the sink here works through attention and the first token's small value, not "
                                "through a large hidden state." if m["f_attn"] >= MIN_F_ATTN else ".")))


def card_json(name: str, folder: Path, m: dict) -> dict:
    """Machine-readable card (tests/test_zoo.py re-measures f_attn and mean_gate through the zoo name)."""
    training = json.loads((folder / "training.json").read_text())
    s = training["summary"]
    return {"kind": "mechanism", "eval": dict(EVAL), "params": s["n_params"], "tokens": s["tokens"],
            "wall_s": s["wall_s"], "val_loss": s["final_val_loss"], "f_attn": m["f_attn"], "sink_rate": m["sink_rate"],
            "f_attn_dormant": m["f_attn_dormant"], "f_attn_active": m["f_attn_active"], "mean_gate": m["mean_gate"],
            "gate_active": m["gate_active"], "gate_dormant": m["gate_dormant"], "m_act": m["m_act"],
            "first_token_norm": m["first_token_norm"], "other_token_norm": m["other_token_norm"], "seed": training["seed"],
            "description": f"{MODELS[name]} gate; 1-layer twin on the synthetic Bigram-Backcopy task (not a language model)"}


def readme(per_seed: list[dict], zoo: dict[str, dict], weak: list[int] = ()) -> str:
    recipe = json.dumps(RECIPE, indent=1, sort_keys=True)
    rows = "\n".join(f"| {r['seed']} | {r['none']['f_attn']:.3f} | {r['none']['f_attn_dormant']:.3f} | "
                     f"{r['elementwise']['f_attn']:.3f} | {r['elementwise']['mean_gate']:.3f} | "
                     f"{r['none_val']:.4f} | {r['elementwise_val']:.4f} |" for r in per_seed)
    models = "\n".join(f"| `{n}` | {MODELS[n]} | {m['f_attn']:.3f} | {m['f_attn_dormant']:.3f} | {m['f_attn_active']:.3f} "
                       f"| {_fmt(m['mean_gate'])} |" for n, m in zoo.items())
    return f"""# gatelens zoo: mechanism models

Tiny models trained by `scripts/train_zoo.py` on the synthetic Bigram-Backcopy task (Guo et al. 2024,
arXiv 2410.13835). **They are synthetic-task mechanism models, not language models**: they exist to show
an attention sink in the baseline and what the paper's sigmoid output gate (Qiu et al. 2025) does to it,
in seconds on a CPU. Load by name: `gatelens.load("mech-baseline")`, `gatelens sink mech-gated`.
(The text twins `tiny-*` in this folder come from scripts/train_text_pair.py; see their own MODEL_CARD.md.)

| model | gate | F-Attn | F-Attn dormant | F-Attn active (trigger) | mean gate |
|---|---|---:|---:|---:|---:|
{models}

## Recipe (gatelens/zoo/recipes/mech.toml, `gatelens.train.TrainConfig` fields; out, gate and seed per run)
```json
{recipe}
```
Twins differ only in the gate: same seed, same initial values for every shared parameter, same batches.

## Stability across seeds (baseline vs elementwise-gated twin; held-out task sequences)
| seed | baseline F-Attn | baseline F-Attn dormant | gated F-Attn | gated mean gate | baseline val loss | gated val loss |
|---:|---:|---:|---:|---:|---:|---:|
{rows}

The zoo models are the seed-{ZOO_SEED} runs.{f" **Shipped with --force: seed(s) {weak} miss the sink criterion.**" if weak else ""}

{SEARCH.read_text() if SEARCH.exists() else ""}"""


def _run_job(job: tuple[str, int, str, int, bool]) -> tuple[int, str, Path, dict, dict]:
    work, seed, gate, threads, reuse = job
    torch.set_num_threads(threads)
    out, summary, m = run_one(Path(work), seed, gate, reuse)
    return seed, gate, out, summary, m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="folder for the per-seed runs (default: a temporary folder)")
    ap.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once, each on cpu_count // jobs threads")
    ap.add_argument("--reuse", action="store_true", help="measure, not retrain, runs already finished in --work "
                    "with this recipe")
    ap.add_argument("--force", action="store_true", help="ship the zoo even if a seed misses the sink criterion")
    args = ap.parse_args()
    if ZOO_SEED not in args.seeds:
        sys.exit(f"--seeds must include the zoo seed {ZOO_SEED}")
    work = Path(args.work or tempfile.mkdtemp(prefix="gatelens-zoo-"))
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    jobs = [(str(work), seed, gate, threads, args.reuse) for seed in args.seeds
            for gate in ("none", "elementwise") + (("headwise",) if seed == ZOO_SEED else ())]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_run_job, jobs))
    else:
        results = [_run_job(j) for j in jobs]
    per_seed, zoo_runs = [], {}
    for seed in args.seeds:
        row = {"seed": seed}
        for s_, gate, out, summary, m in results:
            if s_ != seed:
                continue
            row[gate], row[f"{gate}_val"] = m, summary["final_val_loss"]
            if seed == ZOO_SEED:
                zoo_runs[gate] = (out, m)
        per_seed.append(row)
    (work / "per_seed.json").write_text(json.dumps(per_seed, indent=1))
    weak = [r["seed"] for r in per_seed if r["none"]["f_attn"] < MIN_F_ATTN or r["none"]["f_attn_dormant"] < MIN_DORMANT]
    if weak and not args.force:
        sys.exit(f"baseline sink too weak at seed(s) {weak} (need F-Attn >= {MIN_F_ATTN} and dormant >= {MIN_DORMANT}); "
                 f"the zoo is left unchanged (per-seed results in {work / 'per_seed.json'}; --force ships anyway)")
    zoo = {}
    for name, gate in MODELS.items():
        src, m = zoo_runs[gate]
        tmp = ZOO / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        bf16 = bf16_if_harmless(tmp, m)
        final = measure(tmp)
        (tmp / "MODEL_CARD.md").write_text(model_card(name, tmp, final, initial_norms(tmp), bf16, weak))
        (tmp / "card.json").write_text(json.dumps(card_json(name, tmp, final), indent=2) + "\n")
        shutil.rmtree(ZOO / name, ignore_errors=True)
        tmp.rename(ZOO / name)
        zoo[name] = measure(ZOO / name)
    (ZOO / "README.md").write_text(readme(per_seed, zoo, weak))
    print(json.dumps({"per_seed": per_seed, "zoo": zoo}, indent=1))


if __name__ == "__main__":
    main()
