"""Property-based tests (hypothesis) of every option value's one check: random comma lists to the list options'
parser, random TOML recipes and random keyword values to TrainConfig. Each input is either accepted with a value
inside what its option or field declares, or refused with a GatelensError of one line; never another exception."""

from __future__ import annotations

import json
import math
import typing

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatelens.cli import METHODS, TYPES
from gatelens.errors import GatelensError
from gatelens.options import LAYERS, SEQ_LENS, ListOption
from gatelens.train.config import FIELDS, HINTS, TrainConfig, read_recipe

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LIST_OPTIONS = {"seq-len": SEQ_LENS, "layers": LAYERS, "methods": METHODS, "types": TYPES}
ACCEPTED = {"seq-len": " 16, 32", "layers": "0,2", "methods": "bare, sink", "types": "llama,qwen3"}  # both paths run


def one_line(e: GatelensError) -> bool:
    text = str(e)
    return bool(text.strip()) and len(text.splitlines()) == 1


# ---- comma lists ----------------------------------------------------------------------------------------

def _item(option: ListOption):
    """Items a user might type: numbers in and out of range, the option's words and choices, junk, blanks."""
    return st.one_of(st.integers(-5, 5000).map(str), st.sampled_from(("", " ", "1e3", "2.5", "+3", "0x10", "٣")),
                     st.sampled_from(option.words + option.choices + ("llama", "bogus", "all", "each")),
                     st.text(max_size=6))


def _list_text(option: ListOption):
    pieces = st.lists(_item(option), max_size=6)
    return st.one_of(pieces.map(",".join), pieces.map(", ".join), st.text(max_size=20))


@pytest.mark.parametrize("name", LIST_OPTIONS)
def test_a_list_option_is_accepted_in_range_or_refused_in_one_line(name):
    option = LIST_OPTIONS[name]

    @FAST
    @given(text=_list_text(option))
    @example(text=ACCEPTED[name])
    def check(text):
        try:
            value = option.parse(text)
        except GatelensError as e:
            assert one_line(e) and str(e).startswith(option.flag), str(e)
            return
        if isinstance(value, str):
            assert value in option.words and value == text.strip()
            return
        assert isinstance(value, tuple) and value and len(set(value)) == len(value)
        for v in value:
            if option.kind is int:
                assert type(v) is int and (option.range is None or v in option.range)
            else:
                assert type(v) is str and v == v.strip() and v and (not option.choices or v in option.choices)
        assert len(value) == len(text.split(","))  # no item dropped: an empty one is refused, not skipped

    check()


@FAST
@given(text=_list_text(SEQ_LENS))
def test_the_typer_parser_refuses_with_the_same_line(text):
    import typer

    parse = SEQ_LENS.typer()
    try:
        value = parse(text)
    except typer.BadParameter as e:
        assert isinstance(e.__cause__, GatelensError) and one_line(e.__cause__)
        return
    assert value == SEQ_LENS.parse(text)


# ---- TrainConfig: random recipes and keyword values ------------------------------------------------------

def _in_declared_range(cfg: TrainConfig) -> None:
    for name, f in FIELDS.items():
        v = getattr(cfg, name)
        allowed = typing.get_args(HINTS[name]) or (HINTS[name],)
        assert type(v) in allowed, (name, v)
        meta = f.metadata
        if meta.get("range") is not None:
            assert v in meta["range"], (name, v, str(meta["range"]))
        if meta.get("choices"):
            assert v in meta["choices"], (name, v)
        if isinstance(v, str):
            assert v.strip(), name
    assert cfg.min_lr <= cfg.lr and cfg.n_heads % cfg.n_kv_heads == 0 and cfg.head_dim % 2 == 0  # None resolved


SCALARS = st.one_of(st.integers(-(2**70), 2**70), st.integers(-3, 300), st.booleans(),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from((0.0, 1.0, 0.5, 1e-3, -1.0)),
                    st.text(max_size=8), st.sampled_from(("none", "elementwise", "cpu", "tpu", "cuda:1", "bfloat16",
                                                          "bigram-backcopy", "", " ", "/nonexistent/file.txt", ".",
                                                          "/dev/null", "x\0y", "a" * 300)))
TASK_KEYS = ("vocab", "n_triggers", "sparsity", "temperature", "world_seed", "trigger_choice", "bogus")
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.sampled_from(TASK_KEYS), SCALARS, max_size=3))
KEYS = st.sampled_from(tuple(FIELDS) + ("learning_rate", "Steps", "grad-clip"))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


@FAST
@given(recipe=st.dictionaries(KEYS, VALUES, max_size=6))
@example(recipe={"lr": 1, "min_lr": 0.0, "grad_clip": 0.0, "beta1": 0, "task_params": {"temperature": 2}})
def test_a_random_recipe_is_accepted_in_range_or_refused_in_one_line(recipe, tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in recipe.items()), encoding="utf-8")
    try:
        raw = read_recipe(path)
        cfg = TrainConfig(**{"out": str(tmp_path / "o"), **raw})
    except GatelensError as e:
        assert one_line(e), str(e)
        return
    _in_declared_range(cfg)
    assert set(recipe) <= set(FIELDS)   # an unknown key is never accepted


@FAST
@given(kwargs=st.dictionaries(st.sampled_from(tuple(FIELDS)), st.one_of(VALUES, st.none()), max_size=6))
def test_random_keyword_values_are_accepted_in_range_or_refused_in_one_line(kwargs, tmp_path):
    try:
        cfg = TrainConfig(**{"out": str(tmp_path / "o"), **kwargs})
    except GatelensError as e:
        assert one_line(e), str(e)
        return
    _in_declared_range(cfg)
