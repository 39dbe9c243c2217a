"""gatelens: measure what a sigmoid gate after SDPA changes inside a language model.

    import gatelens
    loaded = gatelens.load("mech-baseline")
    result = gatelens.sink(loaded)

The names below are imported on first use (PEP 562), so `import gatelens` and `gatelens --help` do not pay for
torch and transformers until a model is loaded.
"""

__version__ = "0.1.0"

from .errors import GatelensError  # noqa: E402

_LAZY = {"prepare_inputs": "measure", "sink": "measure", "Loaded": "models.load", "ModelInfo": "models.load",
         "load": "models.load", "read": "reading"}
__all__ = ["GatelensError", "Loaded", "ModelInfo", "load", "prepare_inputs", "read", "sink", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gatelens' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
