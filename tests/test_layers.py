"""Imports only go down: every module of gatelens sits in one layer of docs/architecture.md's table, and no import
of it, not even one inside a function, reaches a layer above its own. Results draw through the plots registry
(`plots.figures`), so no result type needs to import plots."""

import ast
import re
import types
from pathlib import Path

import gatelens
from gatelens import plots

ROOT = Path(gatelens.__file__).resolve().parent
DOC = ROOT.parent / "docs" / "architecture.md"

# docs/architecture.md's layer table, bottom to top: each layer and the files and folders of gatelens/ in it. A module
# may import its own layer and those below; test_the_table_is_the_docs_table keeps the two the same.
LAYERS = [
    ("foundation", ("errors.py", "options.py", "__init__.py")),
    ("kernels and attention", ("kernels.py", "attention.py")),
    ("models", ("models/",)),
    ("data", ("data.py", "tasks.py")),
    ("metrics", ("metrics/",)),
    ("measuring", ("measure.py", "settings.py", "distributed.py", "patterns.py", "ablate.py", "emergence.py",
                   "sinks.py")),
    ("output", ("report.py", "plots/", "views.py", "reading.py", "compare.py", "figures.py")),
    ("training", ("train/",)),
    ("coverage", ("coverage.py", "bench.py")),
    ("command line", ("cli.py", "commandline.py", "terminal.py", "__main__.py")),
]

# Upward imports not yet removed, each with why: {(importing module, imported module): reason}. Empty: none left.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def layer_of(module: str) -> int:
    """The rank in LAYERS of a module given by dotted name (`gatelens.metrics.sink`)."""
    parts = module.split(".")[1:]
    place = "__init__.py" if not parts else parts[0] + (".py" if (ROOT / f"{parts[0]}.py").is_file() else "/")
    ranks = [i for i, (_, places) in enumerate(LAYERS) if place in places]
    assert len(ranks) == 1, f"{module}: {place} is in {len(ranks)} layers of the table, not one"
    return ranks[0]


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_package(module: str) -> bool:
    return (ROOT.joinpath(*module.split(".")[1:]) / "__init__.py").is_file()


def _root_name(name: str) -> list[str]:
    """What `from gatelens import name` imports: a lazy public name is its module's (gatelens.__init__)."""
    return [f"gatelens.{gatelens._LAZY[name]}"] if name in gatelens._LAZY else ["gatelens"]


def imports(module: str, source: str):
    """(line, gatelens module) of every import in `source`, at any depth (functions, branches, TYPE_CHECKING)."""
    package = module if _is_package(module) else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "gatelens":       # the facade reaches every lazy name
                    yield from ((node.lineno, f"gatelens.{m}") for m in sorted(set(gatelens._LAZY.values())))
                elif alias.name.startswith("gatelens."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "gatelens" and not target.startswith("gatelens."):
                continue
            for alias in node.names:
                if _is_module(f"{target}.{alias.name}"):
                    yield node.lineno, f"{target}.{alias.name}"
                elif target == "gatelens":
                    yield from ((node.lineno, m) for m in _root_name(alias.name))
                else:
                    yield node.lineno, target


def upward(module: str, source: str, path: str) -> list[str]:
    """Each import of `module` that reaches a layer above its own, as `path:line imports X (layer -> layer)`."""
    own = layer_of(module)
    return [f"{path}:{line} imports {target} ({LAYERS[own][0]} -> {LAYERS[layer_of(target)][0]})"
            for line, target in imports(module, source)
            if layer_of(target) > own and (module, target) not in KNOWN_UPWARD]


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def test_every_module_sits_in_one_layer():
    for module, _ in _modules():
        layer_of(module)


def test_the_table_is_the_docs_table():
    text = DOC.read_text()
    table = text[text.index("| layer | modules |"):].split("\n\n")[0].splitlines()[2:]
    rows = []
    for line in table:
        name, cell = [c.strip() for c in line.strip("|").split("|", 1)]
        places = [t for t in re.findall(r"`([^`]+)`", cell) if re.fullmatch(r"[\w]+(\.py|/)", t) and (ROOT / t).exists()]
        rows.append((name, tuple(places)))
    assert [(n, sorted(p)) for n, p in rows] == [(n, sorted(p)) for n, p in LAYERS]


def test_the_table_keeps_what_computes_below_what_shows_it():
    computing = ["gatelens.metrics", "gatelens.models", "gatelens.kernels", "gatelens.attention"]
    measuring = ["gatelens.measure", "gatelens.patterns", "gatelens.ablate", "gatelens.emergence", "gatelens.sinks"]
    showing = ["gatelens.plots", "gatelens.cli", "gatelens.compare", "gatelens.figures", "gatelens.views",
               "gatelens.coverage"]
    assert max(map(layer_of, computing)) < min(map(layer_of, [*measuring, "gatelens.report", *showing]))
    assert max(map(layer_of, measuring)) < min(map(layer_of, showing))


def test_no_import_reaches_a_layer_above():
    found = [hit for module, path in _modules()
             for hit in upward(module, path.read_text(), str(path.relative_to(ROOT.parent)))]
    assert not found, "imports that go up the layers of docs/architecture.md:\n" + "\n".join(found)


def test_the_check_sees_an_upward_import_inside_a_function():
    source = "from .base import Result\n\n\ndef figures(self):\n    from ..plots import sink\n    return sink\n"
    assert upward("gatelens.metrics.sink", source, "gatelens/metrics/sink.py") == \
        ["gatelens/metrics/sink.py:5 imports gatelens.plots.sink (metrics -> output)"]
    assert upward("gatelens.ablate", "import gatelens\n", "gatelens/ablate.py") == \
        ["gatelens/ablate.py:1 imports gatelens.reading (measuring -> output)"]
    assert upward("gatelens.measure", "from . import figures, errors\n", "x.py") == \
        ["x.py:1 imports gatelens.figures (measuring -> output)"]
    assert upward("gatelens.cli", "from .plots import figures\nfrom . import plots\n", "cli.py") == []


def _doc_module():
    """The doc's worked example (the entropy metric) as a module, before its drawing is registered, and the
    drawing's code."""
    text = DOC.read_text()
    code = re.search(r"### Adding a metric: a worked example.*?```python\n(.*?)```", text, re.DOTALL).group(1)
    drawing = re.search(r"```python\n(from gatelens import plots\n.*?)```", text, re.DOTALL).group(1)
    module = types.ModuleType("gatelens.metrics.entropy_doc")
    module.__package__ = "gatelens.metrics"
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    module.EntropyResult.metric = "entropy"
    return module, drawing


def test_a_per_head_result_draws_its_heatmaps_until_its_type_registers_a_drawing():
    import matplotlib.pyplot as plt

    from gatelens.metrics.base import HeadLayer, Result

    module, drawing = _doc_module()

    class Narrower(module.EntropyResult):
        pass

    layers = [HeadLayer(0, {"entropy": [0.5, 1.5]}), HeadLayer(1, {"entropy": [1.0, 2.0]})]
    result, sub = (t({"spec": "m/tiny", "gate": "none"}, {"input": "x"}, layers) for t in (module.EntropyResult, Narrower))
    figs = plots.figures(result)
    assert list(figs) == ["entropy_entropy"]
    assert figs["entropy_entropy"].axes[0].get_title() == "attention entropy (nats) of tiny"
    exec(compile(drawing, str(DOC), "exec"), module.__dict__)           # @plots.draws(EntropyResult)
    assert list(plots.figures(result)) == list(plots.figures(sub)) == ["entropy_layers"]
    line = plots.figures(sub)["entropy_layers"].axes[0].lines[0]
    assert list(line.get_ydata()) == [1.0, 1.5]                         # the mean over heads of each layer
    assert plots.compare_figures(module.EntropyResult, [result]) == {}
    assert plots.figures(Result()) == {} and plots.figures(object()) == {}
    plt.close("all")
