"""Benchmark: what a measuring pass costs against the model's own bare forward, in one process.

For each context length, on the same model and the same random token ids, it times (median of
repeats) and measures the peak memory of:
  bare       a forward through the model's SDPA path, no hooks (the practical limit)
  sink, massive, gates, all   gatelens passes (all = every metric fused in one forward)
  tl_cache   TransformerLens 4 `run_with_cache` on the same weights
  eager      transformers' eager attention with output_attentions=True
and reports ratios to `bare`. Peak memory: torch.cuda.max_memory_allocated on CUDA; on CPU the peak
resident set size above the level before the run, sampled every millisecond by a thread. On CPU that
thread would compete with the forward for cores, so CPU times come from runs without it and peaks from
separate runs with it (`measure="time"` / `"memory"` runs only one kind). The resident set follows live
memory only when glibc returns freed blocks (MALLOC_MMAP_THRESHOLD_=65536), which in turn makes every
large allocation a fresh mmap and slows the forward: benchmarks/run_cpu.py takes times and peaks in two
processes, each under the allocator setting that is honest for it.
Configurations whose n x n patterns would not fit in memory are skipped and say so.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import torch

from . import data
from .measure import run
from .metrics import Gates, Heads, Massive, Norms, Sink
from .models.load import Loaded

METHODS = ["bare", "sink", "massive", "gates", "norms", "heads", "all", "tl_cache", "eager"]


def machine() -> str:
    """The machine in words: CPU model and cores, or the GPU's name."""
    import os
    import platform

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"


@dataclass
class Row:
    model: str
    seq_len: int
    method: str
    seconds: float | None
    peak_mb: float | None
    tokens_per_s: float | None
    time_ratio: float | None = None
    mem_ratio: float | None = None
    note: str = ""


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed pages back so the next baseline is honest
    except OSError:
        pass


class PeakMemory:
    """Peak bytes above the starting level while the block runs (CUDA allocator or sampled RSS)."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def __enter__(self):
        _trim()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.top = self.base
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.is_set():
            self.top = max(self.top, self.proc.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self.top = max(self.top, self.proc.memory_info().rss)
            self.stop.set()
            self.thread.join()
            self.peak = self.top - self.base
        return False


def _once(fn: Callable[[], None], device: torch.device, memory: bool) -> tuple[float, float | None]:
    """Seconds of one run, and its peak MiB when `memory` (CUDA: always, the allocator's counter is free)."""
    if not memory and device.type != "cuda":
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t, None
    with PeakMemory(device) as mem:
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        secs = time.perf_counter() - t
    return secs, mem.peak / 2**20


def pattern_bytes(loaded: Loaded, n: int, batch: int) -> int:
    """Memory of one layer's full attention pattern in fp32."""
    return 4 * batch * loaded.info.n_heads * n * n


def default_budget(device: torch.device) -> float:
    """Bytes of n x n patterns a method may hold before it is skipped: half the free memory of the device the
    patterns live on (the GPU's for a CUDA model, not the host's)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] * 0.5
    return psutil.virtual_memory().available * 0.5


def held_patterns(loaded: Loaded, n: int, batch: int, method: str) -> int:
    """Pattern memory a method keeps alive: eager returns every layer's pattern (output_attentions), a
    TransformerLens cache keeps scores and pattern of every layer; gatelens keeps none."""
    layers = len(loaded.info.attention_layers)
    return {"eager": layers, "tl_cache": 2 * layers}.get(method, 0) * pattern_bytes(loaded, n, batch)


def bench(loaded: Loaded, seq_lens: list[int], *, batch: int = 1, repeats: int = 3, methods: list[str] | None = None,
          bridge=None, memory_budget: float | None = None, on_row: Callable[[Row], None] | None = None,
          measure: str = "both") -> list[Row]:
    """Run the benchmark; `bridge` is an optional TransformerBridge on the same weights.

    measure: "both", "time" (no memory sampling; peaks left empty) or "memory" (one sampled run per method;
    its seconds are reported but are not the timing to quote on CPU)."""
    if measure not in ("both", "time", "memory"):
        raise ValueError(f"measure must be both, time or memory, not {measure!r}")
    model = loaded.model
    device = model.get_input_embeddings().weight.device
    methods = list(methods or METHODS)
    if "bare" in methods:  # the baseline runs first so every ratio has it
        methods.remove("bare")
    methods.insert(0, "bare")
    if not loaded.info.gated:
        methods = [m for m in methods if m != "gates"]
    budget = memory_budget or default_budget(device)
    g = torch.Generator().manual_seed(0)
    rows: list[Row] = []
    for n in seq_lens:
        ids = torch.randint(0, loaded.info.vocab_size, (batch, n), generator=g)
        seqs = list(ids)

        def probes_pass(make):
            return lambda: run(loaded, data.batches(seqs, batch), make())

        fns = {
            "bare": lambda: _bare(model, ids, device),
            "sink": probes_pass(lambda: [Sink()]),
            "massive": probes_pass(lambda: [Massive()]),
            "gates": probes_pass(lambda: [Gates()]),
            "norms": probes_pass(lambda: [Norms()]),
            "heads": probes_pass(lambda: [Heads()]),
            "all": probes_pass(lambda: [Sink(), Massive()] + ([Gates()] if loaded.info.gated else [])),
            "tl_cache": lambda: _tl(bridge, ids, device),
            "eager": lambda: _eager(model, ids, device),
        }
        skip: dict[str, str] = {}
        for m in methods:
            need = held_patterns(loaded, n, batch, m)
            if need > budget:
                skip[m] = f"skipped: would hold {need / 2**30:.1f} GiB of n x n patterns"
            elif m == "tl_cache" and bridge is None:
                skip[m] = "skipped: TransformerLens does not wrap this model"
        runs = [m for m in methods if m not in skip]
        times: dict[str, list[float]] = {m: [] for m in runs}
        peaks: dict[str, list[float]] = {m: [] for m in runs}
        for m in list(runs):  # warm-up; a method that fails (out of memory) is reported, not retried
            try:
                fns[m]()
            except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
                skip[m] = f"failed: {str(e).splitlines()[0][:80]}"
                runs.remove(m)
            _trim()
        cuda = device.type == "cuda"
        timing = measure != "memory"
        # Round-robin, so drift of a shared machine hits every method alike. The methods that hold n x n patterns
        # allocate and free gigabytes, and `_trim` hands those pages back: they take a rotation of their own after
        # the bare forward and the gatelens passes, so that no timed pass follows their frees.
        rotations = [[m for m in runs if not held_patterns(loaded, n, batch, m)],
                     [m for m in runs if held_patterns(loaded, n, batch, m)]]
        for rotation in rotations:
            for _ in range(repeats if timing else 0):
                for m in rotation:
                    secs, peak = _once(fns[m], device, memory=cuda and measure != "time")
                    times[m].append(secs)
                    if peak is not None:
                        peaks[m].append(peak)
                    _trim()
        if measure == "memory" or (measure == "both" and not cuda):
            for m in runs:  # separate sampled runs: the sampling thread must not slow the timed ones
                secs, peak = _once(fns[m], device, memory=True)
                peaks[m].append(peak)
                if not timing:
                    times[m].append(secs)
                _trim()
        base: Row | None = None
        for m in methods:
            if m in skip:
                row = Row(loaded.info.spec, n, m, None, None, None, note=skip[m])
            else:
                secs = statistics.median(times[m])
                peak = statistics.median(peaks[m]) if peaks[m] else None
                row = Row(loaded.info.spec, n, m, secs, peak, batch * n / secs)
            if m == "bare":
                base = row
            if base is not None and base.seconds and row.seconds:
                row.time_ratio = row.seconds / base.seconds
                row.mem_ratio = row.peak_mb / base.peak_mb if row.peak_mb is not None and base.peak_mb else None
            rows.append(row)
            if on_row:
                on_row(row)
    if timing_problem(rows):  # rows already handed to on_row are the same objects: they change too
        for row in rows:
            row.time_ratio = 1.0 if row.method == "bare" and row.seconds else None
            row.note = "; ".join(filter(None, [row.note, "machine too noisy: no time ratio"]))
    return rows


def timing_problem(rows: list[Row]) -> str | None:
    """What makes the timings unusable, or None: a bare forward over more tokens cannot be faster than over
    fewer, so when its median time falls as the length grows the machine was too noisy for any ratio."""
    bare = sorted((r.seq_len, r.seconds) for r in rows if r.method == "bare" and r.seconds)
    for (n0, t0), (n1, t1) in zip(bare, bare[1:]):
        if t1 < t0:
            return (f"the machine was too noisy: the bare forward took {t0:.3g} s at {n0} tokens but {t1:.3g} s at "
                    f"{n1}; time ratios are not reported (rerun on a quiet machine)")
    return None


def _bare(model, ids, device):
    with torch.no_grad():
        model(input_ids=ids.to(device), use_cache=False)


def _eager(model, ids, device):
    impl = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            model(input_ids=ids.to(device), use_cache=False, output_attentions=True)
    finally:
        model.set_attn_implementation(impl)


def _tl(bridge, ids, device):
    with torch.no_grad():
        bridge.run_with_cache(ids.to(device))


def load_for_bench(model: str, lens: list[int], *, device: str = "cpu", dtype: str = "float32",
                   tl: bool = True) -> tuple[Loaded, object]:
    """The model of `gatelens bench` (a spec, or random:PRESET built with a context of the longest length) and,
    when `tl`, a TransformerLens bridge on the same weights (None, with a logged note, where it cannot wrap it)."""
    import logging

    from .models import random as random_models
    from .models.load import load

    log = logging.getLogger("gatelens")
    spec = str(random_models.build_folder(model.split(":", 1)[1], max_context=max(lens))) \
        if model.startswith("random:") else model
    loaded = load(spec, device=device, dtype=dtype)
    loaded.info.spec = model
    if max(lens) > (loaded.info.max_context or max(lens)):
        log.warning(f"lengths beyond the model's window ({loaded.info.max_context}) measure cost only")
    bridge = None
    if tl:
        try:
            bridge = loaded.bridge()
        except Exception as e:  # noqa: BLE001 - TransformerLens cannot wrap every model; the row says so
            log.warning(f"TransformerLens bridge unavailable ({str(e).splitlines()[0][:80]})")
    return loaded, bridge



def bench_files(model: str, loaded, rows: list, lens: list[int], *, batch_size: int, repeats: int, dtype: str,
                device: str) -> tuple:
    """`gatelens bench`'s table (one row per length and pass), its JSON with provenance and any timing problem (a
    machine too noisy for ratios), and the writer of both."""
    import pandas as pd

    from .report import provenance

    df = pd.DataFrame([vars(r) for r in rows])
    settings = {"model": model, "seq_lens": lens, "batch_size": batch_size, "repeats": repeats, "dtype": dtype,
                "device": device, "machine": machine()}
    payload = {"rows": df.to_dict(orient="records"), "provenance": provenance(settings, [loaded.info.to_dict()]),
               "timing_problem": timing_problem(rows)}
    return df, payload, lambda w: (w.table("bench", df), w.json("bench.json", payload))


VIEW_COLUMNS = {"seq_len": "tokens", "method": "method", "seconds": "seconds (median)", "time_ratio": "time / bare",
                "peak_mb": "peak MiB", "mem_ratio": "mem / bare", "tokens_per_s": "tokens/s", "note": "note"}
