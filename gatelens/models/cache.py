"""gatelens' cache: where it keeps dequantized GGUF models and accelerate's offloaded weights.

The root is `$GATELENS_CACHE`, else `$XDG_CACHE_HOME/gatelens`, else `~/.cache/gatelens`. gatelens marks a root it
creates (or finds empty) with a `.gatelens-cache` file and writes only into its own subfolders (`CACHE_KINDS`);
clearing removes those subfolders and nothing else. A root that is not absolute, is `/` or the home folder (or
above it), or is a folder gatelens did not mark, is refused in one line: a cache setting can never make gatelens
delete, or even walk through, files it did not write.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import GatelensError

MARKER = ".gatelens-cache"
CACHE_KINDS = ("gguf", "offload")   # gguf: dequantized copies and their index; offload: accelerate's disk weights
_MARKER_TEXT = ("This folder is gatelens' cache. `gatelens cache --clear` removes only its subfolders "
                f"{', '.join(k + '/' for k in CACHE_KINDS)}; anything else here is left alone.\n")


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # the XDG spec: a relative value is ignored
    return base / "gatelens"


def cache_dir() -> Path:
    """The cache root (not created): GATELENS_CACHE checked, or the default under the user's cache folder."""
    env = os.environ.get("GATELENS_CACHE")
    if env is None:
        return default_cache_dir()
    fix = "set GATELENS_CACHE to an absolute folder of its own (e.g. ~/.cache/gatelens), or unset it"
    if not env.strip():
        raise GatelensError(f"GATELENS_CACHE is set but empty; {fix}")
    root = Path(env).expanduser()
    if not root.is_absolute():
        raise GatelensError(f"GATELENS_CACHE={env} is a relative path (it would depend on the current folder); {fix}")
    real, home = root.resolve(), Path.home().resolve()
    if real == Path(real.anchor) or real == home or real in home.parents:
        what = "your home folder" if real == home else "the root folder" if real == Path(real.anchor) else \
            "a folder that holds your home folder"
        raise GatelensError(f"GATELENS_CACHE={env} is {what}, which gatelens never uses as a cache; {fix}")
    return root


def _owned(root: Path) -> bool:
    """True when gatelens may write into and clear `root`: marked by gatelens, or its own default location."""
    return (root / MARKER).is_file() or root == default_cache_dir()


def checked_root() -> Path:
    """The cache root, refused in one line when it exists but is not gatelens' (no marker, not empty)."""
    root = cache_dir()
    if root.exists() and not root.is_dir():
        raise GatelensError(f"gatelens' cache {root} is a file; set GATELENS_CACHE to a folder")
    if root.is_dir() and not _owned(root) and any(root.iterdir()):
        raise GatelensError(f"GATELENS_CACHE={root} is not a gatelens cache (it has files but no {MARKER}, so "
                            "gatelens did not create it) and is left alone; set GATELENS_CACHE to a new or empty folder")
    return root


def cache_folder(kind: str) -> Path:
    """`root/kind`, created; the root is marked as gatelens' own when gatelens creates it (or finds it empty)."""
    assert kind in CACHE_KINDS, kind
    root = checked_root()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / MARKER).is_file():
        (root / MARKER).write_text(_MARKER_TEXT)
    folder = root / kind
    folder.mkdir(exist_ok=True)
    return folder


def entries() -> tuple[Path, list[dict]]:
    """The cache root and what gatelens keeps in it: one entry per folder inside each of its kinds."""
    root = checked_root()
    found = []
    for kind in CACHE_KINDS:
        folder = root / kind
        if not folder.is_dir() or folder.is_symlink():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
                continue
            size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
            found.append({"kind": kind, "name": entry.name, "bytes": size, "path": str(entry)})
    return root, found


def clear() -> Path:
    """Remove gatelens' own subfolders of the cache (a symlink in their place: the link only); return the root."""
    root = checked_root()
    for kind in CACHE_KINDS:
        folder = root / kind
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        elif folder.is_dir():
            shutil.rmtree(folder)
    return root
