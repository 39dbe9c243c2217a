"""Every supported family loads by path, reproduces plain transformers' logits, and its streaming
F-Attn equals the eager reference (full attention patterns) to 1e-5.

The paper's format cannot run in plain transformers; it is checked against an eager
re-implementation of its modeling code's forward, written out below."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

import gatelens
from factories import HF_FAMILIES, PAPER_FORMATS, TEXT
from gatelens.metrics.sink import f_attn_reference
from gatelens.models.gated import split_grouped, split_interleaved


def _inputs(loaded, n=40, k=3):
    return gatelens.prepare_inputs(loaded, text=TEXT, seq_len=n, n_seqs=k)


@pytest.mark.parametrize("family", HF_FAMILIES)
def test_hf_family_logits_and_f_attn(family, tiny_dir):
    folder = tiny_dir(family)
    loaded = gatelens.load(str(folder))
    inputs = _inputs(loaded)
    ids = torch.stack(inputs.seqs)
    ref = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        want = ref(ids, output_attentions=True)
        got = loaded.model(ids).logits
    torch.testing.assert_close(got, want.logits, atol=1e-5, rtol=0)
    result = gatelens.sink(loaded, inputs, batch_size=2)
    patterns = [a for a in want.attentions if a is not None]  # hybrids: linear-attention layers give None
    assert [ly.layer for ly in result.layers] == loaded.info.attention_layers
    assert len(patterns) == len(result.layers)
    for ly, pattern in zip(result.layers, patterns):
        torch.testing.assert_close(torch.tensor(ly.heads["f_attn"], dtype=torch.float64), f_attn_reference(pattern).double(),
                                   atol=1e-5, rtol=0)


def test_hybrid_families_report_only_full_attention_layers_and_their_gate(tiny_dir):
    for family in ("qwen3_next", "qwen3_5"):
        info = gatelens.load(str(tiny_dir(family))).info
        assert info.attention_layers == [1, 3]
        assert (info.gate, info.gate_position, info.gate_layout) == ("elementwise", "G1", "interleaved")


# ---- the paper's release format --------------------------------------------------------------

def _rms_w(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rope(x, theta):
    d, n = x.shape[-1], x.shape[-2]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    rot = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def paper_forward(sd, cfg, ids, gate_fn=None):
    """Eager forward of the paper's modeling_qwen3.py (Qwen3Attention.forward), in float64.

    A norm whose weight the checkpoint lacks is skipped: gatelens' own family can drop the pre-norms,
    QK-norm and the final norm (model_type "gatelens", `pre_norm` / `use_qk_norm` / `final_norm` false).
    `gate_fn(layer, scores [b, pos, head, g]) -> scores` replaces the gate scores (ablation references)."""
    sd = {k: v.double() for k, v in sd.items()}

    def _rms(x, key, eps):
        return _rms_w(x, sd[key], eps) if key in sd else x

    H, K, d, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["rms_norm_eps"]
    G = H // K
    headwise = cfg.get("headwise_attn_output_gate", False)
    gated = headwise or cfg.get("elementwise_attn_output_gate", False) or cfg.get("gate", "none") != "none"
    b, n = ids.shape
    x = sd["model.embed_tokens.weight"][ids]
    patterns = []

    def lin(name, h):
        y = h @ sd[name + ".weight"].T
        return y + sd[name + ".bias"] if name + ".bias" in sd else y

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = _rms(x, p + "input_layernorm.weight", eps)
        q = lin(p + "self_attn.q_proj", h).view(b, n, K, -1)
        if gated:
            q, gate = torch.split(q, [d * G, (1 if headwise else d) * G], dim=-1)   # per KV group: [queries | gates]
            gate = gate.reshape(b, n, H, 1 if headwise else d)
        else:
            gate = torch.full((b, n, H, 1), float("inf"), dtype=q.dtype)          # sigmoid(inf) = 1: no gate
        q = q.reshape(b, n, H, d).transpose(1, 2)
        k = lin(p + "self_attn.k_proj", h).view(b, n, K, d).transpose(1, 2)
        v = lin(p + "self_attn.v_proj", h).view(b, n, K, d).transpose(1, 2)
        q = _rms(q, p + "self_attn.q_norm.weight", eps)
        k = _rms(k, p + "self_attn.k_norm.weight", eps)
        q, k = _rope(q, cfg["rope_theta"]), _rope(k, cfg["rope_theta"])
        k, v = k.repeat_interleave(G, 1), v.repeat_interleave(G, 1)
        s = q @ k.transpose(2, 3) / math.sqrt(d)
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        a = s.softmax(-1)
        patterns.append(a)
        scores = torch.sigmoid(gate)
        if gate_fn is not None:
            scores = gate_fn(i, scores)
        o = (a @ v).transpose(1, 2) * scores
        x = x + lin(p + "self_attn.o_proj", o.reshape(b, n, H * d))
        h = _rms(x, p + "post_attention_layernorm.weight", eps)
        up = torch.nn.functional.silu(lin(p + "mlp.gate_proj", h)) * lin(p + "mlp.up_proj", h)
        x = x + lin(p + "mlp.down_proj", up)
    x = _rms(x, "model.norm.weight", eps)
    return x @ sd["lm_head.weight"].T, patterns


@pytest.mark.parametrize("gate", PAPER_FORMATS)
def test_paper_format_matches_eager_reimplementation(gate, tiny_dir):
    from safetensors.torch import load_file

    folder = tiny_dir(f"paper_{gate}")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["num_attention_heads"] // cfg["num_key_value_heads"] == 2  # G = 2: the layouts differ
    loaded = gatelens.load(str(folder))
    assert (loaded.info.gate, loaded.info.gate_layout, loaded.info.gate_position) == (gate, "grouped", "G1")
    inputs = _inputs(loaded)
    ids = torch.stack(inputs.seqs)
    want, patterns = paper_forward(load_file(str(folder / "model.safetensors")), cfg, ids)
    with torch.no_grad():
        got = loaded.model(ids).logits
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)
    result = gatelens.sink(loaded, inputs, batch_size=2)
    for ly, pattern in zip(result.layers, patterns):
        torch.testing.assert_close(torch.tensor(ly.heads["f_attn"], dtype=torch.float64), f_attn_reference(pattern).double(), atol=1e-5, rtol=0)


def test_native_family_without_norms_matches_eager_reimplementation(tmp_path):
    """gatelens' own family with no RMSNorm anywhere (the zoo's mechanism twins): logits and F-Attn as eager."""
    from factories import TOK, paper_config
    from gatelens.models import native

    cfg = {**paper_config("elementwise", model_type="gatelens", pre_norm=False, use_qk_norm=False, final_norm=False),
           "gate": "elementwise"}
    torch.manual_seed(0)
    model = native.build(cfg)
    assert not any("norm" in name for name, _ in model.named_parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.12)  # O(1) activations without any norm: a sharp, non-uniform pattern
    native.save(model, tmp_path / "m", cfg)
    TOK.save_pretrained(tmp_path / "m")
    loaded = gatelens.load(str(tmp_path / "m"))
    assert loaded.info.final_norm is False and loaded.info.gate == "elementwise"
    inputs = _inputs(loaded)
    ids = torch.stack(inputs.seqs)
    want, patterns = paper_forward(model.state_dict(), cfg, ids)
    with torch.no_grad():
        got = loaded.model(ids).logits
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-5)
    result = gatelens.sink(loaded, inputs, batch_size=2)
    for ly, pattern in zip(result.layers, patterns):
        assert pattern[..., 1:, 0].std() > 0.01  # not a uniform pattern: the comparison below can fail
        torch.testing.assert_close(torch.tensor(ly.heads["f_attn"], dtype=torch.float64), f_attn_reference(pattern).double(),
                                   atol=1e-5, rtol=0)


def test_grouped_and_interleaved_layouts_differ_when_group_is_two():
    """The trap: with G = 2 the paper's rows are [q0 q1 | g0 g1] per KV group, Qwen3-Next's [q0 g0 | q1 g1]."""
    d = 2
    rows = torch.arange(8.0)  # one KV group of two heads, head_dim 2, elementwise gate
    q, g = split_grouped(rows, n_kv=1, group=2, head_dim=d, g=d)
    assert q.tolist() == [0, 1, 2, 3] and g.tolist() == [[4, 5], [6, 7]]
    q, g = split_interleaved(rows, n_heads=2, head_dim=d)
    assert q.tolist() == [0, 1, 4, 5] and g.tolist() == [[2, 3], [6, 7]]


def test_wrong_gate_flag_fails_loudly_naming_the_tensor(tiny_dir, tmp_path):
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(tiny_dir("paper_headwise"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["headwise_attn_output_gate"], cfg["elementwise_attn_output_gate"] = False, True
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(gatelens.GatelensError, match=r"q_proj\.(weight|bias) has shape"):
        gatelens.load(str(folder))


def test_native_build_ties_embeddings_when_the_config_says_so():
    """A tied config must train tied: the saved checkpoint stores lm_head once, as embed_tokens."""
    from factories import paper_config
    from gatelens.models import native

    for tie in (True, False):
        m = native.build(paper_config("elementwise", tie_word_embeddings=tie))
        assert (m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()) is tie


@pytest.mark.parametrize("group", [1, 2, 4])
@pytest.mark.parametrize("qk_norm", [True, False])
@pytest.mark.parametrize("qkv_bias", [True, False])
@pytest.mark.parametrize("gate", ["none", "headwise", "elementwise"])
def test_paper_format_every_flag_matches_eager(gate, qkv_bias, qk_norm, group, tmp_path):
    """The paper's format goes through gatelens' own build with or without a gate: `qkv_bias` is a bias on
    q, k, v and o, `use_qk_norm: false` means no q/k norms; logits and F-Attn as its eager forward, to 1e-5."""
    from safetensors.torch import load_file

    from factories import make_paper

    folder = make_paper(gate, tmp_path / "m", qkv_bias=qkv_bias, use_qk_norm=qk_norm,
                        num_attention_heads=4, num_key_value_heads=4 // group)
    cfg = json.loads((folder / "config.json").read_text())
    sd = load_file(str(folder / "model.safetensors"))
    assert ("model.layers.0.self_attn.o_proj.bias" in sd) is qkv_bias
    assert ("model.layers.0.self_attn.q_norm.weight" in sd) is qk_norm
    loaded = gatelens.load(str(folder))
    assert loaded.family.native and loaded.info.gate == gate
    inputs = _inputs(loaded, n=24, k=2)
    ids = torch.stack(inputs.seqs)
    want, patterns = paper_forward(sd, cfg, ids)
    with torch.no_grad():
        got = loaded.model(ids).logits
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)
    result = gatelens.sink(loaded, inputs, batch_size=2)
    for ly, pattern in zip(result.layers, patterns, strict=True):
        torch.testing.assert_close(torch.tensor(ly.heads["f_attn"], dtype=torch.float64),
                                   f_attn_reference(pattern).double(), atol=1e-5, rtol=0)


def _tamper(folder, fn):
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    sd = load_file(str(path))
    fn(sd)
    save_file(sd, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize("family", ["llama", "paper_elementwise"])
@pytest.mark.parametrize("change", ["missing", "extra", "shape"])
def test_checkpoint_not_matching_its_config_is_one_line(family, change, tiny_dir, tmp_path):
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(tiny_dir(family), folder)
    key = "model.layers.1.self_attn.k_proj.weight"
    edits = {"missing": lambda sd: sd.pop(key),
             "extra": lambda sd: sd.__setitem__("model.layers.1.self_attn.extra.weight", torch.zeros(3)),
             "shape": lambda sd: sd.__setitem__(key, sd[key][:-1])}
    _tamper(folder, edits[change])
    words = {"missing": "missing", "extra": "unexpected", "shape": "shape"}[change]
    with pytest.raises(gatelens.GatelensError, match=words) as e:
        gatelens.load(str(folder))
    assert "\n" not in str(e.value) and ("extra" in str(e.value) or key in str(e.value))
