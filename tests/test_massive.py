"""Massive activations: hand-checked tensors, the streaming probe against output_hidden_states."""

import pytest
import torch

import gatelens
from factories import TEXT
from gatelens.metrics import massive as M


def test_hand_checked_massive_mask_and_median():
    h = torch.ones(1, 3, 4)
    h[0, 0, 2] = 5000.0     # 5000 > 100 and > 1000 x median (1): massive
    h[0, 1, 1] = -150.0     # 150 > 100 but < 1000 x 1: not massive
    valid = torch.tensor([[True, True, True]])
    median = M.histogram_medians(M.sequence_histograms(h.abs(), valid))
    assert median.item() == pytest.approx(1.0, rel=6e-3)      # 10 of 12 values are 1
    mask = M.massive_mask(h.abs(), valid, median)
    assert mask.sum() == 1 and mask[0, 0, 2]
    assert not M.massive_mask(h.abs(), torch.tensor([[False, True, True]]), median).any()  # padding never counts


def test_histogram_median_is_close_to_exact():
    x = torch.randn(10001).abs() * 3
    med = M.histogram_median(M.log_histogram(x))
    assert abs(med / x.median().item() - 1) < 3e-3


def test_sequence_histograms_ignore_padding_and_sum_to_layer_histogram():
    a = torch.rand(3, 5, 4) * 10
    valid = torch.tensor([[True] * 5, [True] * 2 + [False] * 3, [False] * 5])
    h = M.sequence_histograms(a, valid)
    assert h.sum(1).tolist() == [20, 8, 0]
    assert torch.equal(h.sum(0), M.log_histogram(a[valid]))
    assert torch.isnan(M.histogram_medians(h)[2])


def test_topk_equals_a_full_sort():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 7, 5, generator=g)
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[2, 4:] = False
    vals, idx = M.topk_values(a, valid, 6)
    full = a.masked_fill(~valid[..., None], -1).flatten()
    want_vals, want_idx = full.topk(6)
    assert torch.equal(vals, want_vals) and torch.equal(idx, want_idx)


def test_unravel_and_topk():
    h = torch.zeros(2, 3, 4)
    h[1, 2, 3], h[0, 1, 0] = -9.0, 7.0
    vals, idx = M.topk_values(h.abs(), torch.ones(2, 3, dtype=torch.bool), 2)
    assert vals.tolist() == [9.0, 7.0]
    assert M.unravel(int(idx[0]), h.shape) == (1, 2, 3) and M.unravel(int(idx[1]), h.shape) == (0, 1, 0)


def test_m_act_readings():
    assert M.m_act([1.0, 5.0, 3.0]) == (5.0, 3.0)


def test_probe_equals_output_hidden_states_reference(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("llama")))
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=3)
    r = gatelens.measure.massive(loaded, inputs, batch_size=2, top_k=3)
    with torch.no_grad():
        hs = loaded.model(torch.stack(inputs.seqs), output_hidden_states=True).hidden_states[1:]
    # transformers' last hidden state is after the final norm; the probe reads each layer's output
    assert len(r.layers) == len(hs)
    for ly, h in zip(r.layers[:-1], hs[:-1]):
        a = h.abs()
        assert abs(ly.max_abs - a.max().item()) <= 1e-6 * a.max().item()
        seq, pos, ch = M.unravel(int(a.flatten().argmax()), a.shape)
        assert (ly.top[0].seq, ly.top[0].pos, ly.top[0].channel) == (seq, pos, ch)
        assert abs(ly.median_abs / a.median().item() - 1) < 6e-3
        assert [t.value for t in ly.top] == sorted([t.value for t in ly.top], reverse=True)


def test_bit_pattern_bins_are_monotone_and_invert():
    from gatelens.metrics import bitbins
    base, shift = bitbins.float_bits(-27), 15
    v = torch.tensor([1e-9, 0.01, 0.3, 1.0, 1.5, 7.0, 1e6], dtype=torch.float64)
    pos = bitbins.position(v, base, shift)
    torch.testing.assert_close(bitbins.value(pos, base, shift), v, rtol=1e-12, atol=0)
    idx = bitbins.bins_(v.float().view(torch.int32).clone(), base, shift, 10**6)
    assert torch.equal(idx.long(), pos.floor().long().clamp(min=0))       # a value's bin is its position's floor
