"""The shipped zoo: every model loads by name, and every number in its card is reproduced by gatelens."""

import json

import pytest

import gatelens
from gatelens.models import zoo
from gatelens.models.load import ZOO_DIR

pytestmark = pytest.mark.slow  # trains, runs notebooks or analyses, or starts processes: not in the quick tier

NAMES = [e["name"] for e in zoo.entries() if e["path"]]  # shipped inside the package (smollm2-135m is a pip package)
CARDED = [n for n in NAMES if (ZOO_DIR / n / "card.json").exists()]


def test_zoo_is_shipped_and_small():
    assert {"tiny-baseline", "tiny-gated", "tiny-gated-headwise"} <= set(NAMES)
    size = sum(p.stat().st_size for p in ZOO_DIR.rglob("*.safetensors"))
    assert size <= 40 * 2**20
    for name in NAMES:
        assert (ZOO_DIR / name / "MODEL_CARD.md").exists(), name


@pytest.mark.parametrize("name", CARDED)
def test_card_numbers_are_reproduced(name):
    card = json.loads((ZOO_DIR / name / "card.json").read_text())
    ev = card.get("eval", {"seq_len": 256, "n_seqs": 16})
    loaded = gatelens.load(name)
    assert (ZOO_DIR / name / "MODEL_CARD.md").exists()
    r = gatelens.sink(loaded, seq_len=ev["seq_len"], n_seqs=ev["n_seqs"])
    assert r.f_attn == pytest.approx(card["f_attn"], abs=1e-4)
    if card.get("mean_gate") is not None:
        g = gatelens.measure.gates(loaded, seq_len=ev["seq_len"], n_seqs=ev["n_seqs"])
        assert g.mean_gate == pytest.approx(card["mean_gate"], abs=1e-4)
    if card.get("m_act") is not None:
        m = gatelens.measure.massive(loaded, seq_len=ev["seq_len"], n_seqs=ev["n_seqs"])
        assert m.m_act == pytest.approx(card["m_act"], rel=1e-4)
