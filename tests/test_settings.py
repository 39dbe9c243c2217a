"""One measuring settings object: what the CLI parses, what compare_models and figures.toml build, what a result
records and gives back."""

import dataclasses
import json

import pytest

from gatelens import GatelensError
from gatelens.settings import Settings


def test_settings_round_trip_through_json():
    s = Settings(seq_len="256, 1024", n_seqs=3, batch_size=2, dtype="bfloat16", bos=False, eps=0.25,
                 dataset="eval_sample")
    d = json.loads(json.dumps(s.to_dict()))
    assert d["seq_len"] == [256, 1024]
    assert Settings.from_dict(d) == s
    assert s.lengths() == [256, 1024] and s.at(1024).length() == 1024


@pytest.mark.parametrize("kw, phrase", [
    ({"n_seqs": 0}, "--n-seqs 0 is out of range"),
    ({"batch_size": 1.5}, "--batch-size 1.5 is out of range"),
    ({"eps": 1.0}, "--eps 1.0 is out of range"),
    ({"device": "gpu"}, "--device 'gpu'"),
    ({"dtype": "fp8"}, "--dtype 'fp8'"),
    ({"seq_len": 1}, "--seq-len"),
    ({"bos": "yes"}, "--bos 'yes'"),
    ({"text_file": "a.txt", "dataset": "eval_sample"}, "only one of --text and --dataset"),
])
def test_a_bad_setting_is_one_line_naming_its_option(kw, phrase):
    with pytest.raises(GatelensError, match=None) as e:
        Settings(**kw)
    assert phrase in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_key_is_refused_by_name():
    with pytest.raises(GatelensError, match="unknown setting 'seqlen'"):
        Settings.from_dict({"seqlen": 256})


def test_one_length_is_asked_where_one_is_measured():
    with pytest.raises(GatelensError, match="one --seq-len"):
        Settings(seq_len=(64, 128)).length()


def test_every_measuring_command_has_an_option_per_setting():
    """The CLI's options are made from the fields: a field added to Settings is an option of every measuring command
    (eps only where the command uses it)."""
    from typer.main import get_command

    from gatelens.cli import app

    group = get_command(app)
    for name in ("sink", "sinks", "massive", "gates", "norms", "heads", "rank", "ablate", "measure", "compare",
                 "emergence"):
        opts = {o for p in group.commands[name].params for o in p.opts}
        for f in dataclasses.fields(Settings):
            flag = "--text" if f.name == "text_file" else "--" + f.name.replace("_", "-")
            if f.name == "eps":
                assert (flag in opts) == (name in ("sink", "sinks", "compare")), name
            else:
                assert flag in opts, (name, flag)


def test_a_result_gives_back_the_settings_it_was_measured_with():
    from gatelens.measure import standard_metrics

    s = Settings(seq_len=32, n_seqs=2, batch_size=1, eps=0.2)
    loaded = s.load("mech-baseline")
    r = standard_metrics(loaded, s.inputs(loaded), batch_size=s.batch_size, options=s.metric_options())
    back = Settings.from_result(r.sink)
    assert back == s, (back, s)


def test_compare_takes_the_settings_or_their_fields_not_both():
    from gatelens.compare import compare_models

    with pytest.raises(GatelensError, match="not both"):
        compare_models(["mech-baseline", "mech-gated"], Settings(), seq_len=32)
    a = compare_models(["mech-baseline", "mech-gated"], Settings(seq_len=32, n_seqs=2))
    b = compare_models(["mech-baseline", "mech-gated"], seq_len=32, n_seqs=2)
    assert a.to_frame().equals(b.to_frame())
    assert a.settings == b.settings
