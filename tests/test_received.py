"""Attention received per key: tiles against the full pattern, then whole models against eager attention.

A hand-checked pattern first; then `key_sums` (tiles recomputed from the LSE) against a materialised softmax
for causal, sliding-window and padded masks; then every quantity of the `Received` probe against eager
attention (`output_attentions`) on tiny random models with GQA, a sliding window, a gate and a hybrid stack,
with sequences of different lengths in one batch (padding)."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import gatelens
from factories import HF_FAMILIES, TEXT
from gatelens.kernels import sdpa_with_lse
from gatelens.measure import Inputs, run_probes
from gatelens.metrics.received import Received, key_sums, ranked_keys, received_reference
from gatelens.metrics.sink import f_attn_reference, query_mask


def test_hand_checked_pattern():
    # one head, 3 tokens; query 0 is not counted. Key 0 gets 0.5 and 0.2 (mean 0.35), key 1 gets 0.5 and 0.3
    # (0.4), key 2 only 0.5 from query 2.
    p = torch.tensor([[[[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]]]])
    allowed = torch.ones(3, 3, dtype=torch.bool).tril()[None, None]
    s, c = received_reference(p, allowed)
    assert torch.allclose(s / c, torch.tensor([[[0.35, 0.4, 0.5]]], dtype=torch.float64))
    assert c.tolist() == [[[2.0, 2.0, 1.0]]]
    assert ranked_keys(c, torch.tensor([3]), min_queries=2).tolist() == [[[True, True, False]]]


def _eager(q, k, scale, allowed):
    s = (q @ k.repeat_interleave(q.shape[1] // k.shape[1], 1).transpose(-1, -2)) * scale
    return s.masked_fill(~allowed, float("-inf")).softmax(-1)


@pytest.mark.parametrize("tile,fused", [(1 << 20, True), (1 << 20, False), (200, False)])
def test_tiles_equal_the_materialised_pattern(tile, fused):
    """Plain causal attention takes the fused path (the transposed attention's LSE) unless fused=False."""
    g = torch.Generator().manual_seed(0)
    b, h, kv, n, d = 2, 4, 2, 45, 8
    q, k, v = torch.randn(b, h, n, d, generator=g) * 2, torch.randn(b, kv, n, d, generator=g), torch.randn(b, kv, n, d)
    lengths = torch.tensor([45, 31])
    valid = query_mask(lengths, n)
    x = torch.rand(b, h, n, generator=g)
    i, j = torch.arange(n)[:, None], torch.arange(n)[None]
    causal = (j <= i)[None, None]
    window = ((j <= i) & (j > i - 10))[None, None].expand(b, 1, n, n).clone()
    window[1, :, :, 31:] = False                                     # padding: keys past the length
    for mask, allowed in ((None, causal), (window, window), (torch.zeros(b, 1, n, n).masked_fill(~window, float("-inf")), window)):
        _, lse = sdpa_with_lse(q, k, v, mask, is_causal=mask is None, scale=0.4)
        p = _eager(q, k, 0.4, allowed)
        col, cnt, row = key_sums(q, k, lse, 0.4, mask, valid, row_values=x, tile=tile, fused=fused)
        want_col, want_cnt = received_reference(p, allowed, lengths)
        torch.testing.assert_close(col, want_col, atol=1e-5, rtol=0)
        assert torch.equal(cnt, want_cnt)
        want_row = torch.where(valid[:, None], (p.double().nan_to_num() @ x.double()[..., None]).squeeze(-1), 0.0)
        torch.testing.assert_close(row, want_row, atol=1e-5, rtol=0)


def _allowed(cfg, layer: int, n: int) -> torch.Tensor:
    i, j = torch.arange(n)[:, None], torch.arange(n)[None]
    a = j <= i
    types = getattr(cfg, "layer_types", None)
    if types and types[layer] == "sliding_attention":
        a &= j > i - cfg.sliding_window
    return a[None, None]


def _reference(patterns_per_seq, allowed_per_layer, lengths):
    """Per layer: summed weight and counts per (head, key) over sequences, from eager patterns of each sequence."""
    n = max(lengths)
    out = []
    for li in range(len(patterns_per_seq[0])):
        s = torch.zeros(patterns_per_seq[0][li].shape[1], n, dtype=torch.float64)
        c = torch.zeros_like(s)
        for seq, pats in enumerate(patterns_per_seq):
            m = lengths[seq]
            ws, wc = received_reference(pats[li], allowed_per_layer[li][..., :m, :m])
            s[:, :m] += ws[0]
            c[:, :m] += wc[0]
        out.append((s, c))
    return out


def _check_against(result, ref, lengths, seqs, loaded, top_k):
    for ly, (s, c) in zip(result.layers, ref):
        got_s, got_c = result.profiles[ly.layer]
        torch.testing.assert_close(got_s, s, atol=1e-5, rtol=0)
        assert torch.equal(got_c, c)
    # top keys of each head: recompute per sequence from the reference pattern sums
    for ly in result.layers:
        for h, tops in enumerate(ly.head_extra["top"]):
            assert len(tops) == top_k
            for t in tops:
                assert loaded.tokenizer.decode([int(seqs[t["seq"]][t["pos"]])]) == t["token"]
            vals = [t["received"] for t in tops]
            assert vals == sorted(vals, reverse=True)


@pytest.mark.parametrize("kind", HF_FAMILIES)
def test_probe_equals_eager_on_hf_models(kind, tiny_dir):
    folder = tiny_dir(kind)
    loaded = gatelens.load(str(folder))
    ref_model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    full = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=3)
    seqs = [full.seqs[0], full.seqs[1][:27], full.seqs[2][:33]]     # different lengths: padded in one batch
    lengths = [len(x) for x in seqs]
    inputs = Inputs(seqs, "text", 40, True, 3)
    result = run_probes(loaded, [Received(top_k=3, min_queries=4)], inputs, batch_size=3)[0]
    with torch.no_grad():
        pats = [[a for a in ref_model(x[None], output_attentions=True).attentions if a is not None] for x in seqs]
    allowed = [_allowed(ref_model.config, layer, 40) for layer in loaded.info.attention_layers]
    ref = _reference(pats, allowed, lengths)
    _check_against(result, ref, lengths, seqs, loaded, 3)
    # received at key 0 equals F-Attn where key 0 is visible to every query
    for ly, pats_l in zip(result.layers, zip(*pats)):
        if kind != "qwen3_sliding":
            want = sum(f_attn_reference(p) * (len_ - 1) for p, len_ in zip(pats_l, lengths)) / sum(x - 1 for x in lengths)
            torch.testing.assert_close(torch.tensor(ly.heads["received_first"]), want.float(), atol=1e-5, rtol=0)


def test_probe_equals_eager_on_the_paper_gated_format(tiny_dir):
    from safetensors.torch import load_file

    from test_models import paper_forward

    folder = tiny_dir("paper_elementwise")
    import json

    cfg = json.loads((folder / "config.json").read_text())
    loaded = gatelens.load(str(folder))
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=2)
    result = run_probes(loaded, [Received(top_k=2, min_queries=4)], inputs, batch_size=2)[0]
    _, pats = paper_forward(load_file(str(folder / "model.safetensors")), cfg, torch.stack(inputs.seqs))
    allowed = torch.ones(40, 40, dtype=torch.bool).tril()[None, None]
    ref = _reference([[p[i:i + 1] for p in pats] for i in range(2)], [allowed] * len(pats), [40, 40])
    _check_against(result, ref, [40, 40], inputs.seqs, loaded, 2)


def test_tokens_and_top_key_counts_by_hand(tiny_dir):
    """The per-token table and the top-key counts follow from the per-sequence received values."""
    loaded = gatelens.load(str(tiny_dir("qwen3")))
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=32, n_seqs=2)
    probe = Received(top_k=1, min_queries=4)
    result = run_probes(loaded, [probe], inputs, batch_size=1)[0]
    n_heads = loaded.info.n_heads
    tops = sum(r["top_heads"] for r in result.tokens)
    not_first = sum(v * 2 for ly in result.layers for v in ly.heads["top_not_first"])   # 2 sequences
    assert tops == pytest.approx(not_first)
    assert sum(r["n"] for r in result.tokens) > 0
    assert 0.0 <= result.top_not_first <= 1.0
    assert len(result.layers) * n_heads == len(result.to_frame())
    d = result.to_dict()
    assert {"received_first", "top_not_first", "sink_tokens", "layers", "tokens"} <= d.keys()
    assert {"received_first", "top_not_first", "top_received", "heads"} <= d["layers"][0].keys()
    assert {"head", "received_first", "top"} <= d["layers"][0]["heads"][0].keys()


def test_bad_options_are_one_line_errors():
    with pytest.raises(gatelens.GatelensError, match="top-k"):
        Received(top_k=0)
    with pytest.raises(gatelens.GatelensError, match="min-queries"):
        Received(min_queries=0)


def test_tiles_with_soft_capped_logits():
    """Gemma 2's capped logits: a_ij = exp(c tanh(scale q.k / c) - lse_i), the LSE over the capped logits."""
    g = torch.Generator().manual_seed(1)
    b, h, kv, n, d = 1, 2, 1, 30, 8
    q, k = torch.randn(b, h, n, d, generator=g) * 3, torch.randn(b, kv, n, d, generator=g)
    s = torch.tanh((q @ k.repeat_interleave(2, 1).transpose(-1, -2)) * 0.5 / 5.0) * 5.0
    allowed = torch.ones(n, n, dtype=torch.bool).tril()[None, None]
    s = s.masked_fill(~allowed, float("-inf"))
    lse, p = torch.logsumexp(s, -1), s.softmax(-1)
    valid = query_mask(torch.tensor([n]), n)
    col, cnt, _ = key_sums(q, k, lse, 0.5, None, valid, softcap=5.0, tile=100)
    want_col, want_cnt = received_reference(p, allowed)
    torch.testing.assert_close(col, want_col, atol=1e-5, rtol=0)
    assert torch.equal(cnt, want_cnt)


# --- Gu et al.'s sink score of every position ----------------------------------------------------------------


def _sink_score_reference(patterns_per_seq, allowed_per_layer, lengths, eps, min_queries):
    """Share of (sequence, layer, head) in which alpha_k (mean weight on key k over the counted queries that see it)
    exceeds eps, per position, from eager patterns; keys seen by fewer than min(min_queries, the most any key of that
    sequence is seen by) counted queries are not scored."""
    n = max(lengths)
    passed, scored = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    for seq, pats in enumerate(patterns_per_seq):
        m = lengths[seq]
        for li, p in enumerate(pats):
            s, c = received_reference(p, allowed_per_layer[li][..., :m, :m])     # [1, h, m]
            alpha = s[0] / c[0].clamp(min=1)
            ok = c[0] >= min(min_queries, float(c[0].max()))
            passed[:m] += ((alpha > eps) & ok).sum(0)
            scored[:m] += ok.sum(0)
    return torch.where(scored > 0, passed / scored.clamp(min=1), float("nan"))


def test_sink_score_hand_checked():
    # the hand-checked pattern above: alpha = 0.35, 0.4, 0.5; key 2 is seen by 1 query < min_queries 2: not scored
    p = torch.tensor([[[[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]]]])
    allowed = torch.ones(3, 3, dtype=torch.bool).tril()[None, None]
    got = _sink_score_reference([[p]], [allowed], [3], eps=0.3, min_queries=2)
    assert got[:2].tolist() == [1.0, 1.0] and got[2].isnan()
    assert _sink_score_reference([[p]], [allowed], [3], eps=0.38, min_queries=2)[:2].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("kind", ["llama", "qwen3_sliding", "qwen3_next"])
def test_sink_score_equals_eager(kind, tiny_dir):
    folder = tiny_dir(kind)
    loaded = gatelens.load(str(folder))
    ref_model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    full = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=3)
    seqs = [full.seqs[0], full.seqs[1][:27], full.seqs[2][:33]]
    lengths = [len(x) for x in seqs]
    eps = 0.05  # tiny random models spread their attention: a low threshold makes the score bite
    result = run_probes(loaded, [Received(top_k=3, min_queries=4, eps=eps)], Inputs(seqs, "text", 40, True, 3),
                        batch_size=3)[0]
    with torch.no_grad():
        pats = [[a for a in ref_model(x[None], output_attentions=True).attentions if a is not None] for x in seqs]
    allowed = [_allowed(ref_model.config, layer, 40) for layer in loaded.info.attention_layers]
    want = _sink_score_reference(pats, allowed, lengths, eps, 4)
    got = result.sink_score()
    assert torch.equal(got.isnan(), want.isnan())
    torch.testing.assert_close(got.nan_to_num(), want.nan_to_num(), atol=1e-12, rtol=0)
    assert 0 < float(want.nan_to_num().sum())                      # some key passes: the comparison bites
    d = result.to_dict()["sink_score"]
    assert d["eps"] == eps and d["first"] == pytest.approx(float(want[0]))
    assert [r["pos"] for r in d["positions"]] == sorted((p for p in range(len(want)) if want[p] > 0),
                                                        key=lambda p: (-float(want[p]), p))[:10]
    assert list(result.tables()["sink_score_positions"].columns) == ["pos", "sink_score", "n_scored"]


def test_sink_score_at_the_first_position_is_the_sink_rate(tiny_dir):
    from gatelens.metrics.sink import Sink

    loaded = gatelens.load(str(tiny_dir("qwen3")))
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=32, n_seqs=3)
    rec, sink = run_probes(loaded, [Received(eps=0.1), Sink(eps=0.1)], inputs, batch_size=2)
    assert float(rec.sink_score()[0]) == pytest.approx(sink.sink_rate, abs=1e-12)
    assert 0 < sink.sink_rate < 1


def test_sink_score_eps_is_checked():
    with pytest.raises(gatelens.GatelensError, match="eps"):
        Received(eps=1.5)
