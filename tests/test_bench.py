"""`gatelens bench --quick` runs in CI and prints the ratios (no thresholds: timings belong to benchmarks)."""

import json

import pytest
from typer.testing import CliRunner

from gatelens.cli import app

pytestmark = pytest.mark.slow  # trains, runs notebooks or analyses, or starts processes: not in the quick tier


def test_bench_quick_reports_every_method_with_ratios(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--quick", "--json", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    methods = {row["method"] for row in rows}
    assert {"bare", "sink", "massive", "all", "tl_cache", "eager"} <= methods
    for row in rows:
        if row["method"] == "bare":
            assert row["time_ratio"] == 1.0
        elif not row["note"]:
            assert row["time_ratio"] > 0 and row["peak_mb"] is not None
    assert (tmp_path / "bench.csv").exists()


def test_bench_prints_its_table(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--quick", "--methods", "bare,sink", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "gatelens bench" in r.stdout and "sink" in r.stdout and "wrote 3 files" in r.stdout


def test_time_and_memory_can_be_measured_apart(tiny_dir):
    import gatelens
    from gatelens.bench import bench

    loaded = gatelens.load(str(tiny_dir("qwen3_5")))
    timed = bench(loaded, [32], repeats=2, methods=["bare", "gates"], measure="time")
    assert [r.method for r in timed] == ["bare", "gates"]
    assert all(r.seconds > 0 and r.peak_mb is None and r.mem_ratio is None for r in timed)
    sampled = bench(loaded, [32], repeats=2, methods=["bare", "gates"], measure="memory")
    assert all(r.peak_mb is not None for r in sampled)


def test_inconsistent_bare_timings_report_no_ratios():
    from gatelens.bench import Row, timing_problem

    quiet = [Row("m", 256, "bare", 1.0, None, 256.0), Row("m", 1024, "bare", 3.0, None, 341.0)]
    assert timing_problem(quiet) is None
    noisy = [Row("m", 256, "bare", 2.0, None, 128.0), Row("m", 1024, "bare", 1.5, None, 683.0)]
    assert "too noisy" in timing_problem(noisy) and "2 s at 256 tokens but 1.5 s at 1024" in timing_problem(noisy)


def test_bench_drops_time_ratios_when_the_machine_was_too_noisy(monkeypatch, tiny_dir):
    import gatelens
    from gatelens import bench

    seconds = iter([5.0, 5.0, 1.0, 1.0])   # bare and sink at 8 tokens, then at 16: the longer run is faster
    monkeypatch.setattr(bench, "_once", lambda fn, device, memory: (fn(), next(seconds), None)[1:])
    rows = bench.bench(gatelens.load(str(tiny_dir("qwen3"))), [8, 16], repeats=1, methods=["bare", "sink"],
                       measure="time")
    assert all(r.time_ratio is None for r in rows if r.method != "bare")
    assert all("too noisy" in r.note for r in rows)


def _gpu_check():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["causal", "padded", "window"])
def test_gpu_check_kernel_cases_run_on_cpu_and_name_the_kernel(kind):
    """benchmarks/gpu_check.py, the script for GPU nodes, runs its kernel cases on CPU too: errors within its
    thresholds, the fused CPU kernel named, and a fallback recognised as one."""
    import torch

    gc = _gpu_check()
    row = gc.kernel_case(kind, 33, 16, "bfloat16", torch.bfloat16, "cpu")
    assert row["path"] == "cpu-flash x1" and not row["flag"] and row["lse_dtype"] == "float32"
    assert 0 < row["out_err"] < gc.OUT_TOL["bfloat16"] and row["lse_err"] < gc.LSE_TOL["bfloat16"]
    q, k, v, mask, causal = gc.make_case(kind, 33, 16, torch.float32, "cpu")
    with gc.OpLog() as log:
        gc.sdpa_with_lse(q, k, v, mask, is_causal=causal, force_fallback=True)
    assert gc.path_taken(log.ops) == "fallback"


def test_gpu_check_compares_statistics_not_rankings():
    gc = _gpu_check()
    ref = {"sink": {"f_attn": 0.5, "layers": [{"f_attn": 0.2, "top": [{"pos": 3}]}]}, "model": {"n_layers": 2}}
    run = {"sink": {"f_attn": 0.5, "layers": [{"f_attn": 0.25, "top": [{"pos": 7}]}]}, "model": {"n_layers": 3}}
    diff = gc.differences(run, ref)
    assert set(diff) == {"sink"} and diff["sink"]["n"] == 2
    assert diff["sink"]["max_abs"] == pytest.approx(0.05) and diff["sink"]["at_abs"] == "sink.layers[0].f_attn"


def test_pattern_budget_is_the_memory_of_the_device_holding_the_patterns(monkeypatch):
    """On CUDA the n x n patterns of eager / TransformerLens live on the GPU: its free memory decides the skip."""
    import torch

    from gatelens import bench

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 80 * 2**30))
    assert bench.default_budget(torch.device("cuda", 0)) == 4 * 2**30
    assert bench.default_budget(torch.device("cpu")) == pytest.approx(bench.psutil.virtual_memory().available * 0.5,
                                                                       rel=0.2)
