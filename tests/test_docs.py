"""docs/architecture.md's worked example runs as written: a new metric is one module plus one registry line."""

import re
import types
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

import gatelens
from factories import TEXT
from gatelens import metrics

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def _example_module():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    module = types.ModuleType("gatelens.metrics.entropy")
    module.__package__ = "gatelens.metrics"
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    return module


def test_worked_example_metric_matches_eager_pattern_and_joins_the_registry(tiny_dir, monkeypatch):
    entropy = _example_module()
    folder = tiny_dir("llama")
    loaded = gatelens.load(str(folder))
    inputs = gatelens.prepare_inputs(loaded, text=TEXT, seq_len=40, n_seqs=3)
    got = gatelens.measure.run_probes(loaded, [entropy.Entropy()], inputs, batch_size=2)[0]
    ref = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        patterns = ref(torch.stack(inputs.seqs), output_attentions=True).attentions
    for ly, p in zip(got.layers, patterns):
        want = -(p * p.clamp(min=1e-30).log()).sum(-1).mean((0, 2))                   # [head]
        torch.testing.assert_close(torch.tensor(ly.heads["entropy"], dtype=torch.float64), want.double(), atol=1e-5, rtol=0)
    monkeypatch.setitem(metrics.METRICS, "entropy", entropy.Entropy)                  # the registry line
    standard = gatelens.measure.standard_metrics(loaded, inputs, batch_size=2)
    assert standard.entropy.overall("entropy") == got.overall("entropy")
    assert standard.row()["entropy"] == got.overall("entropy")
