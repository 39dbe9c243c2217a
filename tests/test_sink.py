"""F-Attn: a hand-checked example, the streaming path against the slow reference, batching invariance."""

import torch

from gatelens.metrics import sink as ft


def test_hand_checked_pattern():
    # one sequence, one head, 3 tokens. Query 0 is not counted; queries 1 and 2 put 0.5 and 0.2 on key 0.
    p = torch.tensor([[[[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]]]])
    assert torch.allclose(ft.f_attn_reference(p), torch.tensor([0.35]))
    assert ft.sink_rate_reference(p, eps=0.3).item() == 1.0   # mean 0.35 > 0.3
    assert ft.sink_rate_reference(p, eps=0.4).item() == 0.0


def test_query_mask_excludes_position_zero_and_padding():
    m = ft.query_mask(torch.tensor([3, 5]), 5)
    assert m.tolist() == [[False, True, True, False, False], [False, True, True, True, True]]


def test_streaming_weights_equal_reference():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 20, 8, generator=g), torch.randn(2, 3, 20, 8, generator=g)
    s = (q @ k.transpose(-1, -2)) * 0.35
    s = s.masked_fill(torch.ones(20, 20, dtype=torch.bool).triu(1), float("-inf"))
    p, lse = s.softmax(-1), torch.logsumexp(s, -1)
    w = ft.first_token_weights(q, k[:, :, 0], lse, 0.35)
    valid = ft.query_mask(torch.tensor([20, 20]), 20)
    tot, cnt = ft.sums(w, valid)
    torch.testing.assert_close(tot.sum(0) / cnt.sum(), ft.f_attn_reference(p), atol=1e-6, rtol=0)
