"""Training gatelens' small twin models, nanoGPT-style, in short modules:

    config      TrainConfig (every setting, checked) and TOML recipes (gatelens/zoo/recipes/*.toml)
    documents   read_documents: a text corpus file, documents split by gatelens.data.DOC_SEPARATOR
    data        the batches and validation sequences of a task (gatelens.tasks) or a corpus (with its BPE)
    init        config.json and twin initialisation (a gated model starts as its baseline twin)
    checkpoint  the work folder, atomic checkpoints and log, the finished output folder
    trainer     train(): the loop, and evaluate(): one measurement pass per evaluation
"""

from .config import RECIPES, TrainConfig, read_recipe

__all__ = ["RECIPES", "TrainConfig", "initial_state", "read_recipe", "train"]


def __getattr__(name: str):  # the trainer (torch, transformers) is imported on first use, not by TrainConfig
    if name in ("initial_state", "train"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'gatelens.train' has no attribute {name!r}")
