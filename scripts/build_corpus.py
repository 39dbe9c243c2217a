"""Build the real-text corpus and refresh the shipped evaluation sample.

    python3 scripts/build_corpus.py                 # -> corpus/ and gatelens/data/

Writes corpus/{train,val,eval_sample}.txt and corpus/manifest.json, then copies
the eval sample to gatelens/data/eval_sample.txt and regenerates
gatelens/data/ATTRIBUTION.md.  Running it twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # gatelens from this checkout, installed or not

from corpus_builder import SOURCES, build_corpus  # noqa: E402  (beside this script)

COMMAND = "python3 scripts/build_corpus.py"


def attribution_markdown(manifest: dict) -> str:
    """ATTRIBUTION.md for gatelens/data/eval_sample.txt, from the build manifest."""
    ev = manifest["files"]["eval_sample.txt"]
    lines = [
        "# Attribution for `eval_sample.txt`",
        "",
        "`eval_sample.txt` is a held-out sample of real English text: "
        f"{ev['documents']} documents, {ev['characters']:,} characters, documents "
        f"separated by a line containing exactly `{manifest['delimiter']}`. "
        "It never overlaps the training or validation text, by construction "
        "(split by document, see `scripts/corpus_builder.py`).",
        "",
        f"Made with `{COMMAND}` (seed {manifest['seed']}, "
        f"val_fraction {manifest['val_fraction']}), which calls "
        "`build_corpus` of `scripts/corpus_builder.py` and copies `corpus/eval_sample.txt` here. "
        f"sha256: `{ev['sha256']}`.",
        "",
        "Text was cleaned automatically (wiki markup, reStructuredText markup and "
        "code samples removed), so some sentences are abridged.",
        "",
    ]
    for name, info in manifest["sources"].items():
        titles = info["eval_titles"]
        if not titles:
            continue
        lines += [
            f"## {name}",
            "",
            f"- License: {info['license']}",
            f"- Attribution: {info['attribution']}",
            f"- Obtained from: {info['package']}",
            f"- In this sample: {info['eval']['documents']} documents, "
            f"{info['eval']['characters']:,} characters",
        ]
        if name == "wikipedia":
            lines.append("- Text is available under the Creative Commons "
                         "Attribution-ShareAlike 3.0 license; this sample is "
                         "shared under the same license. Articles (English "
                         "Wikipedia titles):")
        else:
            lines.append("- Documents:")
        lines += [f"  - {t}" for t in titles]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "corpus", help="output directory")
    parser.add_argument("--cache", type=Path, default=None,
                        help="download cache (default: OUT/_sources)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split by document")
    parser.add_argument("--val-fraction", type=float, default=0.02,
                        help="share of the documents left after the eval sample that go to val.txt")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES,
                        help="sources to fetch (default: all)")
    parser.add_argument("--no-copy", action="store_true",
                        help="do not refresh gatelens/data/eval_sample.txt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    cache = args.cache if args.cache is not None else args.out / "_sources"
    manifest = build_corpus(args.out, cache, seed=args.seed,
                            val_fraction=args.val_fraction, sources=args.sources)
    if not args.no_copy:
        data = REPO / "gatelens" / "data"
        data.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "eval_sample.txt", data / "eval_sample.txt")
        (data / "ATTRIBUTION.md").write_text(attribution_markdown(manifest), encoding="utf-8")
    for name, info in manifest["files"].items():
        logging.info("%s: %d documents, %d characters, sha256 %s", name,
                     info["documents"], info["characters"], info["sha256"][:16])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
