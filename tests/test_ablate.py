"""Ablations through gatelens' attention function against references built without it.

sink: transformers' eager attention with key 0 masked for queries >= 1 (a reference attention function, registered
the documented way); sink-value: the eager model with v_proj's output zeroed at position 0; gate-one: the paper-format
model with its gate rows set to a constant logit of 100 (sigmoid 1); gate-mean: the scores the gate hands on."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import gatelens
from factories import TEXT, nosink_attention
from gatelens.ablate import Ablation, ablate, parse_layers, without_sink


def test_without_sink_hides_key_zero_from_later_queries_only():
    m = without_sink(None, True, 3, 3, "cpu")[0, 0]
    assert m.tolist() == [[True, False, False], [False, True, False], [False, True, True]]
    add = without_sink(torch.zeros(1, 1, 3, 3), False, 3, 3, "cpu")[0, 0]
    assert torch.isinf(add[1:, 0]).all() and add[0, 0] == 0




def _loss(logits, ids):
    return float(torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:]))


def _inputs(loaded, n=32, k=2):
    return gatelens.prepare_inputs(loaded, text=TEXT, seq_len=n, n_seqs=k)


@pytest.mark.parametrize("kind", ["llama", "qwen3_sliding"])
def test_sink_removal_in_all_layers_equals_masked_eager(kind, tiny_dir):
    folder = tiny_dir(kind)
    loaded = gatelens.load(str(folder))
    inputs = _inputs(loaded)
    ids = torch.stack(inputs.seqs)
    r = ablate(loaded, "sink", [], inputs=inputs, batch_size=2)
    ref = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=nosink_attention()).eval()
    plain = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        want, clean = _loss(ref(ids).logits, ids), _loss(plain(ids).logits, ids)
    assert [x.layers for x in r.runs] == ["", "all"]
    assert r.runs[0].loss == pytest.approx(clean, abs=1e-5)
    assert r.runs[1].loss == pytest.approx(want, abs=1e-5)
    assert r.runs[1].loss_change == pytest.approx(want - clean, abs=1e-5)
    assert r.runs[1].f_attn == 0.0                        # no query >= 1 sees key 0 any more


def test_the_sink_edit_leaves_with_its_run(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("llama")))
    inputs = _inputs(loaded)
    r = ablate(loaded, "sink", [], inputs=inputs, batch_size=2)
    assert r.runs[1].f_attn == 0.0 < r.runs[0].f_attn
    assert gatelens.sink(loaded, inputs, batch_size=2).f_attn == pytest.approx(r.runs[0].f_attn, abs=1e-6)


def test_value_removal_in_one_layer_equals_zeroed_v_proj(tiny_dir):
    folder = tiny_dir("llama")
    loaded = gatelens.load(str(folder))
    inputs = _inputs(loaded)
    ids = torch.stack(inputs.seqs)
    r = ablate(loaded, "sink-value", [1], all_layers=False, inputs=inputs, batch_size=1)
    ref = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()

    def zero_first(module, args, out):
        out = out.clone()
        out[:, 0] = 0
        return out

    ref.model.layers[1].self_attn.v_proj.register_forward_hook(zero_first)
    with torch.no_grad():
        want = _loss(ref(ids).logits, ids)
    assert [x.layers for x in r.runs] == ["", "1"]
    assert r.runs[1].loss == pytest.approx(want, abs=1e-5)
    assert r.runs[1].f_attn_layers == pytest.approx(r.runs[0].f_attn_layers, abs=1e-5)  # attention unchanged


def test_gate_one_equals_constant_gate_rows(tiny_dir, tmp_path):
    from gatelens.models.gated import gate_rows

    folder = tiny_dir("paper_elementwise")
    loaded = gatelens.load(str(folder))
    inputs = _inputs(loaded)
    ids = torch.stack(inputs.seqs)
    r = ablate(loaded, "gate-one", [], inputs=inputs, batch_size=2)
    cfg = json.loads((folder / "config.json").read_text())
    ref = gatelens.load(str(folder)).model
    _, _, rows = gate_rows("elementwise", cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"])
    with torch.no_grad():
        for layer in ref.model.layers:
            layer.self_attn.q_proj.weight[rows] = 0
            layer.self_attn.q_proj.bias[rows] = 100.0
        want = _loss(ref(ids).logits, ids)
    assert r.runs[-1].loss == pytest.approx(want, abs=1e-5)


def test_gate_mean_hands_on_each_sequences_mean_score(tiny_dir):
    from gatelens.data import Batch

    loaded = gatelens.load(str(tiny_dir("paper_headwise")))
    probe = Ablation("gate-mean", [0])
    probe.batch = Batch(torch.zeros(2, 5, dtype=torch.long), torch.tensor([5, 3]), None)
    hook = probe._gate_hook(loaded)
    logits = torch.randn(2, 5, 4, 1)
    s = torch.sigmoid(hook(None, None, logits))
    torch.testing.assert_close(s[0], torch.sigmoid(logits[0]).mean(0, keepdim=True).expand(5, 4, 1))
    torch.testing.assert_close(s[1], torch.sigmoid(logits[1, :3]).mean(0, keepdim=True).expand(5, 4, 1))


@pytest.mark.parametrize("gate", ["elementwise", "headwise"])
@pytest.mark.parametrize("layers", [[], [1]])
def test_gate_mean_on_a_whole_model_equals_the_eager_reference(gate, layers, tiny_dir, tmp_path):
    """The paper's eager forward (float64) with each ablated layer's gate scores replaced by their mean over the
    sequence's tokens, computed from that layer's own (already ablated upstream) inputs: loss and F-Attn."""
    import shutil

    from safetensors.torch import load_file, save_file

    from gatelens.metrics.sink import f_attn_reference
    from gatelens.models.gated import gate_rows
    from test_models import paper_forward

    folder = tmp_path / "m"
    shutil.copytree(tiny_dir(f"paper_{gate}"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    sd = load_file(str(folder / "model.safetensors"))
    _, _, rows = gate_rows(gate, cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"])
    for i in range(cfg["num_hidden_layers"]):   # query-dependent gates that matter: the ablation moves the loss
        sd[f"model.layers.{i}.self_attn.q_proj.weight"][rows] *= 8
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    loaded = gatelens.load(str(folder))
    inputs = _inputs(loaded)
    ids = torch.stack(inputs.seqs)
    r = ablate(loaded, "gate-mean", layers, all_layers=not layers, inputs=inputs, batch_size=2)
    ablated = set(layers) if layers else set(range(cfg["num_hidden_layers"]))

    def mean_gate(i, s):
        return s.mean(1, keepdim=True).expand_as(s) if i in ablated else s

    logits, patterns = paper_forward(sd, cfg, ids, gate_fn=mean_gate)
    clean, _ = paper_forward(sd, cfg, ids)
    run = r.runs[-1]
    assert run.layers == (str(layers[0]) if layers else "all")
    assert run.loss == pytest.approx(_loss(logits, ids), abs=1e-5)
    assert run.loss_change == pytest.approx(_loss(logits, ids) - _loss(clean, ids), abs=1e-5)
    assert abs(run.loss_change) > 1e-4   # the ablation moved the loss 10x the tolerance: the comparison can fail
    want = [float(f_attn_reference(p).mean()) for p in patterns]
    assert run.f_attn_layers == pytest.approx(want, abs=1e-5)


def test_user_errors_are_one_line(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("llama")))
    with pytest.raises(gatelens.GatelensError, match="no gate"):
        ablate(loaded, "gate-one", n_seqs=1, seq_len=8)
    with pytest.raises(gatelens.GatelensError, match="attention layers are 0,1"):
        ablate(loaded, "sink", [5], n_seqs=1, seq_len=8)
    with pytest.raises(gatelens.GatelensError, match="--what"):
        ablate(loaded, "sinks", n_seqs=1, seq_len=8)
    with pytest.raises(gatelens.GatelensError, match="comma list"):
        parse_layers("one,two")
    assert parse_layers("0,2") == ([0, 2], False) and parse_layers(None) == (None, True)


# --- Sun et al. 2024: massive activations set to zero or to their mean -------------------------------------------


def _massive_reference(folder, ids, layers, what, abs_threshold, ratio):
    """transformers' eager model: find the massive sites of every decoder layer's output in a clean forward (the
    `massive` rule on the eager hidden states), then set them to zero / their channel mean in `layers`."""
    from gatelens.metrics.massive import histogram_medians, massive_mask, sequence_histograms

    ref = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    blocks = ref.model.layers
    states = {}
    hooks = [b.register_forward_hook(lambda m, a, o, i=i: states.__setitem__(i, o[0] if isinstance(o, tuple) else o))
             for i, b in enumerate(blocks)]
    with torch.no_grad():
        clean = _loss(ref(ids).logits, ids)
    for h in hooks:
        h.remove()
    sites, means = {}, {}
    for i, h in states.items():
        a = h.abs().float()
        valid = torch.ones(a.shape[:2], dtype=torch.bool)
        flags = massive_mask(a, valid, histogram_medians(sequence_histograms(a, valid)), abs_threshold, ratio)
        sites[i] = flags
        n = flags.sum((0, 1)).double()
        means[i] = (h.double() * flags).sum((0, 1)) / n.clamp(min=1)

    def edit(i):
        def hook(m, a, o):
            h = (o[0] if isinstance(o, tuple) else o).clone()
            fill = torch.zeros_like(h) if what == "massive-zero" else means[i].to(h.dtype).expand_as(h)
            h = torch.where(sites[i], fill, h)
            return (h, *o[1:]) if isinstance(o, tuple) else h
        return hook

    hooks = [blocks[i].register_forward_hook(edit(i)) for i in layers]
    with torch.no_grad():
        want = _loss(ref(ids).logits, ids)
    for h in hooks:
        h.remove()
    return clean, want, sum(int(s.sum()) for s in sites.values())


@pytest.mark.parametrize("what", ["massive-zero", "massive-mean"])
def test_massive_ablation_equals_edited_eager(what, tiny_dir):
    folder = tiny_dir("llama")
    loaded = gatelens.load(str(folder))
    inputs = _inputs(loaded)
    ids = torch.stack(inputs.seqs)
    rule = {"abs_threshold": 0.03, "ratio": 4.0}   # a tiny random model (max |h| ~0.1) has none at 100 / 1000x
    r = ablate(loaded, what, [0], inputs=inputs, batch_size=1, **rule)
    assert [x.layers for x in r.runs] == ["", "0", "all"]
    clean, want_one, n_sites = _massive_reference(folder, ids, [0], what, **rule)
    _, want_all, _ = _massive_reference(folder, ids, range(loaded.info.n_layers), what, **rule)
    assert n_sites > 0 and sum(r.settings["massive_sites"].values()) == n_sites   # the edit bites
    assert r.runs[0].loss == pytest.approx(clean, abs=1e-5)
    assert r.runs[1].loss == pytest.approx(want_one, abs=1e-5)
    assert r.runs[2].loss == pytest.approx(want_all, abs=1e-5)
    assert abs(r.runs[2].loss_change) > 5e-5 and r.note is None           # 5x the tolerance: the edit moves the loss
    assert r.to_dict()["settings"]["rule"] == rule


def test_massive_ablation_without_massive_activations_says_so(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("llama")))
    r = ablate(loaded, "massive-zero", [], inputs=_inputs(loaded), batch_size=2)
    assert "no massive activations found" in r.note and r.to_dict()["note"] == r.note
    assert r.runs[1].loss == r.runs[0].loss
    assert any("no massive activations" in n for n in r.display()["notes"])


def test_massive_ablation_takes_decoder_layers(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("qwen3_next")))             # hybrid: not every layer attends
    n = loaded.info.n_layers
    assert len(loaded.info.attention_layers) < n
    r = ablate(loaded, "massive-zero", [n - 1], all_layers=False, inputs=_inputs(loaded), batch_size=2,
               abs_threshold=0.03, ratio=4.0)
    assert [x.layers for x in r.runs] == ["", str(n - 1)]
    with pytest.raises(gatelens.GatelensError, match="decoder layers are 0,1,"):
        ablate(loaded, "massive-zero", [n], inputs=_inputs(loaded), batch_size=2)
