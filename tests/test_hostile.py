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
    for name, content in VALIDATION_FILES.items():  # the option-validation block's files (below CASES)
        p[name] = root / name
        if content is None:
            p[name].mkdir()
        else:
            p[name].write_text(content.replace("{root}", str(root)))
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
    ("train-task-params", ("train", "--data", "bigram-backcopy", "--task-params", "{not json"), "--task-params"),
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
    # ---- the sink literature's measurements (lead) ---------------------------------------------------------
    ("sinks-eps-above-1", ("sinks", M, "--eps", "1.5"), "--eps 1.5"),
    ("heads-sink-weight-above-1", ("heads", M, "--sink-weight", "2"), "--sink-weight 2"),
    ("heads-output-ratio-0", ("heads", M, "--output-ratio", "0"), "--output-ratio 0"),
    ("ablate-head-without-heads", ("ablate", M, "--what", "head", "--layers", "0"), "needs --heads"),
    ("ablate-head-without-layers", ("ablate", M, "--what", "head", "--heads", "0"), "needs --layers"),
    ("ablate-head-absent", ("ablate", M, "--what", "head", "--layers", "0", "--heads", "3"), "has heads 0-0"),
    ("ablate-heads-twice", ("ablate", M, "--what", "head", "--layers", "0", "--heads", "0,0"), "given twice"),
    ("ablate-heads-with-sink", ("ablate", M, "--heads", "0"), "goes with --what head"),
    ("ablate-massive-layer-absent", ("ablate", M, "--what", "massive-zero", "--layers", "4"),
     "decoder layers are 0"),
    ("norms-out-is-a-file", ("norms", M, "--out", "{taken}"), "is a file"),
    ("emergence-run-missing", ("emergence", "./no/such/run"), "does not exist"),
    ("attn-map-html-pooled", ("attn-map", M, "--seq-len", "32", "--max-size", "16", "--html"), "--html shows the exact map"),
    ("measure-unknown-metric", ("measure", "nosuch", M), "unknown metric 'nosuch'"),
    ("measure-gates-on-baseline", ("measure", "gates", M), "does not apply"),
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

# ---- option validation (issue 24, part 3): one list parser, TrainConfig's declared ranges, --revision,
# ---- --min-queries, models --out. Files for these rows: VALIDATION_FILES (None: a folder), built by `bad`.
VALIDATION_FILES = {
    "lr-nan.toml": "lr = nan\n", "lr-inf.toml": "lr = inf\n", "lr-negative.toml": "lr = -1\n",
    "beta1-one.toml": "beta1 = 1\n", "steps-zero.toml": "steps = 0\n", "grad-clip-negative.toml": "grad_clip = -1.0\n",
    "unknown-key.toml": 'learning_rate = 0.1\n', "device-tpu.toml": 'device = "tpu"\n',
    "missing-corpus.toml": 'data = "{root}/no-such-corpus.txt"\n',
    "missing-val-data.toml": 'data = "{root}/english.txt"\nval_data = "{root}/no-such-val.txt"\nseq_len = 8\n',
    "temperature-nan.toml": "[task_params]\ntemperature = nan\n",
    "clash.json": None,
}
CASES += [
    ("seq-len-empty", ("sink", M, "--seq-len", ""), "--seq-len '': empty"),
    ("seq-len-trailing-comma", ("sink", M, "--seq-len", "0,"), "item 2 is empty"),
    ("seq-len-duplicate", ("sink", M, "--seq-len", "16, 16"), "16 is given twice"),
    ("bench-seq-len-zero", ("bench", M, "--seq-len", "0"), "lengths of at least 2 tokens"),
    ("ablate-layers-empty-item", ("ablate", M, "--layers", "0,,1"), "item 2 is empty"),
    ("ablate-layers-duplicate", ("ablate", M, "--layers", "0,0"), "0 is given twice"),
    ("ablate-layers-negative", ("ablate", M, "--layers", "-1"), "layer numbers of at least 0"),
    ("bench-methods-duplicate", ("bench", M, "--methods", "bare,bare"), "'bare' is given twice"),
    ("bench-methods-empty", ("bench", M, "--methods", ""), "--methods '': empty"),
    ("models-types-empty", ("models", "--types", "", "--out", "{root}/m/MODELS.md"), "without --types every type"),
    ("models-types-duplicate", ("models", "--types", "llama,llama", "--out", "{root}/m/MODELS.md"), "given twice"),
    ("train-lr-nan", ("train", "--config", "{lr-nan.toml}"), "lr = nan is out of range"),
    ("train-lr-inf", ("train", "--config", "{lr-inf.toml}"), "lr = inf is out of range"),
    ("train-lr-negative-recipe", ("train", "--config", "{lr-negative.toml}"), "lr = -1 is out of range"),
    ("train-lr-negative-option", ("train", "--lr", "-1"), "--lr -1.0 is out of range"),
    ("train-min-lr-above-lr", ("train", "--lr", "0.001", "--min-lr", "0.01"), "give --min-lr at most --lr"),
    ("train-beta1-one", ("train", "--config", "{beta1-one.toml}"), "beta1 = 1 is out of range"),
    ("train-beta2-option", ("train", "--beta2", "1.5"), "in [0, 1)"),
    ("train-steps-zero", ("train", "--config", "{steps-zero.toml}"), "steps = 0 is out of range"),
    ("train-grad-clip-negative", ("train", "--config", "{grad-clip-negative.toml}"), "grad_clip = -1.0"),
    ("train-grad-clip-negative-option", ("train", "--grad-clip", "-0.5"), "--grad-clip -0.5"),
    ("train-eval-every-zero", ("train", "--eval-every", "0"), "--eval-every 0"),
    ("train-seed-negative", ("train", "--seed", "-1"), "--seed -1"),
    ("train-unknown-key", ("train", "--config", "{unknown-key.toml}"), "unknown setting 'learning_rate'"),
    ("train-device-recipe", ("train", "--config", "{device-tpu.toml}"), "use cpu, cuda"),
    ("train-missing-corpus", ("train", "--config", "{missing-corpus.toml}"), "no-such-corpus.txt not found"),
    ("train-missing-val-data", ("train", "--config", "{missing-val-data.toml}"), "no-such-val.txt not found"),
    ("train-val-data-with-task", ("train", "--val-data", "{english.txt}"), "drop --val-data"),
    ("train-task-temperature-nan", ("train", "--config", "{temperature-nan.toml}"), "temperature"),
    ("compare-revision-zoo", ("compare", M, "mech-gated", "--revision", "v1"), "drop --revision"),
    ("compare-revision-local", ("compare", "{llama}", "{gated}", "--revision", "main"), "drop --revision"),
    ("attn-map-revision", ("attn-map", M, "--revision", "v1"), "--revision"),
    ("bench-revision", ("bench", M, "--revision", "v1"), "--revision"),
    ("sinks-min-queries-unreachable", ("sinks", M, "--seq-len", "16", "--min-queries", "16"),
     "no key is seen by more than 15 queries"),
    ("sinks-min-queries-beyond-text", ("sinks", "{llama}", "--text", "{one.txt}", "--min-queries", "200"),
     "--min-queries 200"),
    ("models-out-a-folder", ("models", "--types", "llama", "--out", "{adir}"), "is a folder"),
    ("models-out-json", ("models", "--types", "llama", "--out", "{root}/m/MODELS.json"), "ending in .md"),
    ("models-out-json-is-a-folder", ("models", "--types", "llama", "--out", "{root}/clash.md"),
     "clash.json is a folder"),
]
# ---- end of the option-validation block ------------------------------------------------------------------


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
    r = run(*argv)
    assert_clean_failure(r, phrase, out=out)
    assert_options_exist(argv[0], r.stderr)


# ---- issue 24 part 4: a degenerate result is never printed as a finding (begin) ---------------------------
# Non-finite weights or activations, a diverging training, inputs that cannot measure anything, and --out
# folders or files that are not gatelens' own: one line naming where or what, exit 2, nothing written.

def _options(command: str) -> set[str]:
    import typer.main

    params = typer.main.get_command(app).commands[command].params
    return {"--help"} | {o for p in params for o in (*p.opts, *getattr(p, "secondary_opts", ())) if o.startswith("--")}


def assert_options_exist(command: str, text: str) -> None:
    """Every --option an error names exists on the command that printed it (or, inside `gatelens CMD ...`, on CMD);
    other quoted commands (`pip install --no-deps ...`) are not gatelens'."""
    import re

    spans = re.findall(r"`([^`]*)`", text)
    for span in spans:
        words = span.split()
        if words[:1] == ["gatelens"] and len(words) > 1:
            for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", span):
                assert opt in _options(words[1]), f"`{span}` names {opt}, which gatelens {words[1]} does not have"
    text = re.sub(r"No such option: --[\w-]+", "", text)                # the user's own typo, repeated
    for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", re.sub(r"`[^`]*`", "", text)):
        assert opt in _options(command), f"gatelens {command} has no {opt}, but its error names it: {text}"


@pytest.fixture(scope="module")
def degenerate(bad, tmp_path_factory):
    """Tiny models whose weights hold NaN/inf, a zero-layer model, a vocabulary smaller than its tokenizer, a folder
    of the user's, and short texts: name -> path."""
    import transformers
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("degenerate")
    p = {**bad}

    def poisoned(name, key, value, model="llama", row=0):
        folder = root / name
        shutil.copytree(bad[model], folder)
        state = load_file(str(folder / "model.safetensors"))
        state[key][row, 0] = value
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        p[name] = folder

    poisoned("nan-lm-head", "lm_head.weight", float("nan"))
    poisoned("inf-lm-head", "lm_head.weight", float("inf"))
    poisoned("inf-mlp", "model.layers.0.mlp.down_proj.weight", float("inf"))     # inf activations after layer 0
    poisoned("nan-key", "model.layers.0.self_attn.k_proj.weight", float("nan"))
    poisoned("nan-value", "model.layers.1.self_attn.v_proj.weight", float("nan"))
    poisoned("nan-gate", "model.layers.1.self_attn.q_proj.weight", float("nan"), "gated", row=-1)  # a gate row

    def built(name, **over):
        cfg = transformers.LlamaConfig(**{**factories.COMMON, "hidden_size": 32, "intermediate_size": 48,
                                          "num_hidden_layers": 2, "num_attention_heads": 2,
                                          "max_position_embeddings": 64, **over})
        transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(root / name)
        factories.TOK.save_pretrained(root / name)
        p[name] = root / name

    built("zero-layers", num_hidden_layers=0)
    built("small-vocab", vocab_size=40, pad_token_id=0, bos_token_id=1, eos_token_id=2)  # the byte tokenizer: 259

    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("the user's own file\n")
    p["mine"] = root / "mine"
    (root / "mine-too.md").write_text("# a table of the user's\n")
    p["mine-too.md"] = root / "mine-too.md"
    for name, text in {"a.txt": "a", "abc.txt": "abc"}.items():
        (root / name).write_text(text)
        p[name] = root / name
    return p


SMALL = ("--seq-len", "16", "--n-seqs", "2")
TRAIN = ("--d-model", "16", "--ffn", "32", "--seq-len", "16", "--batch-size", "2", "--eval-seqs", "2",
         "--eval-every", "100", "--ckpt-every", "100")
# command -> the arguments it needs besides --out, for the --out rows of every command
OUT_ARGS = {"sink": (M,), "sinks": (M,), "massive": (M,), "gates": ("mech-gated",), "rank": (M,), "ablate": (M,),
            "compare": (M, "mech-gated"), "attn-map": (M,), "bench": (M,)}
DEGENERATE = [
    # ---- non-finite numbers: the metric, layer or step where the first one appeared ------------------------
    ("compare-nan-lm-head", ("compare", "{llama}", "{nan-lm-head}", *SMALL), "{nan-lm-head}: perplexity is nan"),
    ("compare-inf-lm-head", ("compare", "{llama}", "{inf-lm-head}", *SMALL), "{inf-lm-head}: perplexity is nan"),
    ("ablate-nan-lm-head", ("ablate", "{nan-lm-head}", *SMALL), "perplexity is nan"),
    ("sink-inf-activations", ("sink", "{inf-mlp}", *SMALL), "non-finite values (NaN/inf) in attention of layer 1"),
    ("massive-inf-activations", ("massive", "{inf-mlp}", *SMALL), "hidden state after layer 0"),
    ("rank-nan-activations", ("rank", "{nan-key}", *SMALL), "attention output of layer 0"),
    ("rank-nan-weights", ("rank", "{nan-value}", "--weights-only"), "W_V / W_O of layer 1"),
    ("sinks-nan-activations", ("sinks", "{nan-key}", *SMALL), "attention of layer 0"),
    ("attn-map-nan-scores", ("attn-map", "{nan-key}"), "attention scores of layer 0"),
    ("gates-nan-gate", ("gates", "{nan-gate}", *SMALL), "gate scores of layer 1"),
    ("compare-nan-gate", ("compare", "{llama}", "{nan-gate}", *SMALL), "gate scores of layer 1"),
    ("compare-nan-activations", ("compare", "{llama}", "{nan-key}", *SMALL), "attention of layer 0"),
    ("train-diverges", ("train", *TRAIN, "--steps", "5", "--lr", "1e30", "--warmup-steps", "0"),
     "the training loss is nan at step 3 of 5"),
    # ---- inputs that cannot measure anything ---------------------------------------------------------------
    ("ablate-sink-seq-len-2", ("ablate", M, "--seq-len", "2"), "--what sink with --seq-len 2 measures nothing"),
    ("ablate-sink-two-token-text", ("ablate", "{llama}", "--text", "{a.txt}"), "a text of 2 tokens measures nothing"),
    ("sink-sweep-collapsed-by-short-text", ("sink", "{llama}", "--text", "{abc.txt}", "--seq-len", "8,16"),
     "at most 4 tokens per sequence"),
    ("zero-layers-sink", ("sink", "{zero-layers}", *SMALL), "has 0 decoder layers"),
    ("zero-layers-massive", ("massive", "{zero-layers}", *SMALL), "has 0 decoder layers"),
    ("zero-layers-ablate", ("ablate", "{zero-layers}", *SMALL), "has 0 decoder layers"),
    ("zero-layers-attn-map", ("attn-map", "{zero-layers}"), "attention layers: none"),
    ("vocabulary-smaller-than-tokenizer", ("sink", "{small-vocab}", *SMALL), "larger than the model's vocabulary"),
    ("vocabulary-smaller-compare", ("compare", "{llama}", "{small-vocab}", *SMALL),
     "token id 256 is outside {small-vocab}'s embedding (40 rows)"),
    ("attn-map-task-model-english-prompt", ("attn-map", M, "--prompt", "hello world"), "drop --prompt"),
    ("vocabulary-smaller-attn-map", ("attn-map", "{small-vocab}", "--prompt", "hello"), "larger than the model's"),
    # ---- --out: a folder of the user's, a file, an unwritable place: refused before any work -----------------
    *[(f"{cmd}-out-folder-of-other-files", (cmd, *args, "--out", "{mine}"), "not gatelens output")
      for cmd, args in OUT_ARGS.items()],
    *[(f"{cmd}-out-unwritable", (cmd, *args, "--out", "/proc/gatelens-out"), "choose another --out")
      for cmd, args in OUT_ARGS.items() if cmd != "sink"],
    *[(f"{cmd}-out-is-a-file", (cmd, *args, "--out", "{taken}"), "is a file")
      for cmd, args in OUT_ARGS.items() if cmd in ("sinks", "gates", "rank", "ablate")],
    ("train-out-existing-folder", ("train", "--steps", "1", "--out", "{mine}"), "already exists"),
    ("train-out-unwritable", ("train", "--steps", "1", "--out", "/proc/gatelens-out"), "choose another --out"),
    ("models-out-folder", ("models", "--types", "llama", "--out", "{mine}"), "is a folder"),
    ("models-out-file-of-the-user", ("models", "--types", "llama", "--out", "{mine-too.md}"),
     "is not a table of `gatelens models`"),
    ("models-out-unwritable", ("models", "--types", "llama", "--out", "/proc/gatelens-out/MODELS.md"),
     "choose another --out"),
]


def _listing(folder) -> list:
    return sorted((str(p.relative_to(folder)), p.read_bytes()) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("argv, phrase", [c[1:] for c in DEGENERATE], ids=[c[0] for c in DEGENERATE])
def test_degenerate_result_is_one_clean_line(argv, phrase, degenerate, tmp_path, monkeypatch):
    import gatelens.coverage

    argv = [_fill(a, degenerate) for a in argv]
    out = tmp_path / "o"
    if "--out" not in argv:
        argv += ["--out", str(out)]
    mine = _listing(degenerate["mine"]), degenerate["mine-too.md"].read_bytes()
    monkeypatch.setattr(gatelens.coverage, "sweep", lambda *a, **k: pytest.fail("swept before checking --out"))
    r = run(*argv)
    assert_clean_failure(r, _fill(phrase, degenerate), out=out)
    assert_options_exist(argv[0], r.stderr)
    assert (_listing(degenerate["mine"]), degenerate["mine-too.md"].read_bytes()) == mine  # the user's files untouched
    assert not list(tmp_path.glob(".o*")), list(tmp_path.glob(".o*"))                   # no work folder left beside


def test_there_are_at_least_thirteen_degenerate_rows():
    assert len(DEGENERATE) >= 13 and len({c[0] for c in DEGENERATE}) == len(DEGENERATE)
    assert len({c[0] for c in DEGENERATE} & {c[0] for c in CASES}) == 0


def test_a_diverging_training_leaves_an_overwritten_out_untouched(degenerate, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"the previous model")
    r = run("train", *TRAIN, "--steps", "5", "--lr", "1e30", "--warmup-steps", "0", "--overwrite", "--out", out)
    assert_clean_failure(r, "at step 3 of 5")
    assert _listing(out) == [("model.safetensors", b"the previous model")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_non_finite_validation_names_the_training_step(tmp_path, monkeypatch):
    from gatelens.metrics.base import check_result
    from gatelens.metrics.perplexity import PerplexityResult
    from gatelens.train import trainer

    def evaluate(loaded, val):  # what a NaN in the LM head gives the validation pass
        check_result(PerplexityResult(loaded.info.to_dict(), {}, float("nan"), 10))

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    r = run("train", *TRAIN, "--steps", "2", "--eval-every", "1", "--out", tmp_path / "o")
    assert_clean_failure(r, "validation at step 1 of 2: ", out=tmp_path / "o")
    assert "perplexity is nan" in r.stderr


@pytest.mark.parametrize("argv", [("attn-map", M), ("sink", M)])
def test_out_of_memory_names_options_the_command_has(argv, tmp_path, monkeypatch):
    import gatelens.measure

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(gatelens.measure, "as_loaded", oom)
    r = run(*argv, "--out", tmp_path / "o")
    assert_clean_failure(r, "out of memory; use a smaller ", out=tmp_path / "o")
    assert_options_exist(argv[0], r.stderr)


def test_a_non_finite_result_names_its_metric_layer_and_head():
    from gatelens.errors import GatelensError
    from gatelens.metrics.base import HeadLayer, check_result
    from gatelens.metrics.sink import SinkResult

    model = {"spec": "m", "dtype": "bfloat16"}
    fine = [HeadLayer(0, {"f_attn": [0.1, 0.2], "sink_rate": [0.0, 0.5]})]
    check_result(SinkResult(model, {}, fine))
    broken = fine + [HeadLayer(1, {"f_attn": [0.3, float("inf")], "sink_rate": [0.0, 0.5]})]
    with pytest.raises(GatelensError) as e:
        check_result(SinkResult(model, {}, broken), " with --what sink in layer(s) 1")
    assert str(e.value).startswith("m: f_attn is inf (first in layer 1 head 1) with --what sink in layer(s) 1, ")
    assert str(e.value).endswith("bfloat16 may be too narrow for these values: retry with --dtype float32")


def test_gatelens_own_output_folder_is_rewritten(tmp_path):
    out = tmp_path / "o"
    for _ in range(2):
        r = run("sink", M, "--seq-len", 16, "--n-seqs", 1, "--out", out)
        assert r.exit_code == 0, r.output
    assert (out / "sink.json").is_file()


def test_attn_map_json_records_the_prompts_real_token_count(tmp_path):
    r = run("attn-map", M, "--prompt", "t1 t2 t3", "--json", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    n = obj["provenance"]["settings"]["seq_len"]
    assert obj["seq_len"] == n < 64 and obj["seq_len_asked"] == obj["provenance"]["settings"]["seq_len_asked"] == 64
    shown = json.loads((tmp_path / "o" / "attn_map_L0_mean.json").read_text())
    assert shown["seq_len"] == n
    assert n == 4  # BOS + t1 t2 t3 in the task's word-level vocabulary


def test_compare_settings_are_what_was_measured(degenerate, tmp_path):
    r = run("compare", degenerate["llama"], degenerate["llama"], "--text", degenerate["abc.txt"], "--json",
            "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)["settings"]
    assert (s["n_seqs"], s["seq_len"], s["n_seqs_asked"], s["seq_len_asked"]) == (1, 4, 8, 256), s


def test_a_sink_ablation_needs_three_tokens_and_no_more():
    """At 2 tokens the loss counts position 0's prediction only, which never sees past key 0: no change at all;
    at 3 tokens position 1's prediction changes (the refusal's threshold is exact)."""
    from gatelens import ablate as ab
    from gatelens.measure import Inputs

    loaded = ab.as_loaded(M)
    seqs = ab.prepare_inputs(loaded, seq_len=8, n_seqs=2).seqs
    two = Inputs([s[:2] for s in seqs], "test", 2, True)
    with pytest.raises(ab.GatelensError, match="measures nothing"):
        ab.ablate(loaded, "sink", inputs=two)
    three = ab.ablate(loaded, "sink", inputs=Inputs([s[:3] for s in seqs], "test", 3, True))
    assert any(abs(r.loss_change) > 1e-6 for r in three.runs[1:])
    value = ab.ablate(loaded, "sink-value", inputs=two)   # sink-value changes position 0's own output: measured
    assert any(abs(r.loss_change) > 1e-6 for r in value.runs[1:])


def test_error_messages_name_only_options_some_command_has():
    """Every --option named in a GatelensError message of the package is an option of a gatelens command."""
    import ast
    import re
    from pathlib import Path

    import typer.main

    import gatelens

    known = set().union(*(_options(name) for name in typer.main.get_command(app).commands))
    named = {}
    for path in Path(gatelens.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "GatelensError":
                text = " ".join(c.value for c in ast.walk(node) if isinstance(c, ast.Constant)
                                and isinstance(c.value, str))
                text = re.sub(r"`(?!gatelens )[^`]*`", "", text)           # `pip install --no-deps ...`
                for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
                    named.setdefault(opt, f"{path.name}:{node.lineno}")
    unknown = {opt: where for opt, where in named.items() if opt not in known}
    assert not unknown, unknown
    assert {"--seq-len", "--lr", "--what", "--dtype"} <= named.keys()   # the scan does find them
# ---- issue 24 part 4 (end) ------------------------------------------------------------------------------


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
    from gatelens import bench, cli, data, settings

    assert tuple(settings.DATASETS) == tuple(data.DATASETS)
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
    from gatelens.models.cache import cache_folder

    monkeypatch.setenv("GATELENS_CACHE", str(tmp_path / "cache"))
    (cache_folder("gguf") / "x").mkdir()   # a cache gatelens created (and marked)
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


# ==== issue 24, part 2: nothing is deleted or read that the user did not name (block: helper `edges`) ========

def _shard(folder):
    """Split a folder's model.safetensors into two shards and the index transformers writes for them."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    keys = sorted(state)
    names = {k: f"model-0000{1 + (i >= len(keys) // 2)}-of-00002.safetensors" for i, k in enumerate(keys)}
    for name in set(names.values()):
        save_file({k: state[k] for k in keys if names[k] == name}, str(folder / name), metadata={"format": "pt"})
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": names}))
    return folder


@pytest.fixture(scope="module")
def edge(tiny_dir, tmp_path_factory):
    """Folders and files for this block's rows: name -> path."""
    root = tmp_path_factory.mktemp("edges")
    p = {"root": root}
    for kind in ("llama", "paper_elementwise"):
        sharded = _shard(shutil.copytree(tiny_dir(kind), root / f"sharded-{kind}"))
        p[f"sharded-{kind}"] = sharded
        missing = shutil.copytree(sharded, root / f"missing-shard-{kind}")
        (missing / "model-00002-of-00002.safetensors").unlink()
        p[f"missing-shard-{kind}"] = missing
    outside = shutil.copytree(p["sharded-llama"], root / "index-outside")
    index = json.loads((outside / "model.safetensors.index.json").read_text())
    index["weight_map"] = {k: "../" + v for k, v in index["weight_map"].items()}
    (outside / "model.safetensors.index.json").write_text(json.dumps(index))
    p["index-outside"] = outside
    broken = shutil.copytree(p["sharded-paper_elementwise"], root / "index-broken")
    (broken / "model.safetensors.index.json").write_text('{"weight_map": ')
    p["index-broken"] = broken
    for name, content in {"nul.txt": TEXT.encode() + b"\0" + TEXT.encode(),
                          "nul-corpus.txt": (TEXT + "\n<|doc|>\n").encode() * 4 + b"\0"}.items():
        (root / name).write_bytes(content)
        p[name] = root / name
    # passes train's byte-count check (300 bytes >= --seq-len 32) but BPE makes it a few tokens: refused after
    # the run has started (its tokenizer trained), which used to leave the work folder behind
    (root / "aaa.txt").write_text("a" * 300)
    p["aaa.txt"] = root / "aaa.txt"
    return p


EDGE_CASES = [
    ("index-names-missing-shard", ("sink", "{missing-shard-llama}"), "which is not in the folder"),
    ("index-names-missing-shard-native", ("sink", "{missing-shard-paper_elementwise}"), "which is not in the folder"),
    ("index-names-missing-shard-gates", ("gates", "{missing-shard-paper_elementwise}"), "model-00002-of-00002"),
    ("index-outside-the-folder", ("sink", "{index-outside}"), "outside the checkpoint folder"),
    ("index-not-json", ("sink", "{index-broken}"), "not a safetensors index"),
    ("text-nul-bytes", ("sink", "{llama}", "--text", "{nul.txt}"), "NUL bytes"),
    ("text-nul-bytes-massive", ("massive", "{llama}", "--text", "{nul.txt}"), "NUL bytes"),
    ("attn-map-text-nul-bytes", ("attn-map", "{llama}", "--text", "{nul.txt}"), "NUL bytes"),
    ("train-corpus-nul-bytes", ("train", "--data", "{nul-corpus.txt}", "--steps", "1"), "NUL bytes"),
    ("train-corpus-fails-after-start", ("train", "--data", "{aaa.txt}", "--steps", "1", "--seq-len", "32",
                                        "--bpe-vocab", "300"), "fewer than one training"),
]


@pytest.mark.parametrize("argv, phrase", [c[1:] for c in EDGE_CASES], ids=[c[0] for c in EDGE_CASES])
def test_edges_one_clean_line_and_nothing_left(argv, phrase, edge, bad, tmp_path):
    argv = [_fill(a, {**bad, **edge}) for a in argv] + ["--out", str(tmp_path / "o")]
    assert_clean_failure(run(*argv), phrase, out=tmp_path / "o")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "the run left something beside --out"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fake home with files of its owner, the default cache under it, and a foreign folder with files."""
    from pathlib import Path

    h = tmp_path / "home"
    (h / "gguf").mkdir(parents=True)            # folders named like the cache's own: still the user's
    (h / "gguf" / "mine.gguf").write_bytes(b"mine")
    (h / "offload").mkdir()
    (h / "offload" / "mine.dat").write_bytes(b"mine")
    (h / "notes.txt").write_text("mine")
    (tmp_path / "foreign" / "gguf").mkdir(parents=True)
    (tmp_path / "foreign" / "gguf" / "theirs.bin").write_bytes(b"theirs")
    (tmp_path / "work" / "rel" / "cache" / "gguf").mkdir(parents=True)
    (tmp_path / "work" / "rel" / "cache" / "gguf" / "theirs.bin").write_bytes(b"theirs")
    import matplotlib

    matplotlib.get_configdir(), matplotlib.get_cachedir()   # found (and cached) under the real home, not this one
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.chdir(tmp_path / "work")
    rmtree = shutil.rmtree

    def guarded(path, *args, **kwargs):  # a broken cache command fails this test; it never deletes outside it
        assert Path(path).resolve().is_relative_to(tmp_path.resolve()), f"rmtree({path}) outside the test's folder"
        return rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", guarded)
    return h


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


CACHE_LOCATIONS = [
    ("cache-empty", "", "is set but empty"),
    ("cache-blank", "  ", "is set but empty"),
    ("cache-relative", "rel/cache", "relative path"),
    ("cache-dot", ".", "relative path"),
    ("cache-root", "/", "the root folder"),
    ("cache-home", "{home}", "your home folder"),
    ("cache-home-tilde", "~", "your home folder"),
    ("cache-above-home", "{home}/..", "holds your home folder"),
    ("cache-foreign", "{foreign}", "not a gatelens cache"),
]


@pytest.mark.parametrize("value, phrase", [c[1:] for c in CACHE_LOCATIONS], ids=[c[0] for c in CACHE_LOCATIONS])
@pytest.mark.parametrize("clear", [True, False], ids=["clear", "list"])
def test_cache_location_refused_and_nothing_deleted(value, phrase, clear, home, tmp_path, monkeypatch):
    before = _files(tmp_path)
    monkeypatch.setenv("GATELENS_CACHE", value.replace("{home}", str(home)).replace("{foreign}",
                                                                                      str(tmp_path / "foreign")))
    assert_clean_failure(run("cache", *(["--clear"] if clear else [])), phrase)
    assert "GATELENS_CACHE" in run("cache").stderr   # the fix names the setting
    assert _files(tmp_path) == before


@pytest.mark.parametrize("value, phrase", [("", "is set but empty"), ("rel/cache", "relative path"),
                                           ("{foreign}", "not a gatelens cache")])
def test_cache_location_refused_when_a_gguf_is_cached(value, phrase, home, bad, tmp_path, monkeypatch):
    before = _files(tmp_path)
    monkeypatch.setenv("GATELENS_CACHE", value.replace("{foreign}", str(tmp_path / "foreign")))
    assert_clean_failure(run("sink", bad["root"] / "ok.gguf", "--out", tmp_path / "o"), phrase, out=tmp_path / "o")
    assert _files(tmp_path) == before


def test_cache_clear_deletes_nothing_gatelens_did_not_write(home, monkeypatch):
    from gatelens.models.cache import MARKER, cache_folder

    monkeypatch.delenv("GATELENS_CACHE")
    root = home / ".cache" / "gatelens"               # the default location, under the fake home
    (home / ".cache" / "other-app").mkdir(parents=True)
    (home / ".cache" / "other-app" / "x").write_bytes(b"theirs")
    (cache_folder("gguf") / "m-0123").mkdir()
    (root / "gguf" / "m-0123" / "model.safetensors").write_bytes(b"0" * 4096)
    (cache_folder("offload") / "w.dat").write_bytes(b"0" * 64)
    (root / "mine.txt").write_text("mine")              # the user's, beside gatelens' own folders
    (root / "keep").mkdir()
    (root / "keep" / "a.bin").write_bytes(b"mine")
    r = run("cache", "--json")
    assert r.exit_code == 0, r.output
    assert [e["name"] for e in json.loads(r.stdout)["entries"]] == ["m-0123"]
    assert json.loads(r.stdout)["cache"] == str(root)
    before = _files(home)
    r = run("cache", "--clear")
    assert r.exit_code == 0, r.output
    gone = {"gguf", "gguf/m-0123", "gguf/m-0123/model.safetensors", "offload", "offload/w.dat"}
    assert _files(home) == [f for f in before if f.removeprefix(".cache/gatelens/") not in gone
                            or not f.startswith(".cache/gatelens/")]
    assert (root / MARKER).is_file() and (root / "mine.txt").read_text() == "mine"
    assert (home / "gguf" / "mine.gguf").read_bytes() == b"mine" and (home / "notes.txt").read_text() == "mine"


def test_cache_folder_marks_what_it_creates_and_refuses_a_foreign_folder(tmp_path, monkeypatch):
    from gatelens import GatelensError
    from gatelens.models.cache import MARKER, cache_dir, cache_folder

    monkeypatch.delenv("GATELENS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "gatelens"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")   # the XDG spec: a relative value is ignored
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_dir() == tmp_path / "h" / ".cache" / "gatelens"
    monkeypatch.setenv("GATELENS_CACHE", str(tmp_path / "new"))
    assert cache_folder("gguf") == tmp_path / "new" / "gguf" and (tmp_path / "new" / MARKER).is_file()
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("GATELENS_CACHE", str(tmp_path / "empty"))
    cache_folder("offload")
    assert (tmp_path / "empty" / MARKER).is_file()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "f").write_text("theirs")
    monkeypatch.setenv("GATELENS_CACHE", str(tmp_path / "used"))
    with pytest.raises(GatelensError, match="not a gatelens cache"):
        cache_folder("gguf")
    assert _files(tmp_path / "used") == ["f"]


def _measured(argv):
    r = run(*argv, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    return r, {"f_attn": out["f_attn"], "layers": out["layers"], "fingerprint": out["model"]["fingerprint"],
               "n_tokens": out["settings"]["n_tokens"]}


@pytest.mark.parametrize("kind", ["llama", "paper_elementwise"])
def test_stray_safetensors_file_is_not_read(kind, tiny_dir, tmp_path):
    """A backup beside model.safetensors (here with NaN weights, sorted after it) is ignored with one note."""
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(tiny_dir(kind), tmp_path / "m")
    _, clean = _measured(["sink", folder, "--seq-len", "32", "--n-seqs", "2", "--out", tmp_path / "o1"])
    state = {k: torch_full_nan(v) for k, v in load_file(str(folder / "model.safetensors")).items()}
    save_file(state, str(folder / "model.safetensors.bak.safetensors"), metadata={"format": "pt"})
    save_file(state, str(folder / "zz-backup.safetensors"), metadata={"format": "pt"})
    r, stray = _measured(["sink", folder, "--seq-len", "32", "--n-seqs", "2", "--out", tmp_path / "o2"])
    assert stray == clean
    notes = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and "zz-backup.safetensors" in notes[0] and "not read" in notes[0], r.stderr


def torch_full_nan(t):
    return t.clone().fill_(float("nan")) if t.is_floating_point() else t


@pytest.mark.parametrize("kind", ["llama", "paper_elementwise"])
def test_sharded_folder_reads_what_its_index_names(kind, tiny_dir, edge, tmp_path):
    from safetensors.torch import load_file, save_file

    _, single = _measured(["sink", tiny_dir(kind), "--seq-len", "32", "--n-seqs", "2", "--out", tmp_path / "o1"])
    folder = shutil.copytree(edge[f"sharded-{kind}"], tmp_path / "m")
    _, sharded = _measured(["sink", folder, "--seq-len", "32", "--n-seqs", "2", "--out", tmp_path / "o2"])
    stray = load_file(str(folder / "model-00001-of-00002.safetensors"))
    save_file({k: torch_full_nan(v) for k, v in stray.items()}, str(folder / "model-00003-of-00002.safetensors"))
    _, with_stray = _measured(["sink", folder, "--seq-len", "32", "--n-seqs", "2", "--out", tmp_path / "o3"])
    assert single["f_attn"] == sharded["f_attn"] == with_stray["f_attn"]
    assert single["layers"] == sharded["layers"] == with_stray["layers"]
    assert sharded["fingerprint"] == with_stray["fingerprint"]


def test_byte_order_mark_is_not_text(bad, tmp_path):
    plain, bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_text(TEXT, encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + TEXT.encode())
    args = ("sink", bad["llama"], "--seq-len", "32", "--n-seqs", "3")
    _, a = _measured([*args, "--text", plain, "--out", tmp_path / "o1"])
    _, b = _measured([*args, "--text", bom, "--out", tmp_path / "o2"])
    assert a == b


def test_special_token_strings_in_a_text_are_text(tiny_dir):
    import gatelens
    from gatelens import data
    from gatelens.models.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|endoftext|>"]})
    special = tok.convert_tokens_to_ids("<|endoftext|>")
    text = "one<|endoftext|>two <|bos|> three <|eos|><|pad|>"
    ids = data.token_ids(tok, text)
    assert ids == byte_tokenizer()(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert len(ids) == len(text.encode()) and special not in ids and not set(ids) & set(tok.all_special_ids)
    assert tok.decode(ids) == text
    seqs = data.sequences(tok, text * 4, seq_len=16, n_seqs=3)
    assert all(int(s[0]) == tok.bos_token_id and tok.bos_token_id not in s[1:].tolist() for s in seqs)
    assert special not in {t for s in seqs for t in s.tolist()}
    loaded = gatelens.load(str(tiny_dir("llama")))
    seq = gatelens.prepare_inputs(loaded, text=text * 4, seq_len=24, n_seqs=1, bos=False).seqs[0].tolist()
    assert not set(seq) & set(loaded.tokenizer.all_special_ids)
    assert loaded.tokenizer.decode(seq) == (text * 4).encode()[:24].decode("utf-8", "replace")


def test_failed_write_leaves_no_folder(tmp_path):
    from gatelens import report

    def fill(w):
        w.json("a.json", {"x": 1})
        raise ValueError("boom")

    with pytest.raises(ValueError):
        report.write_all(tmp_path / "new" / "deeper", fill)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "given").mkdir()
    (tmp_path / "given" / "theirs.txt").write_text("x")
    with pytest.raises(ValueError):
        report.write_all(tmp_path / "given", fill)
    assert _files(tmp_path / "given") == ["theirs.txt"]


def test_edges_rows():
    assert len(EDGE_CASES) + len(CACHE_LOCATIONS) >= 12 and len({c[0] for c in EDGE_CASES + CACHE_LOCATIONS}) == \
        len(EDGE_CASES) + len(CACHE_LOCATIONS)

# ==== end of block: helper `edges` ============================================================================


# ---- issue 26: the figures group's seed x kernel-set record (begin) ------------------------------------------------

def test_a_mistyped_seed_kernels_folder_is_one_line_not_a_missing_figure(tmp_path):
    """A figures group naming a seed_kernels folder without the record is refused in one line, not drawn without it."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "analyses", tmp_path / "analyses")
    (tmp_path / "figures.toml").write_text(
        'out = "figs"\n[[group]]\nname = "ablation"\nmodels = ["ablate-none"]\n'
        f'per_seed = "{root / "gatelens/zoo/ablation.json"}"\nseed_kernels = "zoo/seed_kernel"\n')
    r = run("figures", "--config", str(tmp_path / "figures.toml"), "--only", "ablation")
    assert_clean_failure(r, "seed_kernels = 'zoo/seed_kernel' holds no")
    assert not list((tmp_path / "figs").glob("ablation_seed_kernels*"))

# ---- issue 26 (end) ------------------------------------------------------------------------------------------------
