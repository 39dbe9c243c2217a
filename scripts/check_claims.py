"""Check the numbers README.md's findings quote against what re-makes them (docs/claims.toml).

    python scripts/check_claims.py                 # quick and cheap commands, every file read
    python scripts/check_claims.py --cost quick    # only the tiny zoo models' commands (the slow test tier)
    python scripts/check_claims.py --cost slow     # every command, smollm2's long contexts too
    python scripts/check_claims.py --only mech.    # the claims whose id starts with mech.

Each claim names the README text around a number (it must appear there verbatim, so README and table cannot
drift apart), the number as printed, and its source: a gatelens command printing JSON (run in-process, once
per command line) with a key path into it, or a file (a figures CSV and its cell, or a JSON and a key path).
A claim holds when the source's value rounds to the printed number at the printed precision. Exit status 1
when any claim fails; claims whose command costs more than --cost are listed as skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shlex
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = ROOT / "docs" / "claims.toml"
COSTS = ("quick", "cheap", "slow")   # tiny zoo models, seconds / smollm2 at 256 tokens, a minute / the rest


def lookup(obj, path: str):
    """`a.b[2].c` or `models[model=mech-baseline].f_attn`: dict keys, list indices, or the first list item whose
    field equals a value (compared as text)."""
    for part in path.split("."):
        m = re.fullmatch(r"([^\[]*)(?:\[(.*)\])?", part)
        name, sel = m.group(1), m.group(2)
        if name:
            obj = obj[name]
        if sel is None:
            continue
        if "=" in sel:
            field, want = sel.split("=", 1)
            obj = next(x for x in obj if str(x.get(field)) == want)
        else:
            obj = obj[int(sel)]
    return obj


def printed(value: str) -> tuple[float, float]:
    """The number as the README prints it (`**0.753**`, `+0.406`, `−0.000`, `24,926`) and half its last digit."""
    text = value.replace("**", "").replace("−", "-").replace(",", "").lstrip("+")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(text), 0.5 * 10.0 ** -decimals


def run_command(line: str) -> dict:
    from typer.testing import CliRunner

    from gatelens.cli import app

    with tempfile.TemporaryDirectory() as out:
        r = CliRunner().invoke(app, [*shlex.split(line), "--out", out])
    if r.exit_code != 0:
        raise RuntimeError(f"`gatelens {line}` exited {r.exit_code}: {r.output.strip().splitlines()[-1:]}")
    return json.loads(r.stdout)


def read_file(claim: dict) -> float:
    path = ROOT / claim["file"]
    if path.suffix == ".csv":
        rows = list(csv.DictReader(path.open()))
        row = next(r for r in rows if all(r[k] == str(v) for k, v in claim.get("row", {}).items()))
        return float(row[claim["column"]])
    return lookup(json.loads(path.read_text()), claim["key"])


def check(cost: str = "cheap", only: tuple[str, ...] = (), echo=print) -> int:
    """Check every claim whose command costs at most `cost` (and every file claim; with `only`, those whose id
    starts with one of these); returns the number that failed."""
    table = tomllib.loads(CLAIMS.read_text())
    commands, claims = table["command"], table["claim"]
    readme = (ROOT / "README.md").read_text()
    allowed = COSTS[: COSTS.index(cost) + 1]
    outputs: dict[str, dict] = {}
    failed = skipped = 0
    for c in claims:
        if only and not c["id"].startswith(tuple(only)):
            continue
        source = c.get("command")
        if source is not None and commands[source]["cost"] not in allowed:
            skipped += 1
            echo(f"skip  {c['id']}: `gatelens {commands[source]['run']}` costs {commands[source]['cost']}")
            continue
        problems = []
        if c["readme"] not in readme:
            problems.append("its README text is not in README.md")
        elif c["value"] not in c["readme"]:
            problems.append(f"{c['value']} is not in its README text")
        try:
            if source is not None:
                if source not in outputs:
                    outputs[source] = run_command(commands[source]["run"])
                actual = lookup(outputs[source], c["key"])
                where = f"gatelens {commands[source]['run']}: {c['key']}"
            else:
                actual = read_file(c)
                where = f"{c['file']}: {c.get('key') or c['column']}"
        except (KeyError, IndexError, StopIteration, RuntimeError, ValueError) as e:
            actual, where = None, f"{type(e).__name__}: {e}"
        want, tol = printed(c["value"])
        scale = c.get("scale", 1.0)
        if actual is None:
            problems.append(f"no value ({where})")
        elif abs(float(actual) * scale - want) > tol * (1 + 1e-9):
            problems.append(f"source gives {float(actual) * scale:.6g}, README prints {c['value']}")
        status = "FAIL" if problems else "ok"
        failed += bool(problems)
        got = "" if actual is None else f" = {float(actual) * scale:.6g}"
        echo(f"{status:4}  {c['id']}: {c['value']} <- {where}{got}" + (f"  [{'; '.join(problems)}]" if problems else ""))
    echo(f"{failed} failed, {skipped} skipped (cost above {cost})")
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cost", choices=COSTS, default="cheap", help="run commands up to this cost (default: cheap)")
    ap.add_argument("--only", action="append", default=[], help="only claims whose id starts with this (repeatable)")
    args = ap.parse_args(argv)
    return 1 if check(args.cost, args.only) else 0


if __name__ == "__main__":
    sys.exit(main())
