"""`gatelens sinks` and `gatelens ablate` in-process: files, stable JSON keys, and user mistakes as one line."""

import json

from typer.testing import CliRunner

from gatelens.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_sinks_writes_tables_figures_and_stable_json(tiny_dir, tmp_path):
    out = tmp_path / "s"
    r = run("sinks", tiny_dir("llama"), "--seq-len", 32, "--n-seqs", 2, "--json", "--out", out)
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert {"received", "contribution", "model", "settings", "provenance", "files"} <= obj.keys()
    assert {"received_first", "top_not_first", "sink_tokens", "layers", "tokens"} <= obj["received"].keys()
    assert {"f_attn", "f_attn_norm", "first_share", "value_ratio", "image_ratio"} <= obj["contribution"]["summary"].keys()
    head = obj["received"]["layers"][0]["heads"][0]
    assert {"received_first", "top_not_first", "top"} <= head.keys()
    assert {"seq", "pos", "token", "received"} <= head["top"][0].keys()
    names = {p.name for p in out.iterdir()}
    for stem in ("received_keys", "received_tokens", "received_positions", "contribution_layers", "sinks_layers"):
        assert f"{stem}.csv" in names and f"{stem}.md" in names, stem
    for stem in ("sinks_received", "sinks_norm_weighted", "sinks_top_not_first", "sinks_sink_score"):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names, stem


def test_ablate_writes_loss_change_per_layer(tiny_dir, tmp_path):
    r = run("ablate", tiny_dir("llama"), "--what", "sink-value", "--seq-len", 24, "--n-seqs", 2, "--json",
            "--out", tmp_path)
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert [x["layers"] for x in obj["runs"]] == ["", "0", "1", "all"]
    assert {"what", "layers", "loss", "loss_change", "f_attn", "m_act", "f_attn_layers"} <= obj["runs"][0].keys()
    assert obj["runs"][0]["loss_change"] == 0.0 and obj["what"] == "sink-value"
    assert (tmp_path / "ablate_loss.png").exists() and (tmp_path / "ablate.csv").exists()


def test_user_mistakes_are_one_line(tiny_dir, tmp_path):
    for args, words in ((("--what", "gate-one"), "no gate"), (("--what", "nope"), "--what"),
                        (("--layers", "7"), "attention layers are"), (("--layers", "x"), "comma list")):
        r = run("ablate", tiny_dir("llama"), *args, "--seq-len", 16, "--n-seqs", 1, "--out", tmp_path / "a")
        assert r.exit_code == 2, (args, r.output)
        assert words in r.stderr and "Traceback" not in r.output
    r = run("sinks", tiny_dir("llama"), "--min-queries", 0, "--out", tmp_path / "b")
    assert r.exit_code == 2


def test_sinks_says_none_when_position_0_is_every_heads_top_key(tmp_path):
    r = run("sinks", "mech-baseline", "--seq-len", 32, "--n-seqs", 2, "--out", tmp_path / "s")
    assert r.exit_code == 0, r.output
    words = " ".join(r.output.split())   # the console wraps long lines
    assert "top key besides position 0 (sequence x layer x head): none" in words
