"""`gatelens.read(path)`: a result back from the JSON a command wrote, to plot or compare without re-measuring.

    r = gatelens.read("results/sinks/smollm2-135m")        # the folder, or the .json itself
    sinks_plots.received_profile([r.received])

The command that wrote a file is known by its name (`sink.json`, `sinks.json`, `compare.json` ...); a JSON saved
from `--json` under another name says which with `kind=`. Each result type rebuilds itself (`from_dict`): what the
JSON holds is what comes back (the per-head numbers, per-position profiles, top keys, runs ...).
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import GatelensError


def _types() -> dict:
    from .ablate import AblationResult
    from .compare import Comparison
    from .emergence import EmergenceResult
    from .metrics.gates import GatesResult
    from .metrics.heads import HeadsResult
    from .metrics.massive import MassiveResult
    from .metrics.norms import NormsResult
    from .metrics.rank import RankResult
    from .metrics.sink import SinkResult
    from .sinks import SinksResult

    return {"sink": SinkResult, "massive": MassiveResult, "gates": GatesResult, "rank": RankResult,
            "sinks": SinksResult, "ablate": AblationResult, "norms": NormsResult, "heads": HeadsResult,
            "compare": Comparison, "emergence": EmergenceResult}


def read(path: str | Path, kind: str | None = None):
    """The result a command wrote into `path` (its output folder or its JSON file)."""
    path = Path(path)
    types = _types()
    if path.is_dir():
        found = [p for p in sorted(path.glob("*.json")) if p.stem in types]
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise GatelensError(f"{path} holds {what} result JSON of a gatelens command ({', '.join(types)}); "
                                "give the .json file")
        path = found[0]
    if not path.is_file():
        raise GatelensError(f"{path} does not exist; give a command's output folder or its .json file")
    kind = kind or path.stem
    if kind not in types:
        raise GatelensError(f"{path.name}: not a result gatelens reads back; pass kind= one of {', '.join(types)}")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GatelensError(f"{path} is not a JSON file gatelens wrote ({e})") from None
    if kind == "sink" and isinstance(d.get("f_attn"), dict):
        raise GatelensError(f"{path} is a --seq-len sweep: its per-length numbers are in the JSON itself "
                            "(f_attn, sink_rate by length); read one length's run instead")
    try:
        return types[kind].from_dict(d)
    except (KeyError, TypeError, IndexError) as e:
        raise GatelensError(f"{path} is not the JSON of `gatelens {kind}` (missing or odd field {e})") from None
