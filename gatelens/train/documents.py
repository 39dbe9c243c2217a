"""A text corpus on disk: documents separated by lines holding exactly `DOC_SEPARATOR` (scripts/build_corpus.py)."""

from __future__ import annotations

from pathlib import Path

from ..data import DOC_SEPARATOR, read_text


def read_documents(path: str | Path) -> list[str]:
    """The non-empty documents of a corpus file (read as every user text is, `data.read_text`), in order, without
    their outer blank lines."""
    docs: list[str] = []
    current: list[str] = []
    for line in read_text(path).split("\n"):
        if line == DOC_SEPARATOR:
            docs.append("\n".join(current).strip("\n"))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current).strip("\n"))
    return [d for d in docs if d]
