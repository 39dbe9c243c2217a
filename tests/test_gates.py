"""Gate scores: hand-checked statistics, exact capture of sigma(gate logits) on every gated format."""

import pytest
import torch

import gatelens
from factories import TEXT
from gatelens.metrics import gates as G


def total(*parts):
    """Sums of several batches combined the way the Gates probe combines them (its declared reducers)."""
    probe = G.Gates()
    for part in parts:
        probe.add(0, **part)
    return probe.acc[0]
from gatelens.models.gated import split_grouped, split_interleaved


def test_hand_checked_statistics():
    s = torch.tensor([[[[0.05, 0.2]], [[0.6, 0.95]]]])   # batch 1, 2 tokens, 1 head, 2 dims
    st = G.summarize(G.batch_sums(s, torch.tensor([[True, True]])))
    assert st["mean"].item() == pytest.approx(0.45)
    assert st["frac_below_0.1"].item() == 0.25 and st["frac_below_0.5"].item() == 0.5
    assert st["frac_above_0.9"].item() == 0.25
    assert st["first_token_mean"].item() == pytest.approx(0.125) and st["rest_mean"].item() == pytest.approx(0.775)
    # token means 0.125, 0.775 (var 0.105625); dim means 0.325, 0.575 (var 0.015625); total var 0.12375
    assert st["token_var_share"].item() == pytest.approx(0.105625 / 0.12375)
    assert st["channel_var_share"].item() == pytest.approx(0.015625 / 0.12375)
    assert (st["min"].item(), st["max"].item()) == pytest.approx((0.05, 0.95))


def test_padding_is_ignored_and_sums_add_up():
    s = torch.rand(2, 5, 3, 4)
    valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
    a = G.batch_sums(s[:1], valid[:1])
    b = G.batch_sums(s[1:, :2], valid[1:, :2])
    both = G.batch_sums(s, valid)
    both_parts = total(a, b)
    for k in ("n", "sum", "sumsq", "hist", "fine", "chan_sum", "first_sum", "min", "max"):
        torch.testing.assert_close(both_parts[k], both[k])
    assert both["hist"].sum().item() == 7 * 3 * 4


def _recomputed_scores(loaded, layer, ids):
    """Hook-free: the layer's input, its norm, q_proj's weights and the family's layout, by hand."""
    with torch.no_grad():
        h = loaded.model(ids, output_hidden_states=True).hidden_states[layer]
        block = loaded.layers()[layer]
        x = block.input_layernorm(h)
        attn = block.self_attn
        info = loaded.info
        out = torch.nn.functional.linear(x, attn.q_proj.weight, attn.q_proj.bias)
        if loaded.family.gate_layout == "interleaved":
            logits = split_interleaved(out, info.n_heads, info.d_head)[1]
        else:
            g = 1 if info.gate == "headwise" else info.d_head
            logits = split_grouped(out, info.n_kv_heads, info.n_heads // info.n_kv_heads, info.d_head, g)[1]
    return torch.sigmoid(logits)


@pytest.mark.parametrize("kind", ["qwen3_5", "qwen3_next", "paper_headwise", "paper_elementwise"])
def test_captures_exactly_sigmoid_of_gate_logits(kind, tiny_dir):
    loaded = gatelens.load(str(tiny_dir(kind)))
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=3)
    r = gatelens.measure.gates(loaded, inputs, batch_size=2)
    ids = torch.stack(inputs.seqs)
    assert [ly.layer for ly in r.layers] == loaded.info.attention_layers
    for ly in r.layers:
        s = _recomputed_scores(loaded, ly.layer, ids).double()
        torch.testing.assert_close(torch.tensor(ly.heads["mean"], dtype=torch.float64), s.mean((0, 1, 3)),
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.tensor(ly.heads["max"], dtype=torch.float64), s.amax((0, 1, 3)),
                                   atol=1e-6, rtol=0)
        assert sum(ly.extra["hist"]) == s.numel() == ly.extra["n_scores"]    # the histograms sum to the token count x g
        assert ly.heads["frac_below_0.5"] == pytest.approx((s < 0.5).double().mean((0, 1, 3)).tolist(), abs=1e-9)


def test_baseline_gets_a_clear_error(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("llama")))
    with pytest.raises(gatelens.GatelensError, match="has no attention gates"):
        gatelens.measure.gates(loaded, text=TEXT, seq_len=32, n_seqs=1)


def _slow_reference(s: torch.Tensor, y: torch.Tensor):
    """Per head, from the raw values in float64 with plain torch/numpy calls. s: [tokens, h, g]; y: [tokens, h, d]."""
    import numpy as np
    out = []
    for i in range(s.shape[1]):
        x, a = s[:, i].double(), y[:, i].double().abs()
        z = (y[:, i] * s[:, i]).abs()   # the gated output, computed as the model does (float32)
        fine = np.histogram(x.numpy(), bins=np.arange(G.N_FINE + 1) / G.N_FINE)[0]
        out.append({
            "mean": x.mean(), "std": x.std(unbiased=False), "min": x.min(), "max": x.max(),
            "median": x.median(), "fine": torch.tensor(fine, dtype=torch.float64),
            "hist": torch.tensor(np.histogram(x.numpy(), bins=np.arange(G.N_BINS + 1) / G.N_BINS)[0], dtype=torch.float64),
            "frac_below_0.1": (x < 0.1).double().mean(), "frac_above_0.9": (x > 0.9).double().mean(),
            "token_var_share": x.mean(1).var(unbiased=False) / x.var(unbiased=False),
            "channel_var_share": x.mean(0).var(unbiased=False) / x.var(unbiased=False),
            "mean_abs_sdpa": a.mean(), "mean_abs_gated": z.double().mean(),
            "frac_small_sdpa": (a < 0.01).double().mean(), "frac_small_gated": (z.double() < 0.01).double().mean(),
            "frac_small_mean_scaled": (a * x.mean() < 0.01).double().mean(),
            "y_hist": torch.tensor(np.histogram(a.clamp(G.log_bin_edges()[0].item(), G.log_bin_edges()[-1].item() / 2)
                                                .numpy(), bins=G.log_bin_edges().numpy())[0], dtype=torch.float64),
        })
    return out


def test_statistics_match_a_slow_reference_on_a_padded_batch():
    g = torch.Generator().manual_seed(0)
    b, n, h, d = 3, 70, 2, 8
    s = torch.sigmoid(4 * torch.randn(b, n, h, d, generator=g))
    s[0, 3, 0, :4] = torch.tensor([0.1, 0.5, 0.9, 1.0])                  # values on bin edges
    y = torch.randn(b, h, n, d, generator=g) * torch.logspace(-4, 1, d)  # SDPA outputs, [b, h, pos, d]
    y[0, 0, 5, :3] = torch.tensor([G.SMALL32, 0.0, 1e-12])
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[1, 50:] = False
    valid[2, 20:] = False
    t = G.summarize(G.batch_sums(s, valid))
    sums = G.batch_sums(s, valid)
    o = G.output_sums(y, s, valid)
    t.update(G.output_summary(o, t["mean"]))
    ref = _slow_reference(s[valid], y.transpose(1, 2)[valid])
    for i, r in enumerate(ref):
        for k in ("mean", "std", "min", "max", "frac_below_0.1", "frac_above_0.9", "token_var_share",
                  "channel_var_share", "mean_abs_sdpa", "mean_abs_gated", "frac_small_sdpa", "frac_small_gated"):
            assert t[k][i].item() == pytest.approx(r[k].item(), rel=1e-6, abs=1e-12), k
        assert torch.equal(sums["fine"][i], r["fine"]) and torch.equal(sums["hist"][i], r["hist"])
        assert torch.equal(o["y_hist"][i], r["y_hist"])
        assert abs(t["median"][i].item() - r["median"].item()) <= 1 / G.N_FINE
        # interpolated inside one |y| bin: off by at most that bin's count
        assert abs(t["frac_small_mean_scaled"][i].item() - r["frac_small_mean_scaled"].item()) < 0.02


def test_output_sums_add_up_over_batches():
    g = torch.Generator().manual_seed(1)
    s = torch.sigmoid(torch.randn(2, 9, 3, 1, generator=g))              # headwise: one score per head
    y = torch.randn(2, 3, 9, 4, generator=g)
    valid = torch.tensor([[True] * 9, [True] * 4 + [False] * 5])
    both = G.output_sums(y, s, valid)
    one = total(G.output_sums(y[:1], s[:1], valid[:1]), G.output_sums(y[1:, :, :4], s[1:, :4], valid[1:, :4]))
    for k in both:   # per-batch sums are float32 reductions (relative error ~1e-7)
        torch.testing.assert_close(both[k], one[k], rtol=1e-6, atol=0)
    assert both["y_hist"].sum().item() == 13 * 3 * 4
