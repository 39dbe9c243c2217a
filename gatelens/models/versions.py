"""The transformers release gatelens' model coverage was verified with, and the one line that says when another is in use.

Kept apart from `coverage` (which builds and measures models, above the measuring layer) so that loading a model,
low in the stack, can say it without importing what sits above it.
"""

from __future__ import annotations

import logging

log = logging.getLogger("gatelens")

# The transformers release every type in docs/MODELS.md was checked against, and constraints.txt pins: a newer one
# may change a modeling file under gatelens' discovery (a new gate, a moved projection), so loading says so once.
VERIFIED_TRANSFORMERS = "5.25.0"


def installed_transformers() -> str:
    import transformers

    return transformers.__version__


def untested_transformers() -> str:
    """One line when the installed transformers is newer than VERIFIED_TRANSFORMERS; empty otherwise."""
    from packaging.version import Version

    installed = installed_transformers()
    if Version(installed) <= Version(VERIFIED_TRANSFORMERS):
        return ""
    return (f"transformers {installed} is newer than {VERIFIED_TRANSFORMERS}, the version gatelens' model coverage "
            "was verified with; `gatelens models --types T` checks a model type on this one")


_warned = False


def warn_if_untested() -> None:
    """Log untested_transformers() once per process (the library logs; it never prints)."""
    global _warned
    if not _warned and (msg := untested_transformers()):
        log.warning(msg)
    _warned = True
