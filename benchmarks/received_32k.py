"""Issue 15 acceptance: attention received per key at 32K tokens on a tiny model vs the bare SDPA forward.

    python benchmarks/received_32k.py [N] [MODEL]     # default 32768 tokens, tiny-baseline (zoo)

Targets: peak memory within 1.1x of the bare forward, time within 2.5x (the exact column sums cost one more
attention-sized matmul: the logits are recomputed tile by tile from the LSE). Times and peaks come from two
processes, as in benchmarks/run_cpu.py: times under glibc's default allocator without a sampling thread, peaks
with MALLOC_MMAP_THRESHOLD_=65536 so the resident set follows live memory (see gatelens.bench).
"""

import json
import os
import statistics
import subprocess
import sys

import torch

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def part(kind: str, n: int, spec: str, repeats: int) -> dict:
    import gatelens
    from gatelens import data
    from gatelens.bench import _bare, _once, _trim
    from gatelens.measure import run
    from gatelens.metrics.received import Received
    from gatelens.metrics.sink import Sink

    loaded = gatelens.load(spec)
    tiled = Received()
    tiled.fused = False   # the path masks, sliding windows and soft caps take
    ids = torch.randint(0, loaded.info.vocab_size, (1, n), generator=torch.Generator().manual_seed(0))
    fns = {"bare": lambda: _bare(loaded.model, ids, torch.device("cpu")),
           "sink": lambda: run(loaded, data.batches(list(ids), 1), [Sink()]),
           "received": lambda: run(loaded, data.batches(list(ids), 1), [Received()]),
           "tiles": lambda: run(loaded, data.batches(list(ids), 1), [tiled])}
    for fn in fns.values():  # warm-up
        fn()
        _trim()
    out = {m: [] for m in fns}
    for _ in range(repeats):  # round-robin: drift of a shared machine hits every method alike
        for m, fn in fns.items():
            secs, peak = _once(fn, torch.device("cpu"), memory=kind == "memory")
            out[m].append(peak if kind == "memory" else secs)
            _trim()
    return {m: statistics.median(v) for m, v in out.items()}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--part":
        _, _, kind, n, spec, repeats = sys.argv
        print(json.dumps(part(kind, int(n), spec, int(repeats))))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 32768
    spec = sys.argv[2] if len(sys.argv) > 2 else "tiny-baseline"
    res = {}
    for kind, env, repeats in (("time", {}, 3), ("memory", MALLOC_ENV, 1)):
        p = subprocess.run([sys.executable, __file__, "--part", kind, str(n), spec, str(repeats)],
                           env={**os.environ, **env}, capture_output=True, text=True, check=True)
        res[kind] = json.loads(p.stdout.strip().splitlines()[-1])
    from gatelens.bench import machine

    t, m = res["time"], res["memory"]
    print(f"machine: {machine()}; model: {spec}; {n} tokens, batch 1, fp32; time: median of 3, peak: 1 sampled run")
    for name in ("bare", "sink", "received", "tiles"):
        print(f"{name:9s}: {t[name]:7.2f} s  peak {m[name]:8.1f} MiB  -> {t[name] / t['bare']:.2f}x time, "
              f"{m[name] / m['bare']:.2f}x memory" + ("  (targets: <= 2.5x time, <= 1.1x memory)"
                                                       if name == "received" else "  (received, LSE tiles forced)" if name == "tiles" else ""))


if __name__ == "__main__":
    main()
