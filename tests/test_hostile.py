"""Hostile inputs, table-driven: every user mistake is exit 2, one line on stderr naming the fix, no traceback,
nothing left in --out; every valid-but-odd input is measured and labelled with what was really measured.

Each row: an id, the command line (`{name}` placeholders are files built once by the `bad` fixture), and a
phrase the one-line error must contain. Rows that need more than a command line are functions below.
"""

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

import factories
from factories import TEXT
from gatelens.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def bad(tiny_dir, tmp_path_factory):
    """Every malformed file kind, built once: name -> path."""
    root = tmp_path_factory.mktemp("hostile")
    llama = tiny_dir("llama")
    p = {"llama": llama, "gated": tiny_dir("paper_elementwise"), "root": root}

    def copy(name, drop=(), config=None):
        folder = root / name
        shutil.copytree(llama, folder, ignore=shutil.ignore_patterns(*drop))
        if config is not None:
            (folder / "config.json").write_text(config)
        p[name] = folder
        return folder

    (root / "empty").mkdir()
    p["empty"] = root / "empty"
    copy("badjson", config='{"model_type": "llama",\n  "hidden_size": 32,,}')
    copy("notobject", config="[1, 2, 3]")
    cfg = json.loads((llama / "config.json").read_text())
    copy("bert", config=json.dumps({**cfg, "model_type": "bert"}))
    copy("notype", config=json.dumps({k: v for k, v in cfg.items() if k != "model_type"}))
    copy("notok", drop=("tokenizer*", "vocab*", "merges*", "special_tokens*"))
    copy("noweights", drop=("*.safetensors", "*.bin"))
    half = copy("half") / "model.safetensors"
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])

    (root / "garbage.gguf").write_bytes(b"this is not a gguf file at all" * 10)
    p["garbage.gguf"] = root / "garbage.gguf"
    good = factories.make_gguf(root / "ok.gguf")
    (root / "trunc.gguf").write_bytes(good.read_bytes()[:100])
    p["trunc.gguf"] = root / "trunc.gguf"
    p["notok.gguf"] = factories.make_gguf(root / "notok.gguf", tokenizer=False)
    p["bert.gguf"] = factories.make_gguf(root / "bert.gguf", arch="bert")
    p["mamba.gguf"] = factories.make_gguf(root / "mamba.gguf", arch="mamba")

    for name, content in {"empty.txt": b"", "blank.txt": b"   \n\n  \t", "one.txt": b"a",
                          "binary.bin": bytes(range(256)) * 4, "latin1.txt": "caf\xe9 na\xefve".encode("latin-1"),
                          "english.txt": TEXT.encode(), "taken": b"x"}.items():
        (root / name).write_bytes(content)
        p[name] = root / name
    (root / "adir").mkdir()
    p["adir"] = root / "adir"
    return p


def run(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def assert_clean_failure(r, phrase, out=None):
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    text = r.stderr.strip()
    assert text.startswith("error:") and len(text.splitlines()) == 1, text
    assert phrase in text, text
    if out is not None:
        assert not out.exists() or not list(out.iterdir()), sorted(out.iterdir())


M = "mech-baseline"  # a zoo model: measuring it is quick, so a wrong value must be refused before the work
CASES = [
    # ---- option values --------------------------------------------------------------------------------
    ("eps-above-1", ("sink", M, "--eps", "2"), "--eps 2"),
    ("eps-zero", ("sink", M, "--eps", "0"), "--eps 0"),
    ("eps-nan", ("sink", M, "--eps", "nan"), "--eps nan"),
    ("eps-text", ("sink", M, "--eps", "high"), "Invalid value for '--eps'"),
    ("tol-negative", ("rank", M, "--tol", "-1"), "--tol -1"),
    ("tol-above-1", ("rank", M, "--tol", "1.5"), "--tol 1.5"),
    ("device-tpu", ("sink", M, "--device", "tpu"), "--device 'tpu'"),
    ("device-cuda-index", ("sink", M, "--device", "cuda:x"), "--device 'cuda:x'"),
    ("dtype-int8", ("sink", M, "--dtype", "int8"), "--dtype 'int8'"),
    ("massive-device", ("massive", M, "--device", "tpu"), "--device 'tpu'"),
    ("gates-dtype", ("gates", "mech-gated", "--dtype", "fp8"), "--dtype 'fp8'"),
    ("seq-len-1", ("sink", M, "--seq-len", "1"), "at least 2 tokens"),
    ("seq-len-0", ("sink", M, "--seq-len", "0"), "--seq-len"),
    ("seq-len-negative", ("sink", M, "--seq-len", "-5"), "--seq-len"),
    ("seq-len-word", ("sink", M, "--seq-len", "abc"), "--seq-len"),
    ("seq-len-empty-item", ("sink", M, "--seq-len", "16,,32"), "--seq-len"),
    ("seq-len-beyond-window", ("sink", M, "--seq-len", "100000"), "context window of 256"),
    ("n-seqs-0", ("sink", M, "--n-seqs", "0"), "--n-seqs"),
    ("n-seqs-negative", ("sink", M, "--n-seqs", "-3"), "--n-seqs"),
    ("batch-size-0", ("sink", M, "--batch-size", "0"), "--batch-size"),
    ("unknown-dataset", ("sink", "{llama}", "--dataset", "wikitext"), "unknown dataset 'wikitext'"),
    ("text-and-dataset", ("sink", "{llama}", "--text", "{english.txt}", "--dataset", "eval_sample"), "only one"),
    ("unknown-option", ("sink", M, "--epss", "0.3"), "--epss"),
    ("missing-model", ("sink",), "Missing argument 'model'"),
    ("bench-methods", ("bench", M, "--methods", "bogus"), "bogus"),
    ("bench-repeats-0", ("bench", M, "--repeats", "0"), "--repeats"),
    ("bench-device", ("bench", M, "--device", "tpu"), "--device 'tpu'"),
    ("train-gate", ("train", "--gate", "sideways"), "sideways"),
    ("train-device", ("train", "--device", "tpu"), "tpu"),
    ("train-task-params", ("train", "--task", "bigram-backcopy", "--task-params", "{not json"), "--task-params"),
    ("attn-map-text-and-prompt", ("attn-map", M, "--text", "{english.txt}", "--prompt", "t1 t2"), "not both"),
    ("attn-map-device", ("attn-map", M, "--device", "tpu"), "--device 'tpu'"),
    ("compare-one-model", ("compare", "{llama}"), "baseline and at least one gated"),
    ("compare-device", ("compare", M, "mech-gated", "--device", "tpu"), "--device 'tpu'"),
    # ---- text inputs ----------------------------------------------------------------------------------
    ("text-missing", ("sink", "{llama}", "--text", "{root}/nope.txt"), "not found"),
    ("text-empty", ("sink", "{llama}", "--text", "{empty.txt}"), "empty"),
    ("text-blank", ("sink", "{llama}", "--text", "{blank.txt}"), "only whitespace"),
    ("text-one-char-no-bos", ("sink", "{llama}", "--text", "{one.txt}", "--no-bos"), "at least 2"),
    ("text-binary", ("sink", "{llama}", "--text", "{binary.bin}"), "not UTF-8 text"),
    ("text-latin1", ("sink", "{llama}", "--text", "{latin1.txt}"), "not UTF-8 text"),
    ("text-directory", ("sink", "{llama}", "--text", "{adir}"), "is a folder"),
    ("task-model-english", ("sink", M, "--text", "{english.txt}"), "outside its vocabulary"),
    ("task-model-dataset", ("sink", M, "--dataset", "eval_sample"), "drop --dataset"),
    # ---- models ---------------------------------------------------------------------------------------
    ("unknown-name", ("sink", "no-such-model"), "unknown model"),
    ("zoo-typo", ("sink", "tiny-gatd"), "did you mean tiny-gated"),
    ("bad-characters", ("sink", "my model!"), "unknown model"),
    ("hub-offline", ("sink", "someorg/somemodel"), "HF_HUB_OFFLINE"),
    ("hub-subfolder-offline", ("sink", "QwQZh/gated_attention/1B_gate_elementwise"), "HF_HUB_OFFLINE"),
    ("hub-bare-name-offline", ("sink", "gpt2"), "HF_HUB_OFFLINE"),
    ("folder-no-config", ("sink", "{empty}"), "no config.json"),
    ("config-invalid-json", ("sink", "{badjson}"), "line 2"),
    ("config-not-object", ("sink", "{notobject}"), "config.json"),
    ("config-no-model-type", ("sink", "{notype}"), "model_type"),
    ("unsupported-architecture", ("sink", "{bert}"), "unsupported architecture 'bert'"),
    ("no-tokenizer", ("sink", "{notok}"), "has no tokenizer"),
    ("no-weights", ("sink", "{noweights}"), "weights"),
    ("truncated-safetensors", ("sink", "{half}"), "corrupt"),
    ("model-is-a-file", ("sink", "{taken}"), "is a file"),
    ("path-does-not-exist", ("sink", "./no/such/folder"), "does not exist"),
    ("gguf-does-not-exist", ("sink", "{root}/missing.gguf"), "does not exist"),
    ("gguf-garbage", ("sink", "{garbage.gguf}"), "not a readable GGUF file"),
    ("gguf-truncated", ("sink", "{trunc.gguf}"), "not a readable GGUF file"),
    ("gguf-no-tokenizer", ("sink", "{notok.gguf}"), "no tokenizer inside"),
    ("gguf-reader-unsupported", ("sink", "{bert.gguf}"), "bert"),
    ("gguf-architecture-unmeasured", ("sink", "{mamba.gguf}"), "'mamba', which gatelens does not measure"),
    ("revision-on-zoo-model", ("sink", M, "--revision", "v1"), "drop --revision"),
    ("revision-on-local-folder", ("sink", "{llama}", "--revision", "main"), "drop --revision"),
    ("sinks-top-k-0", ("sinks", M, "--top-k", "0"), "--top-k"),
    ("sinks-min-queries-0", ("sinks", M, "--min-queries", "0"), "--min-queries"),
    ("ablate-what", ("ablate", M, "--what", "bogus"), "--what 'bogus'"),
    ("ablate-layers-word", ("ablate", M, "--layers", "x"), "--layers 'x'"),
    ("ablate-layer-absent", ("ablate", M, "--layers", "7"), "attention layers are 0"),
    ("ablate-gate-on-baseline", ("ablate", M, "--what", "gate-mean"), "needs a gated model"),
    ("models-unknown-type", ("models", "--types", "nosuchtype", "--out", "{root}/m/MODELS.md"),
     "nosuchtype not a causal-LM model type"),
    ("models-merge-without-types", ("models", "--merge", "--out", "{root}/m/MODELS.md"), "--merge"),
    ("models-merge-without-a-table", ("models", "--types", "llama", "--merge", "--out", "{root}/m/MODELS.md"),
     "no table to merge into"),
    ("models-out-under-a-file", ("models", "--types", "llama", "--out", "{taken}/MODELS.md"), "is a file"),
    ("gates-on-baseline", ("gates", "{llama}"), "has no attention gates"),
    ("gates-on-zoo-baseline", ("gates", M), "has no attention gates"),
    # ---- outputs --------------------------------------------------------------------------------------
    ("out-is-a-file", ("sink", M, "--out", "{taken}"), "is a file"),
    ("out-under-a-file", ("sink", M, "--out", "{taken}/sub"), "choose another --out"),
    ("out-unwritable", ("sink", M, "--out", "/proc/gatelens-out"), "choose another --out"),
    ("massive-out-is-a-file", ("massive", M, "--out", "{taken}"), "is a file"),
    ("compare-out-is-a-file", ("compare", M, "mech-gated", "--out", "{taken}"), "is a file"),
    ("attn-map-out-is-a-file", ("attn-map", M, "--out", "{taken}"), "is a file"),
    ("figures-config-missing", ("figures", "--config", "{root}/nope.toml"), "nope.toml"),
    ("figures-config-invalid", ("figures", "--config", "{badjson}/config.json"), "config.json"),
    ("train-out-is-a-file", ("train", "--steps", "1", "--out", "{taken}"), "is a file"),
    ("bench-out-is-a-file", ("bench", M, "--out", "{taken}"), "is a file"),
    ("figures-unknown-analysis", ("figures", "--only", "table_nope"), "table_nope"),
    # ---- transformers versions (issue 24, part 1) -----------------------------------------------------
    ("models-scan-gates-with-types", ("models", "--scan-gates", "--types", "llama"), "leave out --types and --merge"),
    ("models-scan-gates-with-merge", ("models", "--scan-gates", "--merge"), "leave out --types and --merge"),
    # ---- end of transformers versions -----------------------------------------------------------------
]


def _fill(arg: str, paths: dict) -> str:
    for name, path in paths.items():
        arg = arg.replace("{" + name + "}", str(path))
    return arg


@pytest.mark.parametrize("argv, phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_mistake_is_one_clean_line(argv, phrase, bad, tmp_path):
    argv = [_fill(a, bad) for a in argv]
    out = tmp_path / "o"
    if "--out" not in argv and argv[0] != "figures" and len(argv) > 1:
        argv += ["--out", str(out)]
    assert_clean_failure(run(*argv), phrase, out=out)


def test_there_are_at_least_sixty_rows():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


def test_non_finite_activations_are_refused_with_nothing_written(bad, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "nan"
    shutil.copytree(bad["llama"], folder)
    w = folder / "model.safetensors"
    state = load_file(str(w))
    state["model.layers.0.self_attn.k_proj.weight"][0, 0] = float("nan")
    save_file(state, str(w), metadata={"format": "pt"})
    for cmd in ("sink", "massive"):
        assert_clean_failure(run(cmd, folder, "--out", tmp_path / "o"), "NaN/inf", out=tmp_path / "o")


def test_unwritable_output_is_found_before_the_work(monkeypatch, tmp_path):
    import gatelens.measure

    monkeypatch.setattr(gatelens.measure, "as_loaded", lambda *a, **k: pytest.fail("measured before checking --out"))
    assert_clean_failure(run("sink", M, "--out", "/proc/gatelens-out"), "choose another --out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; /proc covers it above")
def test_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_clean_failure(run("sink", M, "--out", ro / "o"), "not writable")
    finally:
        ro.chmod(0o755)


# ---- valid but odd inputs: measured, and labelled with what was measured --------------------------------

def test_one_word_text_is_labelled_with_its_real_size(bad, tmp_path):
    f = tmp_path / "w.txt"
    f.write_text("word")
    r = run("sink", bad["llama"], "--text", f, "--json", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)["settings"]
    assert s["n_seqs"] == 1 and s["n_tokens"] == s["seq_len"] < 256 and "not 8 x 256" in s["shortfall"]
    assert "note:" in r.stderr
    table = (tmp_path / "o" / "sink_layers.md").read_text()
    assert table.splitlines()[0].endswith(f"(file:{f}, 1 x {s['n_tokens']} tokens); model fingerprint "
                                          + json.loads(r.stdout)["model"]["fingerprint"]), table


def test_task_model_on_text_in_its_own_vocabulary_is_labelled(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(" ".join(f"t{i % 60}" for i in range(40)))
    r = run("sink", M, "--text", f, "--seq-len", 16, "--n-seqs", 2, "--json", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)["settings"]
    assert s["input"] == f"file:{f}" and s["n_seqs"] == 2 and s["seq_len"] == 16


def test_the_default_folder_names_the_models(tmp_path, monkeypatch):
    from gatelens.cli import output_folder

    monkeypatch.chdir(tmp_path)
    assert output_folder(None, "compare", ["tiny-baseline", "tiny-gated"]) != output_folder(
        None, "compare", ["mech-baseline", "mech-gated"])
    assert "tiny-gated" in str(output_folder(None, "compare", ["tiny-baseline", "tiny-gated"]))


# ---- help that reads like the ecosystem's ---------------------------------------------------------------

def _commands():
    import typer.main

    group = typer.main.get_command(app)
    return group, sorted(group.commands)


def test_every_option_has_help_and_no_bool_metavar():
    group, names = _commands()
    for name in names:
        cmd = group.commands[name]
        for p in cmd.params:
            if p.param_type_name == "option":
                assert p.help, f"gatelens {name} {p.opts[0]} has no help line"
        text = run(name, "--help").stdout
        assert "<bool>" not in text and "BOOLEAN" not in text, (name, text)


def test_same_option_same_default_everywhere():
    group, names = _commands()
    defaults: dict[str, set] = {}
    for name in set(names) - {"train"}:  # train's options are None: they fall back to its recipe (below)
        for p in group.commands[name].params:
            if p.param_type_name == "option" and p.opts[0] in ("--device", "--dtype", "--batch-size", "--eps"):
                defaults.setdefault(p.opts[0], set()).add(repr(p.default))
    assert defaults["--device"] == {"'cpu'"}, defaults
    from gatelens.train.config import TrainConfig

    assert TrainConfig(out="x").device == "cpu"
    assert all(len(v) == 1 for k, v in defaults.items() if k != "--batch-size"), defaults


def test_choices_are_shown_for_device_dtype_gate_methods():
    assert "cpu" in run("sink", "--help").stdout and "float32" in run("sink", "--help").stdout
    assert "headwise" in run("train", "--help").stdout
    assert "sdpa" in run("bench", "--help").stdout or "eager" in run("bench", "--help").stdout


def test_cli_choice_lists_match_the_library():
    from gatelens import bench, cli, data

    assert tuple(cli.DATASETS) == tuple(data.DATASETS)
    assert tuple(cli.BENCH_METHODS) == tuple(bench.METHODS)


def test_version():
    from gatelens import __version__

    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.stdout


# ---- the cache ----------------------------------------------------------------------------------------

def test_gguf_cache_is_keyed_by_content(tmp_path):
    from gatelens.models import load

    a = factories.make_gguf(tmp_path / "a.gguf")
    b = tmp_path / "elsewhere" / "b.gguf"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    assert load._content_key(a) == load._content_key(b)
    c = factories.make_gguf(tmp_path / "c.gguf", tokenizer=False)
    assert load._content_key(c) != load._content_key(a)


def test_cache_command_lists_and_clears(tmp_path, monkeypatch):
    monkeypatch.setenv("GATELENS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "gguf" / "x").mkdir(parents=True)
    (tmp_path / "cache" / "gguf" / "x" / "w.bin").write_bytes(b"0" * 2048)
    r = run("cache", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)
    r = run("cache", "--clear", "--json")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "cache" / "gguf" / "x").exists()


def test_zoo_fits_80_columns_without_cutting_a_name(monkeypatch):
    from gatelens import cli
    from gatelens.models import zoo

    monkeypatch.setattr(cli.out_console, "width", 80)
    r = run("zoo")
    assert r.exit_code == 0, r.output
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    table_rows = [line for line in r.stdout.splitlines() if line.startswith("│")]
    for entry in zoo.entries():
        assert any(line.split("│")[1].strip() == entry["name"] for line in table_rows), entry["name"]
