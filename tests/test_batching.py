"""Sequences of different lengths give the same metrics batched (right padding) and one at a time."""

import torch

import gatelens
from factories import TEXT
from gatelens.measure import Inputs


def test_mixed_lengths_batched_equal_one_at_a_time(tiny_dir):
    loaded = gatelens.load(str(tiny_dir("qwen3")))
    full = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=64, n_seqs=4)
    seqs = [s[:n] for s, n in zip(full.seqs, (64, 17, 40, 2))]
    inputs = Inputs(seqs, "mixed", 64, True)
    batched = gatelens.sink(loaded, inputs, batch_size=4)
    single = gatelens.sink(loaded, inputs, batch_size=1)
    for a, b in zip(batched.layers, single.layers):
        torch.testing.assert_close(torch.tensor(a.heads["f_attn"]), torch.tensor(b.heads["f_attn"]), atol=1e-5, rtol=0)
        assert a.heads["sink_rate"] == b.heads["sink_rate"]
