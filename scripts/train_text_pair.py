"""Train, measure and ship the text pair: tiny-baseline / tiny-gated (elementwise) / tiny-gated-headwise.

    python scripts/build_corpus.py          # once: corpus/train.txt, corpus/val.txt (+ the shipped eval sample)
    python scripts/train_text_pair.py       # three twins, same init / data order / schedule; cards + zoo

Run both from the repository root: the recipe, gatelens/zoo/recipes/text.toml, names its corpus as corpus/*.txt
relative to the working directory, as `gatelens train --config gatelens/zoo/recipes/text.toml` reads it.

Real English prose (Wikipedia test dump, Shakespeare, Python docs, KJV; see gatelens/data/ATTRIBUTION.md),
a byte-level BPE trained on the training split, BOS at the start of every sequence. Measured on the
shipped evaluation sample, which stays out of training. Published sink studies train on 1e8-1e9 tokens;
this pair gets what a 2-core CPU gives in tens of minutes, and its cards say what it reached.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import gatelens
from gatelens.compare import compare_models
from gatelens.report import describe_runtime
from gatelens.train import RECIPES, TrainConfig, read_recipe, train

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "gatelens" / "zoo"
MODELS = {"tiny-baseline": "none", "tiny-gated": "elementwise", "tiny-gated-headwise": "headwise"}
RECIPE = read_recipe(RECIPES / "text.toml")  # TrainConfig fields but out and gate
EVAL = {"seq_len": 256, "n_seqs": 16}


def curve(folder: Path) -> str:
    rows = list(csv.DictReader(open(folder / "train_log.csv")))
    lines = ["| step | tokens | val loss | F-Attn | mean gate |", "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['step']} | {int(float(r['tokens'])):,} | {float(r['val_loss']):.4f} | "
                     f"{float(r['f_attn']):.4f} | {r.get('mean_gate') or '–'} |")
    return "\n".join(lines)


def card(name: str, folder: Path, results, training: dict) -> tuple[str, dict]:
    s, cfg = training["summary"], training["config"]
    g = results.gates
    m = {"kind": "text", "eval": EVAL, "params": s["n_params"], "tokens": s["tokens"], "wall_s": s["wall_s"],
         "val_loss": s["final_val_loss"], "f_attn": results.sink.f_attn, "sink_rate": results.sink.sink_rate,
         "m_act": results.massive.m_act, "m_act_layer_mean": results.massive.m_act_layer_mean,
         "perplexity_eval_sample": results.perplexity.perplexity, "mean_gate": None if g is None else g.mean_gate,
         "description": f"{MODELS[name]} gate; 4-layer Qwen3 LM on {s['tokens'] / 1e6:.1f}M tokens of English prose"}
    text = f"""# {name}: a tiny language model on real English prose ({MODELS[name]} gate)

**Kind:** text model (Qwen3 architecture, {'standard HF checkpoint' if MODELS[name] == 'none' else "the paper's released gated format (model_type qwen3 + gate flag), loaded natively by gatelens"}).
It is one of three twins (tiny-baseline, tiny-gated, tiny-gated-headwise) that differ only in the gate:
same config otherwise, same initial values of every shared parameter, same data order, steps and schedule.

| | |
|---|---|
| layers / heads / KV heads / d_model / d_head / FFN | {cfg['n_layers']} / {cfg['n_heads']} / {cfg['n_kv_heads']} / {cfg['d_model']} / {cfg['head_dim']} / {cfg['ffn']} |
| embeddings | {'tied' if cfg['tie_embeddings'] else 'untied (input embedding and LM head are separate matrices)'} |
| parameters | {s['n_params']:,} |
| data | corpus/train.txt built by scripts/build_corpus.py (see gatelens/data/ATTRIBUTION.md); BPE vocab {cfg['bpe_vocab']}; every sequence starts with BOS |
| tokens seen | {s['tokens']:,} ({s['steps']} steps of {cfg['batch_size']} x {cfg['seq_len']}) |
| optimiser | AdamW lr {cfg['lr']} -> {cfg['min_lr']} (warm-up {cfg['warmup_steps']}, cosine), wd {cfg['weight_decay']}, clip {cfg['grad_clip']}, seed {cfg['seed']} |
| wall time / hardware | {s['wall_s']:.0f} s on {training['hardware']['platform']}, {training['hardware']['cpu_count']} CPUs, torch {training['hardware']['torch']}; {describe_runtime(training.get('runtime'))} |
| validation loss (corpus/val.txt) | {s['final_val_loss']:.4f} |

## Measurements (gatelens, on the shipped evaluation sample: {EVAL['n_seqs']} x {EVAL['seq_len']} tokens)
| F-Attn | sink rate | M-Act (max / layer mean) | mean gate | perplexity |
|---:|---:|---:|---:|---:|
| {m['f_attn']:.4f} | {m['sink_rate']:.3f} | {m['m_act']:.2f} / {m['m_act_layer_mean']:.2f} | {'–' if g is None else f"{g.mean_gate:.4f}"} | {m['perplexity_eval_sample']:.2f} |

Reproduce: `gatelens sink {name} --json` (defaults: the evaluation sample, 8 x 256 tokens; the card uses
`--n-seqs 16`), `gatelens compare tiny-baseline tiny-gated tiny-gated-headwise --n-seqs 16`.

**Honest reading:** uniform causal attention over 256 tokens puts about 0.020 on the first token. Published
attention-sink studies train on 1e8-1e9 tokens; this model saw {s['tokens'] / 1e6:.1f}M on two CPU cores, and
its F-Attn is whatever the table says, with the curve below. For the sink mechanism itself, see the mech-* models.

## F-Attn and validation loss against tokens seen (train_log.csv)
{curve(folder)}
"""
    return text, m


def recipe_config(out: Path, gate: str, **overrides) -> TrainConfig:
    """The recipe for one twin: what `gatelens train --config gatelens/zoo/recipes/text.toml --out OUT --gate GATE
    [--steps ...]` builds."""
    return TrainConfig(**{**RECIPE, **overrides}, out=str(out), gate=gate)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=str(ROOT / "runs" / "text-pair"))
    ap.add_argument("--steps", type=int, default=RECIPE["steps"])
    ap.add_argument("--only", choices=list(MODELS), help="train just this twin (run the twins in parallel), no cards")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name, gate in MODELS.items():
        if args.only and name != args.only:
            continue
        out = work / name
        if not (out / "config.json").exists():
            resume = (work / f".{name}.partial").exists()
            print(f"training {name} ({gate}){' (resuming)' if resume else ''}", flush=True)
            train(recipe_config(out, gate, steps=args.steps, resume=resume),
                  on_step=lambda st, tot, loss, tps: print(f"  {st}/{tot} loss {loss:.4f} {tps:,.0f} tok/s", flush=True)
                  if st % 100 == 0 else None)
    if args.only:
        return
    c = compare_models([str(work / n) for n in MODELS], seq_len=EVAL["seq_len"], n_seqs=EVAL["n_seqs"])
    for (name, _), results in zip(MODELS.items(), c.results):
        dest = ZOO / name
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(work / name, dest)
        training = json.loads((dest / "training.json").read_text())
        text, m = card(name, dest, results, training)
        (dest / "MODEL_CARD.md").write_text(text)
        (dest / "card.json").write_text(json.dumps(m, indent=2) + "\n")
        print(f"{name}: F-Attn {m['f_attn']:.4f}, M-Act {m['m_act']:.2f}, gate {m['mean_gate']}, val {m['val_loss']:.4f}")
    # the card's numbers, re-measured by the installed package through the zoo name:
    for name in MODELS:
        r = gatelens.sink(name, seq_len=EVAL["seq_len"], n_seqs=EVAL["n_seqs"])
        print(f"check {name}: gatelens sink F-Attn {r.f_attn:.6f}")


if __name__ == "__main__":
    main()
