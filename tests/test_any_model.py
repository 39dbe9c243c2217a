"""Any causal LM of the installed transformers: discovery, gates found not listed, learned sinks, soft-capping.

A fixed sample of model types plus every gated and learned-sink type is checked here on tiny random instances
(the same check `gatelens models` sweeps over every type): logits and per-head F-Attn equal to transformers' eager
attention, gate scores equal to W_O's input divided by the SDPA output, the learned-sink share equal to the sink
column of softmax([logits, sink]) rebuilt from the eager function's own inputs.
"""

from pathlib import Path

import pytest
import torch
import transformers

import gatelens
from gatelens import measure
from gatelens import coverage
from gatelens.models import discover, versions

# Plain, MoE, soft-capped, fused QKV, latent attention, Conv1D, hybrid (Mamba + attention), sliding window.
SAMPLE = ["mistral", "qwen2_moe", "gemma2", "gemma3_text", "phi3", "deepseek_v3", "starcoder2", "falcon_h1",
          "olmo2", "cohere2", "gpt_bigcode", "llama4_text"]
# Every gated and every learned-sink causal-LM type that builds (hrm_text's layers are not found): qwen4_exp_text
# selects keys with its QSA indexer, inkling2* add relative position biases and compute their sinks per query
# (sink_proj), inkling2_loop_text and dory loop a layer, axk2 selects keys with a DSA indexer;
# and the paper's release format (gatelens' build, its gate scores against q_proj's gate rows recomputed).
GATED_TYPES = ["qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "qwen4_exp_text", "beam", "afmoe", "bailing_hybrid",
               "lfm3", "hy_v4", "inkling2_text", "inkling2_loop_text", "axk2", "dory", "dots3_note", "dots3_note_text",
               "minicpm5_moe", *coverage.PAPER_FORMATS]
SINK_TYPES = ["gpt_oss", "flint", "granite_swa", "granitemoe_swa", "mimo_v2_flash", "deepseek_v4", "hy_v4",
              "inkling2_text", "inkling2_loop_text"]
# Position biases (inkling_text), DSA top-k key selection (deepseek_v32), indexed key selection with a layer reading
# an earlier layer's keys and values (kolibri1_1), Falcon's fused rows (one KV head by default).
OTHER_TYPES = ["inkling_text", "deepseek_v32", "kolibri1_1", "falcon"]


@pytest.mark.parametrize("model_type", list(dict.fromkeys(SAMPLE + GATED_TYPES + SINK_TYPES + OTHER_TYPES)))
def test_tiny_instance_matches_eager(model_type):
    row = coverage.check_type(model_type)
    assert row.status == "ok", row.reason
    assert row.f_attn_err <= 1e-5 and row.logits_err <= 1e-4 and row.massive
    if model_type in GATED_TYPES:
        assert row.gate in ("elementwise", "headwise") and row.extra["gate_err"] <= 1e-6
    if model_type in SINK_TYPES:
        assert row.learned_sink and row.sink_err <= 1e-6


@pytest.fixture(scope="module")
def gate_scan():
    return coverage.scan_gates()


def test_gate_scan_finds_the_gated_families(gate_scan):
    """The scan `gatelens models --scan-gates` runs still finds the gates it was written for, in any transformers."""
    assert {"qwen3_next", "qwen3_5", "beam", "inkling2"} <= set(gate_scan)
    assert "Qwen3NextAttention" in gate_scan["qwen3_next"]
    assert "llama" not in gate_scan and "mistral" not in gate_scan  # a plain attention is not a gate
    assert coverage.unrecognised_gates({"qwen3_next": ["Qwen3NextAttention"], "minimax": ["M"], "zz_new": ["ZzAttn"]}
                                       ) == {"zz_new": ["ZzAttn"]}


@pytest.mark.skipif(transformers.__version__ != coverage.VERIFIED_TRANSFORMERS,
                    reason="not the verified transformers: `gatelens models --scan-gates` reports its gates")
def test_every_sigmoid_output_gate_of_the_verified_transformers_is_recognised(gate_scan):
    """On the pinned transformers every gated family is read; a newer release is checked by the maintainer's report
    (`gatelens models --scan-gates`) before VERIFIED_TRANSFORMERS and constraints.txt move to it."""
    missing = coverage.unrecognised_gates(gate_scan)
    assert not missing, f"sigmoid-gated attention gatelens does not recognise: {missing}; add a GateReader"


def test_scan_gates_report_exits_1_naming_what_is_unrecognised(monkeypatch):
    from typer.testing import CliRunner

    from gatelens.cli import app

    monkeypatch.setattr(coverage, "scan_gates", lambda: {"qwen3_next": ["Qwen3NextAttention"]})
    res = CliRunner().invoke(app, ["models", "--scan-gates"])
    assert res.exit_code == 0 and "recognises every one" in res.output
    monkeypatch.setattr(coverage, "scan_gates", lambda: {"qwen3_next": ["Qwen3NextAttention"], "zz_new": ["ZzAttn"]})
    res = CliRunner().invoke(app, ["models", "--scan-gates"])
    assert res.exit_code == 1 and "not recognised: zz_new (ZzAttn)" in res.output and "GateReader" in res.output
    res = CliRunner().invoke(app, ["models", "--scan-gates", "--json"])
    assert res.exit_code == 1
    d = __import__("json").loads(res.output)
    assert d["unrecognised"] == {"zz_new": ["ZzAttn"]} and d["verified"] == coverage.VERIFIED_TRANSFORMERS


def test_a_newer_transformers_is_named_once_in_one_line_on_load(tiny_dir, monkeypatch, caplog):
    folder = str(tiny_dir("llama"))
    monkeypatch.setattr(versions, "_warned", False)
    with caplog.at_level("WARNING", logger="gatelens"):
        gatelens.load(folder)
    assert not [r for r in caplog.records if r.name == "gatelens"]  # the verified (or an older) version: silent
    monkeypatch.setattr(versions, "installed_transformers", lambda: "99.0.0")
    monkeypatch.setattr(versions, "_warned", False)
    with caplog.at_level("WARNING", logger="gatelens"):
        gatelens.load(folder)
        gatelens.load(folder)
    said = [r.getMessage() for r in caplog.records if r.name == "gatelens"]
    assert len(said) == 1 and "\n" not in said[0]
    assert f"transformers 99.0.0 is newer than {coverage.VERIFIED_TRANSFORMERS}" in said[0]
    assert "`gatelens models --types T`" in said[0]


def test_the_verified_transformers_is_the_pinned_and_documented_one():
    """constraints.txt (what CI and the README install), docs/MODELS.md and the README's count name
    coverage.VERIFIED_TRANSFORMERS; the README's test command is the one CI runs."""
    root = Path(__file__).resolve().parent.parent
    pins = dict(line.split("==") for line in (root / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins["transformers"] == coverage.VERIFIED_TRANSFORMERS
    assert f"(transformers {coverage.VERIFIED_TRANSFORMERS}," in (root / "docs" / "MODELS.md").read_text()
    rows = [r for r in coverage.read_rows(root / "docs" / "MODELS.json") if r.model_type not in coverage.PAPER_FORMATS]
    readme = (root / "README.md").read_text()
    minor = ".".join(coverage.VERIFIED_TRANSFORMERS.split(".")[:2])
    ok = sum(r.status == "ok" for r in rows)
    assert f"{ok} of the {len(rows)} causal-LM types of transformers {minor} measured exactly" in readme
    ci = (root / ".ci" / "run").read_text()
    assert "-c constraints.txt" in ci
    test_command = [line for line in ci.splitlines() if line.startswith("python3 -m pytest")]
    assert len(test_command) == 1 and f"\n{test_command[0]}\n" in readme


def test_discovery_agrees_with_the_family_table(tiny_dir):
    for family in ("llama", "qwen2", "qwen3", "gpt2", "gpt_neox", "qwen3_next"):
        loaded = gatelens.load(str(tiny_dir(family)))
        found = discover.discover(loaded.model, loaded.info.model_type)
        row = loaded.family
        assert (found.layers, found.attn, found.o_proj) == (row.layers, row.attn, row.o_proj), family
        assert [i for i, _ in found.attn_paths] == loaded.info.attention_layers, family
        assert (found.gate, found.gate_module, found.gate_layout) == (row.gate, row.gate_module, row.gate_layout)


def _tiny(model_type, tmp_path):
    return gatelens.load(str(coverage.build_tiny(model_type, tmp_path / model_type)))


def test_learned_sink_share_is_its_own_json_key(tmp_path):
    loaded = _tiny("gpt_oss", tmp_path)
    assert loaded.info.learned_sink
    result = gatelens.sink(loaded, gatelens.prepare_inputs(loaded, text="a sink absorbs attention. " * 20,
                                                           seq_len=24, n_seqs=2))
    d = result.to_dict()
    assert 0 < d["learned_sink"] < 1 and all("learned_sink" in h for h in d["layers"][0]["heads"])
    assert "learned_sink" in result.display()["columns"]


def test_models_without_learned_sinks_report_none(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("llama")))
    result = gatelens.sink(loaded, gatelens.prepare_inputs(loaded, text="plain text. " * 40, seq_len=24, n_seqs=2))
    assert "learned_sink" not in result.to_dict() and result.learned_sink is None


def test_unreadable_gate_and_rank_refuse_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(discover.GATED, "axk2", discover.GateReader(None, None, note="rows not split"))
    loaded = _tiny("axk2", tmp_path)  # gate recognised, its rows not read (every installed gate is read today)
    assert loaded.info.gated
    with pytest.raises(gatelens.GatelensError, match="recognises but cannot read") as e:
        measure.gates(loaded, gatelens.prepare_inputs(loaded, text="x y z " * 30, seq_len=16, n_seqs=1))
    assert "\n" not in str(e.value)
    loaded = _tiny("diffllama", tmp_path)  # values rearranged after W_V (differential attention): rank is refused
    with pytest.raises(gatelens.GatelensError, match="does not reproduce the values"):
        measure.rank(loaded, gatelens.prepare_inputs(loaded, text="x y z " * 30, seq_len=16, n_seqs=1))
    loaded = _tiny("kolibri1_1", tmp_path)  # layer 2 attends to layer 1's keys and values: no W_V of its own
    with pytest.raises(gatelens.GatelensError, match="layer 2 reuses another layer's values") as e:
        measure.rank(loaded, gatelens.prepare_inputs(loaded, text="x y z " * 30, seq_len=16, n_seqs=1))
    assert "\n" not in str(e.value)


def test_attention_free_and_encoder_types_are_refused_before_loading(tmp_path):
    for model_type, phrase in (("mamba", "no layer of"), ("bert", "")):
        folder = tmp_path / model_type
        from transformers import AutoModelForCausalLM

        cfg, tok = coverage.tiny_config(model_type)
        AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
        tok.save_pretrained(folder)
        with pytest.raises(gatelens.GatelensError, match=f"unsupported architecture '{model_type}'.*{phrase}"):
            gatelens.load(str(folder))


def test_softcapped_attention_kernel_matches_eager():
    from gatelens.kernels import softcapped_attention

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 40, 8) * 3, torch.randn(2, 2, 40, 8) * 3, torch.randn(2, 2, 40, 8)
    mask = torch.ones(40, 40, dtype=torch.bool).tril()[None, None]
    out, lse = softcapped_attention(q, k, v, mask, is_causal=False, scale=0.35, softcap=5.0, chunk=16)
    kk, vv = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    s = torch.tanh(q @ kk.transpose(-1, -2) * 0.35 / 5.0) * 5.0
    s = s.masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(lse, torch.logsumexp(s, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out, s.softmax(-1) @ vv, atol=1e-5, rtol=0)


def test_models_merge_replaces_only_the_given_rows(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gatelens.cli import app

    old = [coverage.Row("llama", "fail", "stale"), coverage.Row("zz_gone", "ok")]
    (tmp_path / "MODELS.json").write_text(__import__("json").dumps([r.to_dict() for r in old]))
    monkeypatch.setattr(coverage, "sweep", lambda types, on_row=None: [coverage.Row(t, "ok") for t in types])
    res = CliRunner().invoke(app, ["models", "--types", "llama,gpt2", "--merge", "--out", str(tmp_path / "MODELS.md")])
    assert res.exit_code == 0, res.output
    rows = coverage.read_rows(tmp_path / "MODELS.json")
    assert [(r.model_type, r.status) for r in rows] == [("gpt2", "ok"), ("llama", "ok"), ("zz_gone", "ok")]
    assert "**3 of 3 model types measured exactly**" in (tmp_path / "MODELS.md").read_text()
    res = CliRunner().invoke(app, ["models", "--merge", "--out", str(tmp_path / "MODELS.md")])
    assert res.exit_code != 0 and "--merge" in res.output and "\n" not in res.output.strip()
    res = CliRunner().invoke(app, ["models", "--types", "llama", "--merge", "--out", str(tmp_path / "new" / "M.md")])
    assert res.exit_code != 0 and "no table to merge into" in res.output


@pytest.mark.parametrize("model_type", ["qwen3_next", "minicpm5_moe", "beam", "afmoe", "lfm3", "inkling2_text", "axk2",
                                        "dory", "paper_elementwise"])
def test_gate_logits_written_back_read_the_same(model_type, tmp_path):
    """A gate ablation hands the model new logits in the gate module's own layout (interleaved in q_proj or in a fused
    q_gate_proj, per head with a bias or a learned scale, query rows, gatelens' own): reading them back gives what was
    written, and the model runs."""
    from gatelens.ablate import ablate
    from gatelens.models.gate_logits import gate_logits, with_gate_logits

    loaded = _tiny(model_type, tmp_path)
    attn = loaded.attention(loaded.info.attention_layers[0])
    seen = {}

    def hook(module, args, output):
        logits = gate_logits(loaded, output, module)
        new = torch.randn_like(logits)
        back = gate_logits(loaded, with_gate_logits(loaded, output, new, module), module)
        seen["err"] = float((back - new).abs().max())

    h = attn.get_submodule(loaded.family.gate_module).register_forward_hook(hook)
    try:
        with torch.no_grad():
            loaded.model(torch.randint(3, 200, (1, 12)))
    finally:
        h.remove()
    assert seen["err"] < 1e-4
    inputs = gatelens.prepare_inputs(loaded, text="x y z " * 30, seq_len=16, n_seqs=1)
    ablate(loaded, "gate-one", [loaded.info.attention_layers[0]], all_layers=False, inputs=inputs)


# Falcon's query_key_value under its three flags: rows per KV group [queries | k | v] (Falcon-40B/180B), [Q | k | v]
# with one KV head (Falcon-7B), per head [q_h | k_h | v_h].
FALCON = {"falcon_kv_grouped": ("kv_grouped", dict(new_decoder_architecture=True, num_kv_heads=2, bias=True)),
          "falcon_multi_query": ("fused", dict(bias=True)),
          "falcon_per_head": ("neox", dict(multi_query=False, bias=True))}


@pytest.mark.parametrize("model_type", ["gpt_bigcode", "codegen", "qwen2", "phi", *FALCON])
def test_value_layout_reproduces_values_with_random_biases(model_type, tmp_path, monkeypatch):
    """W_V read for the rank metric (fused multi-query c_attn, CodeGen's per-shard [q | v | k], separate, Falcon's)
    plus the value rows of the projection's bias reproduce the values the attention receives; tiny instances start
    with zero biases, so they are randomised here or a wrong bias slice would pass."""
    from transformers import AutoModelForCausalLM

    from gatelens.models.weights import check_ov, ov_weights

    layout = None
    if model_type in FALCON:
        layout, flags = FALCON[model_type]
        monkeypatch.setitem(coverage.OVERRIDES, "falcon", {**coverage.OVERRIDES["falcon"], **flags})
        model_type = "falcon"

    folder = coverage.build_tiny(model_type, tmp_path / model_type)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    model.save_pretrained(folder)
    loaded = gatelens.load(str(folder))
    assert layout is None or loaded.family.qkv == layout
    assert check_ov(loaded) == ""
    w_v, w_o = ov_weights(loaded, loaded.info.attention_layers[0])
    assert w_v.shape[0] == w_o.shape[0] == loaded.info.n_heads
