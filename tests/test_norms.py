"""Per-token norms of hidden state, key and value: by hand, then against transformers' eager forward."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import gatelens
from factories import TEXT, capturing_eager
from gatelens.measure import Inputs, run_probes
from gatelens.metrics.contribution import Contribution
from gatelens.metrics.norms import Norms, norms_reference


def test_hand_checked_norms():
    # one sequence, one head: norms 3 (position 0), 4, 5, 13 -> median of 4, 5, 13 is 5; position 0 / median = 0.6
    x = torch.tensor([[3.0, 0], [0, 4], [3, 4], [5, 12]]).view(1, 1, 4, 2)
    ref = norms_reference(x, torch.tensor([4]))
    assert ref["position"].tolist() == [3.0, 4.0, 5.0, 13.0]
    assert ref["ratio"].item() == pytest.approx(0.6)
    # a second, shorter sequence (length 3: norms 1, 2, 2): per head a ratio of sums, (3 + 1) / (5 + 2)
    x2 = torch.cat([x, torch.tensor([[1.0, 0], [0, 2], [2, 0], [9, 9]]).view(1, 1, 4, 2)])
    ref = norms_reference(x2, torch.tensor([4, 3]))
    assert ref["ratio"].item() == pytest.approx(4 / 7)
    assert ref["position"][3].item() == 13.0          # the padded position of sequence 2 is not counted


@pytest.mark.parametrize("kind", ["llama", "qwen3", "gpt2", "qwen3_next"])
def test_probe_equals_eager(kind, tiny_dir):
    folder = tiny_dir(kind)
    loaded = gatelens.load(str(folder))
    calls: list = []
    ref = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=capturing_eager(calls)).eval()
    full = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=3)
    seqs = [full.seqs[0], full.seqs[1][:27], full.seqs[2][:33]]     # different lengths: padded in one batch
    lengths = torch.tensor([len(x) for x in seqs])
    result = run_probes(loaded, [Norms()], Inputs(seqs, "text", 40, True, 3), batch_size=3)[0]
    layers = ref.base_model.layers if hasattr(ref.base_model, "layers") else ref.base_model.h
    per_seq = []
    for x in seqs:
        calls.clear()
        hid = {}
        hooks = [m.register_forward_hook(lambda m, a, o, i=i: hid.__setitem__(i, o[0] if isinstance(o, tuple) else o))
                 for i, m in enumerate(layers)]
        with torch.no_grad():
            ref(x[None])
        for h in hooks:
            h.remove()
        keys = dict(zip(loaded.info.attention_layers, [k for _, k, _ in calls]))
        vals = dict(zip(loaded.info.attention_layers, [v for _, _, v in calls]))
        per_seq.append((hid, keys, vals))
    n = 40

    def padded(parts):                                  # [1, g, m, d] per sequence -> [b, g, n, d] zero-padded
        return torch.cat([torch.nn.functional.pad(p, (0, 0, 0, n - p.shape[2])) for p in parts])

    for ly in result.layers:
        layer = ly["layer"]
        want = {"hidden": norms_reference(padded([h[layer][:, None] for h, _, _ in per_seq]), lengths)}
        if layer in loaded.info.attention_layers:
            want["key"] = norms_reference(padded([k[layer] for _, k, _ in per_seq]), lengths)
            want["value"] = norms_reference(padded([v[layer] for _, _, v in per_seq]), lengths)
        assert set(want) == {q for q in ("hidden", "key", "value") if q in ly}, layer
        for q, w in want.items():
            torch.testing.assert_close(ly[q]["position"], w["position"], atol=1e-4, rtol=1e-5, msg=f"{q} {layer}")
            assert ly[q]["ratio"] == pytest.approx(float(w["ratio"]), rel=1e-5), f"{q} of layer {layer}"
    # per token: the mean hidden norm of one token string over its occurrences at positions >= 1, over layers
    tok = loaded.tokenizer
    row = max(result.tokens, key=lambda r: r["n"])
    ids = {i for i in range(len(tok)) if tok.decode([i]) == row["token"]}
    vals = [h[ly["layer"]][0, p].double().norm() for (h, _, _), x in zip(per_seq, seqs) for ly in result.layers
            for p in range(1, len(x)) if int(x[p]) in ids]
    assert row["n"] == len(vals) and row["hidden"] == pytest.approx(float(sum(vals) / len(vals)), rel=1e-5)


def test_value_ratio_agrees_with_contribution(tiny_dir):
    """Two modules, one quantity: the value norm of position 0 against the median (per head, ratio of sums)."""
    loaded = gatelens.load(str(tiny_dir("qwen2")))                  # grouped-query attention
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=32, n_seqs=3)
    norms, con = run_probes(loaded, [Norms(), Contribution()], inputs, batch_size=2)
    assert norms.ratio("value") == pytest.approx(con.overall("value_ratio"), rel=1e-6)


def test_norms_command_writes_tables_figure_and_json(tmp_path):
    from typer.testing import CliRunner

    from gatelens.cli import app

    out = tmp_path / "n"
    r = CliRunner().invoke(app, ["norms", "mech-baseline", "--n-seqs", "2", "--seq-len", "64", "--out", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads((out / "norms.json").read_text())
    assert set(d["summary"]) == {"hidden_first_to_median", "key_first_to_median", "value_first_to_median"}
    assert d["summary"]["value_first_to_median"] < 1          # the mech baseline's sink: a small value ("drain")
    for stem in ("norms_layers", "norms_positions", "norms_tokens"):
        assert (out / f"{stem}.csv").exists() and (out / f"{stem}.md").exists()
    assert (out / "norms_first_to_median.png").exists() and (out / "norms_first_to_median.pdf").exists()
    assert d["provenance"]["models"][0]["spec"] == "mech-baseline"
