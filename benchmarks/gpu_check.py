"""Check gatelens' CUDA paths on a GPU node and measure what a pass costs there:

    python benchmarks/gpu_check.py --out DIR              # on a GPU node (about 5 minutes on an H200)
    python benchmarks/gpu_check.py --out DIR --device cpu # the same checks at small sizes, without a GPU

kernels  kernels.sdpa_with_lse against eager softmax in float64 on the same (rounded) inputs: float32, bfloat16,
         float16; causal, a padded batch and a sliding window that hides key 0; grouped-query attention (8 query
         heads over 2 KV heads); head dims 64, 128, 256; lengths 17, 1024, 4096. Max abs error of the output, the
         LSE and the weight on key 0 (what the sink metrics read), and which kernel ran (read off the ATen ops
         dispatched; `fallback` = public SDPA plus chunked_lse, with the fused op's error when it refused).
e2e      every standard metric (F-Attn, sink rate, M-Act, gate scores, rank, perplexity, per layer and head) of tiny
         random models (tests/factories.py, the random:tiny-qwen3 preset) and a zoo checkpoint, on the device in
         float32 and bfloat16 against CPU float32; CPU bfloat16 against CPU float32 is the control for what
         bfloat16 rounding alone moves.
bench    `gatelens bench random:qwen3-1.7b` and `random:qwen3.5-gated-1.7b` in bfloat16 at 4K and 32K tokens
         (GPU only).

Every part writes as it goes: DIR/gpu_check.json (all numbers) and DIR/gpu_check.md (the summary), the bench
payloads beside them. Parts that would not finish within --budget-s seconds are skipped and say so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))   # tests/factories.py: the suite's tiny random checkpoints
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from gatelens import kernels
from gatelens.kernels import expand_kv, key_weight, sdpa_with_lse

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Flag thresholds, max abs error against float64 on the same inputs (|v| ~ 1): a few units of the dtype's rounding
OUT_TOL = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 3e-3}
LSE_TOL = {"float32": 1e-4, "bfloat16": 2e-3, "float16": 2e-3}
FUSED = {"_scaled_dot_product_flash_attention": "flash", "_scaled_dot_product_efficient_attention": "efficient",
         "_scaled_dot_product_flash_attention_for_cpu": "cpu-flash"}


class Results:
    """Everything measured, rewritten to disk after each step so a run cut short leaves what it had."""

    def __init__(self, out: Path, budget: float):
        self.out, self.t0, self.budget = out, time.monotonic(), budget
        self.data: dict = {"environment": environment(), "kernels": [], "e2e": {}, "bench": {}, "skipped": [],
                           "errors": []}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def save(self) -> None:
        self.data["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=1, default=str))
        (self.out / "gpu_check.md").write_text(summary(self.data))

    def error(self, where: str, e: BaseException) -> None:
        self.data["errors"].append({"where": where, "error": f"{type(e).__name__}: {e}"[:500],
                                    "traceback": traceback.format_exc()[-2000:]})
        print(f"ERROR in {where}: {type(e).__name__}: {str(e)[:200]}", flush=True)
        self.save()


def environment() -> dict:
    import transformers

    import gatelens

    env = {"gatelens": str(Path(gatelens.__file__).parent), "python": platform.python_version(),
           "torch": torch.__version__, "transformers": transformers.__version__,
           "cuda": torch.version.cuda, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return env


# ---------------------------------------------------------------------------------------------------- kernels
class OpLog(TorchDispatchMode):
    """The ATen ops a call dispatches (names only)."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def path_taken(ops: list[str]) -> str:
    """chunked_lse's logsumexp means the public fallback ran (its SDPA may itself pick a fused kernel)."""
    if "logsumexp" in ops:
        return "fallback"
    fused = [FUSED[o] for o in ops if o in FUSED]
    return f"{fused[0]} x{len(fused)}" if fused else "unknown"


def make_case(kind: str, n: int, d: int, dtype: torch.dtype, device: str, seed: int = 0):
    """q [b, 8, n, d], k/v [b, 2, n, d] in `dtype`, and the mask / is_causal of the case."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    b = 2 if kind == "padded" else 1
    q = torch.randn(b, 8, n, d, generator=g) * 1.5
    k, v = torch.randn(b, 2, n, d, generator=g), torch.randn(b, 2, n, d, generator=g)
    q, k, v = (t.to(device=device, dtype=dtype) for t in (q, k, v))
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    if kind == "causal":
        return q, k, v, None, True
    if kind == "padded":             # sequence 1 ends at 2n/3 + 1 (right padding), as data.batches makes them
        mask = causal[None, None].repeat(2, 1, 1, 1)
        mask[1, :, :, 2 * n // 3 + 1:] = False
        return q, k, v, mask, False
    if kind == "window":             # a sliding window of 8 keys: key 0 hidden from queries 8 on
        return q, k, v, (causal & ~torch.ones_like(causal).tril(-8))[None, None], False
    raise KeyError(kind)


def eager(q, k, v, scale, mask, causal):
    """Output and LSE in float64 from the inputs as given (already rounded to their dtype)."""
    n_rep = q.shape[1] // k.shape[1]
    k, v = expand_kv(k, n_rep).double(), expand_kv(v, n_rep).double()
    s = (q.double() @ k.transpose(-1, -2)) * scale
    full = kernels.explicit_mask(mask, causal, q.shape[-2], k.shape[-2], q.device)
    s = s.masked_fill(~full, float("-inf"))
    lse = torch.logsumexp(s, -1)
    p = torch.exp(s - lse[..., None])
    return p @ v, lse, p[..., 0]


def cuda_ms(fn, reps: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def check_kernels(res: Results, device: str, dims, lengths) -> None:
    for dtype_name, dtype in DTYPES.items():
        for d in dims:
            for n in lengths:
                for kind in ("causal", "padded", "window"):
                    if res.left() < 0:
                        res.data["skipped"].append(f"kernels {dtype_name} d{d} n{n} {kind}: out of time")
                        continue
                    try:
                        res.data["kernels"].append(kernel_case(kind, n, d, dtype_name, dtype, device))
                    except Exception as e:  # noqa: BLE001 - a crashing case is a finding: record it, go on
                        res.error(f"kernels {dtype_name} d{d} n{n} {kind}", e)
            res.save()
        print(f"kernels {dtype_name}: done ({time.monotonic() - res.t0:.0f} s)", flush=True)


def kernel_case(kind, n, d, dtype_name, dtype, device) -> dict:
    q, k, v, mask, causal = make_case(kind, n, d, dtype, device)
    scale = d ** -0.5
    with OpLog() as log:
        out, lse = sdpa_with_lse(q, k, v, mask, is_causal=causal, scale=scale)
    ref_out, ref_lse, ref_w0 = eager(q, k, v, scale, mask, causal)
    n_rep = q.shape[1] // k.shape[1]
    mask0 = None if mask is None else mask[..., 0]
    if causal:  # key 0 is visible to every query
        w0 = key_weight(q, expand_kv(k, n_rep)[:, :, 0], lse, scale)
    else:
        w0 = key_weight(q, expand_kv(k, n_rep)[:, :, 0], lse, scale, mask0)
    row = {"dtype": dtype_name, "d": d, "n": n, "mask": kind, "path": path_taken(log.ops),
           "out_err": (out.double() - ref_out).abs().max().item(),
           "lse_err": (lse.double() - ref_lse).abs().max().item(),
           "w0_err": (w0.double() - ref_w0).abs().max().item(),
           "lse_dtype": str(lse.dtype).replace("torch.", ""), "finite": bool(out.isfinite().all())}
    row["flag"] = (row["out_err"] > OUT_TOL[dtype_name] or row["lse_err"] > LSE_TOL[dtype_name]
                   or row["w0_err"] > OUT_TOL[dtype_name] or not row["finite"] or row["lse_dtype"] != "float32")
    if row["path"] == "fallback" and device == "cuda":  # why the fused op refused: call it on one KV group
        kk, vv = (t[:, :1].expand(t.shape[0], n_rep, *t.shape[2:]) for t in (k, v))
        m = None if mask is None or mask.shape[1] == 1 else mask[:, :n_rep]
        try:
            kernels._cuda_lse_op(q[:, :n_rep], kk, vv, m, causal, scale)
            row["why"] = "the fused op ran when called alone"
        except Exception as e:  # noqa: BLE001
            row["why"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if device == "cuda" and mask is None and dtype != torch.float32:
        # a lead: can the flash op take GQA K/V in one call (FlashAttention-2 can), instead of one per KV group?
        flash = torch.ops.aten._scaled_dot_product_flash_attention
        try:
            res = flash(q, k, v, 0.0, causal, False, scale=scale)
            row["gqa_one_call_out_err"] = (res[0].double() - ref_out).abs().max().item()
            row["gqa_one_call_lse_err"] = (res[1].double() - ref_lse).abs().max().item()
            if n >= 1024:
                row["ms_gqa_one_call"] = cuda_ms(lambda: flash(q, k, v, 0.0, causal, False, scale=scale))
        except Exception as e:  # noqa: BLE001
            row["gqa_one_call"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if device == "cuda" and n >= 1024:  # cost against the public SDPA (the model's own bare attention)
        row["ms_lse"] = cuda_ms(lambda: sdpa_with_lse(q, k, v, mask, is_causal=causal, scale=scale))
        row["ms_sdpa"] = cuda_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                                        scale=scale, enable_gqa=True))
    return row


# ---------------------------------------------------------------------------------------------------- e2e
def leaves(x, path=""):
    """Numeric leaves of a nested dict / list: {path: float}."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from leaves(v, f"{path}[{i}]")
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield path, float(x)


DISCRETE = ("model", "provenance", "settings", "top", "tokens", "hist", "most_dormant", "sink_tokens",
            "top_key_tokens")


def continuous(path: str) -> bool:
    """Statistics, not rankings: top-k lists, per-token tables and histogram counts reorder when values move by a
    rounding step, so only per-layer / per-head statistics and model-level numbers are compared."""
    parts = path.replace("[", ".").split(".")
    return not any(p in DISCRETE for p in parts)


def differences(a: dict, ref: dict) -> dict:
    """Per metric: max abs and max relative difference of every numeric leaf, and where the largest are."""
    la, lr = dict(leaves(a)), dict(leaves(ref))
    per: dict[str, dict] = {}
    for p, r in lr.items():
        if p not in la or not continuous(p):
            continue
        x = la[p]
        metric = p.split(".", 1)[0].split("[", 1)[0]
        s = per.setdefault(metric, {"max_abs": 0.0, "at_abs": "", "max_rel": 0.0, "at_rel": "", "n": 0})
        s["n"] += 1
        if math.isnan(x) and math.isnan(r):
            continue
        diff = abs(x - r) if math.isfinite(x) and math.isfinite(r) else (0.0 if x == r else math.inf)
        rel = diff / max(abs(r), 1e-2)   # small fractions: relative to 0.01
        if diff > s["max_abs"]:
            s["max_abs"], s["at_abs"] = diff, p
        if rel > s["max_rel"] and diff > 1e-6:
            s["max_rel"], s["at_rel"] = rel, f"{p} ({x:.6g} vs {r:.6g})"
    return per


def headline(rep) -> dict:
    row = rep.row()
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def e2e_models(work: Path) -> dict:
    """name -> (spec, inputs kwargs). Random models read the shipped evaluation text; the zoo model its task."""
    import factories

    from gatelens.models import random as random_models

    return {
        "random-qwen3 (factories)": (str(factories.make_hf("qwen3", work / "qwen3")), {}),
        "random-qwen3-gated elementwise (factories)": (str(factories.make_paper("elementwise", work / "gated")), {}),
        "random:tiny-qwen3": (str(random_models.build_folder("tiny-qwen3", work / "tiny-qwen3", max_context=4096)),
                              {}),
        "zoo tiny-gated": ("tiny-gated", {}),
    }


def check_e2e(res: Results, device: str, work: Path) -> None:
    from gatelens.measure import Inputs, prepare_inputs, report
    from gatelens.models.load import load

    runs = [("cpu", "float32"), ("cpu", "bfloat16")]
    if device != "cpu":
        runs += [(device, "float32"), (device, "bfloat16")]
    for name, (spec, kw) in e2e_models(work).items():
        if res.left() < 30:
            res.data["skipped"].append(f"e2e {name}: out of time")
            continue
        entry = res.data["e2e"][name] = {"spec": spec if not spec.startswith("/") else Path(spec).name,
                                         "headline": {}, "vs_cpu_float32": {}}
        dicts = {}
        for dev, dt in runs:
            try:
                t = time.monotonic()
                loaded = load(spec, device=dev, dtype=dt)
                inputs = prepare_inputs(loaded, seq_len=256, n_seqs=8, **kw)
                if name == "random-qwen3 (factories)":  # unequal lengths, longest 251: padded batches, unaligned keys
                    ragged = [s[: 251 - 37 * (i % 4)] for i, s in enumerate(inputs.seqs)]
                    inputs = Inputs(ragged, inputs.source + " (ragged)", 256, True, 8)
                rep = report(loaded, inputs, batch_size=4)
                key = f"{dev} {dt}"
                dicts[key] = rep.to_dict()
                entry["headline"][key] = headline(rep)
                entry.setdefault("seconds", {})[key] = round(time.monotonic() - t, 2)
                del loaded
            except Exception as e:  # noqa: BLE001
                res.error(f"e2e {name} {dev} {dt}", e)
        ref = dicts.get("cpu float32")
        for key, d in dicts.items():
            if ref is not None and key != "cpu float32":
                entry["vs_cpu_float32"][key] = differences(d, ref)
        res.save()
        print(f"e2e {name}: done ({time.monotonic() - res.t0:.0f} s)", flush=True)


# ---------------------------------------------------------------------------------------------------- bench
def check_bench(res: Results, presets: list[str], lens: str, methods: str, device: str = "cuda") -> None:
    import gatelens

    root = str(Path(gatelens.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    for preset in presets:
        if res.left() < 120:
            res.data["skipped"].append(f"bench {preset}: out of time")
            continue
        folder = Path(tempfile.mkdtemp(prefix="gpucheck-bench-"))
        cmd = [sys.executable, "-m", "gatelens", "bench", f"random:{preset}", "--device", device, "--dtype",
               "bfloat16", "--seq-len", lens, "--methods", methods, "--out", str(folder / "out")]
        t = time.monotonic()
        try:  # cwd elsewhere: `python -m` puts the working directory first on sys.path
            p = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True,
                               timeout=res.left() + 20, check=False)
            entry = {"command": "gatelens " + " ".join(cmd[3:-2]), "rc": p.returncode,
                     "seconds": round(time.monotonic() - t, 1), "stderr_tail": p.stderr[-1500:]}
            payload = folder / "out" / "bench.json"
            if payload.exists():
                shutil.copy(payload, res.out / f"bench_{preset}.json")
                entry["rows"] = json.loads(payload.read_text())["rows"]
        except subprocess.TimeoutExpired as e:
            entry = {"command": " ".join(cmd), "rc": "timeout", "stderr_tail": str(e.stderr or "")[-1500:]}
        res.data["bench"][preset] = entry
        shutil.rmtree(folder, ignore_errors=True)
        res.save()
        print(f"bench {preset}: rc {entry['rc']} ({time.monotonic() - res.t0:.0f} s)", flush=True)


# ---------------------------------------------------------------------------------------------------- summary
def fmt(x, spec=".2g"):
    return "–" if x is None else format(x, spec) if isinstance(x, float) else str(x)


def summary(data: dict) -> str:
    env = data["environment"]
    lines = ["# gatelens GPU check", "", ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    if data["kernels"]:
        lines += ["## sdpa_with_lse against float64 eager (max abs error; GQA 8 query / 2 KV heads)", "",
                  ("| dtype | d | n | mask | path | out err | LSE err | key-0 weight err | sdpa_with_lse ms | SDPA ms "
                   "| flag |"),
                  "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|"]
        for r in data["kernels"]:
            lines.append(f"| {r['dtype']} | {r['d']} | {r['n']} | {r['mask']} | {r['path']} | {r['out_err']:.2e} | "
                         f"{r['lse_err']:.2e} | {r['w0_err']:.2e} | {fmt(r.get('ms_lse'), '.3f')} | "
                         f"{fmt(r.get('ms_sdpa'), '.3f')} | {'**FLAG**' if r['flag'] else ''} "
                         f"{r.get('why', '')} |")
        one = [r for r in data["kernels"] if "gqa_one_call_out_err" in r or "gqa_one_call" in r]
        if one:
            lines += ["", "Lead: the flash op called once on GQA K/V (2 KV heads for 8 query heads) instead of per KV group:",
                      "", "| dtype | d | n | out err | LSE err | one call ms | per group (sdpa_with_lse) ms | note |",
                      "|---|---:|---:|---:|---:|---:|---:|---|"]
            for r in one:
                lines.append(f"| {r['dtype']} | {r['d']} | {r['n']} | {fmt(r.get('gqa_one_call_out_err'), '.2e')} | "
                             f"{fmt(r.get('gqa_one_call_lse_err'), '.2e')} | {fmt(r.get('ms_gqa_one_call'), '.3f')} | "
                             f"{fmt(r.get('ms_lse'), '.3f')} | {r.get('gqa_one_call', '')} |")
    for name, e in data["e2e"].items():
        lines += ["", f"## {name}", "", "| run | " + " | ".join(next(iter(e["headline"].values()), {}).keys()) + " |"]
        lines.append("|---|" + "---:|" * len(next(iter(e["headline"].values()), {})))
        for run, h in e["headline"].items():
            lines.append(f"| {run} | " + " | ".join(fmt(v, ".5g") for v in h.values()) + " |")
        for run, per in e["vs_cpu_float32"].items():
            lines.append(f"\n{run} vs cpu float32, max abs / max rel difference per metric (every layer and head):")
            for metric, s in per.items():
                lines.append(f"- {metric}: {s['max_abs']:.3g} ({s['at_abs']}) / {s['max_rel']:.3g} ({s['at_rel']})")
    for preset, b in data["bench"].items():
        lines += ["", f"## bench {preset}: rc {b['rc']}, {b.get('seconds')} s", "", f"`{b['command']}`", "",
                  "| tokens | method | seconds | peak MiB | time / bare | mem / bare | note |",
                  "|---:|---|---:|---:|---:|---:|---|"]
        for r in b.get("rows", []):
            lines.append(f"| {r['seq_len']} | {r['method']} | {fmt(r['seconds'], '.4g')} | {fmt(r['peak_mb'], '.0f')} | "
                         f"{fmt(r['time_ratio'], '.3f')} | {fmt(r['mem_ratio'], '.3f')} | {r['note']} |")
        if not b.get("rows"):
            lines += ["```", b.get("stderr_tail", ""), "```"]
    for what in ("skipped", "errors"):
        if data[what]:
            lines += ["", f"## {what}", ""] + [f"- {x if isinstance(x, str) else x['where'] + ': ' + x['error']}"
                                              for x in data[what]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json / .md and the bench payloads")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cuda (default where there is one) or cpu (small sizes, no bench)")
    ap.add_argument("--parts", default="kernels,e2e,bench", help="comma list of kernels, e2e, bench")
    ap.add_argument("--budget-s", type=float, default=400, help="stop starting new work after this many seconds")
    ap.add_argument("--bench-presets", default="qwen3-1.7b,qwen3.5-gated-1.7b")
    ap.add_argument("--bench-seq-len", default="4096,32768")
    ap.add_argument("--bench-methods", default="bare,sink,massive,gates,norms,heads,all,eager",
                    help="gatelens bench --methods (tl_cache needs transformer-lens on the node)")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda asked for, but torch sees no CUDA GPU here; use --device cpu for the small check")
    parts = args.parts.split(",")
    res = Results(args.out, args.budget_s)
    res.data["settings"] = vars(args) | {"out": str(args.out)}
    cpu = args.device == "cpu"
    print(f"gpu_check on {res.data['environment'].get('gpu', 'cpu')}", flush=True)
    if "kernels" in parts:
        check_kernels(res, args.device, dims=(16, 64) if cpu else (64, 128, 256),
                      lengths=(17, 64) if cpu else (17, 1024, 4096))
    if "e2e" in parts:
        with tempfile.TemporaryDirectory(prefix="gpucheck-models-") as work:
            check_e2e(res, args.device, Path(work))
    if "bench" in parts:
        if cpu:
            res.data["skipped"].append("bench: GPU only (CPU numbers: benchmarks/run_cpu.py)")
        else:
            check_bench(res, args.bench_presets.split(","), args.bench_seq_len, args.bench_methods, args.device)
    res.save()
    flags = [r for r in res.data["kernels"] if r["flag"]]
    print(f"done in {time.monotonic() - res.t0:.0f} s: {len(res.data['kernels'])} kernel cases, {len(flags)} flagged, "
          f"{len(res.data['errors'])} errors; {args.out}/gpu_check.md", flush=True)


if __name__ == "__main__":
    main()
