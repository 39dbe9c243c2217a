"""Offline tests of the corpus format, the split (scripts/corpus_builder.py) and the shipped eval sample."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gatelens.data import DOC_SEPARATOR
from gatelens.train.documents import read_documents

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from corpus_builder import Document, clean_rst, clean_wikitext, split_documents, write_documents  # noqa: E402

EVAL_SAMPLE = REPO / "gatelens" / "data" / "eval_sample.txt"


def synthetic_docs(n: int = 300) -> list[Document]:
    sources = ("alpha", "beta", "gamma")
    return [
        Document(sources[i % 3], f"doc {i}", f"Title {i}\n\nBody of document {i}.\n" * (1 + i % 7))
        for i in range(n)
    ]


def test_delimiter_round_trip(tmp_path: Path) -> None:
    docs = ["first line\n\nsecond paragraph", "ünïcode — “quotes”", "x\ny <|doc|> z"]
    path = tmp_path / "docs.txt"
    write_documents(path, docs)
    assert read_documents(path) == docs
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines.count(DOC_SEPARATOR) == len(docs) - 1


def test_delimiter_lines_inside_text_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    write_documents(path, [f"a\n{DOC_SEPARATOR}\nb", "c"])
    assert read_documents(path) == ["a\nb", "c"]


def test_split_is_deterministic_and_seeded() -> None:
    docs = synthetic_docs()
    budgets = {"alpha": 2_000, "beta": 1_000}
    a = split_documents(docs, seed=3, val_fraction=0.1, eval_budgets=budgets)
    b = split_documents(list(reversed(docs)), seed=3, val_fraction=0.1, eval_budgets=budgets)
    assert a == b
    c = split_documents(docs, seed=4, val_fraction=0.1, eval_budgets=budgets)
    assert [d.title for d in c.train] != [d.title for d in a.train]


def test_split_is_a_disjoint_partition_by_document() -> None:
    docs = synthetic_docs()
    budgets = {"alpha": 2_000, "beta": 1_000}
    split = split_documents(docs, seed=0, val_fraction=0.1, eval_budgets=budgets)
    keys = [[(d.source, d.title) for d in part] for part in (split.train, split.val, split.eval)]
    train, val, ev = (set(k) for k in keys)
    assert not train & val and not train & ev and not val & ev
    assert sum(map(len, keys)) == len(docs)
    assert train | val | ev == {(d.source, d.title) for d in docs}
    for source, budget in budgets.items():
        used = sum(len(d.text) for d in split.eval if d.source == source)
        assert 0 < used <= budget
    assert not any(d.source == "gamma" for d in split.eval)
    assert 0 < len(split.val) < len(split.train)


def test_split_rejects_duplicate_titles() -> None:
    docs = [Document("s", "t", "one"), Document("s", "t", "two")]
    with pytest.raises(ValueError):
        split_documents(docs)


def test_clean_wikitext_strips_markup() -> None:
    markup = (
        "{{Infobox|name=x}}'''Foo''' is a [[bar (thing)|bar]] in [[Baz]]"
        "<ref>cite</ref> of {{convert|3|km}}.\n"
        "[[File:X.jpg|thumb|A [[caption]] here]]\n== See also ==\n* [[Qux]]\n"
    )
    assert clean_wikitext(markup) == "Foo is a bar in Baz of 3 km."


def test_clean_rst_strips_markup_and_code() -> None:
    source = (
        "Title\n=====\n\n.. index:: foo\n\nUse :func:`~os.path.join` and ``x``::\n\n"
        "   code()\n\n.. note::\n\n   Be careful.\n\n>>> 1 + 1\n2\n"
    )
    assert clean_rst(source) == "Title\n\nUse join and x:\n\nNote:\n\nBe careful."


def test_shipped_eval_sample() -> None:
    assert EVAL_SAMPLE.exists(), "run `python3 scripts/build_corpus.py`"
    raw = EVAL_SAMPLE.read_bytes()
    assert len(raw) >= 200_000
    raw.decode("utf-8")  # strict
    docs = read_documents(EVAL_SAMPLE)
    assert len(docs) >= 20
    assert len(set(docs)) == len(docs)
