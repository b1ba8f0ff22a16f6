"""`python -m sageattention bench`: the project's one speed benchmark (design.md section 6).

Sweeps head dim x causal x sequence length at a fixed batch and head count, and times, on the
same fresh random inputs and in one process:
  sage        our public `sageattn` call end to end (quantization and smoothing included),
  sdpa_flash  torch SDPA restricted to the FLASH_ATTENTION backend (FlashAttention-2),
  sdpa_cudnn  torch SDPA restricted to the CUDNN_ATTENTION backend.
A method this torch build or GPU lacks is reported as n/a with the reason, never as a crash.
TOPS = 4*B*H*N^2*d / t, halved when causal. Also prints sage's relative L1 against the first
SDPA method that ran, so numbers from a broken kernel cannot pass unnoticed.
"""

import contextlib
import json
import sys
import warnings

from . import _sysinfo

METHODS = ("sage", "sage_sm80", "sage_sm90", "sage_sm90_pv16", "sdpa_flash", "sdpa_cudnn")
DEFAULT_METHODS = ("sage", "sdpa_flash", "sdpa_cudnn")
# sageattn with a forced kernel (method name -> kernel=...), to compare kernels side by side.
_SAGE_KERNELS = {"sage": "auto", "sage_sm80": "sm80_mma", "sage_sm90": "sm90_wgmma",
                 "sage_sm90_pv16": "sm90_wgmma_pv16"}
_SDPA_BACKENDS = {"sdpa_flash": "FLASH_ATTENTION", "sdpa_cudnn": "CUDNN_ATTENTION"}


def add_arguments(parser):
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--seqlens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768])
    parser.add_argument("--causal", choices=("0", "1", "both"), default="both")
    parser.add_argument("--dtype", choices=("fp16", "bf16"), default="fp16")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", metavar="PATH", help="write every number (and the environment) here")
    parser.add_argument("--breakdown", action="store_true",
                        help="also profile the first sageattn method per shape: attention-kernel-only "
                             "TOPS, pre-pass share of the GPU time, launches per call")


class _Method:
    """How to call one method: a context entered around all its calls, and the call itself."""

    def __init__(self, name, call, context=contextlib.nullcontext, unavailable=None):
        self.name, self.call, self.context, self.unavailable = name, call, context, unavailable


def _make_methods(names):
    import torch.nn.functional as F

    from .core import sageattn

    methods = []
    for name in names:
        if name in _SAGE_KERNELS:
            methods.append(_Method(name, lambda q, k, v, causal, kernel=_SAGE_KERNELS[name]:
                                   sageattn(q, k, v, "HND", causal, kernel=kernel)))
            continue
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
        except ImportError:
            methods.append(_Method(name, None, unavailable="torch.nn.attention.sdpa_kernel is missing"))
            continue
        backend = getattr(SDPBackend, _SDPA_BACKENDS[name], None)
        if backend is None:
            methods.append(_Method(name, None, unavailable=f"SDPBackend.{_SDPA_BACKENDS[name]} is missing"))
            continue
        methods.append(_Method(
            name, lambda q, k, v, causal: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
            context=lambda backend=backend: sdpa_kernel([backend])))
    return methods


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def _measure(method, q, k, v, causal, warmup):
    """(timing dict, output) or raises with the reason the method cannot run this shape."""
    import torch

    from ._timing import time_cuda

    with method.context(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = method.call(q, k, v, causal)
        except RuntimeError as exc:
            # SDPA explains "No available kernel" only through warnings: keep the first one.
            why = "; ".join(str(w.message).splitlines()[0] for w in caught[:1])
            raise RuntimeError(f"{_first_line(exc)} {why}".strip()) from exc
        torch.cuda.synchronize()
        timing = time_cuda(lambda: method.call(q, k, v, causal), warmup=warmup)
    return timing, out


def _rel_l1(out, ref):
    diff = (out.float() - ref.float()).abs().sum()
    return (diff / ref.float().abs().sum()).item()


def _format_row(row, methods, baselines):
    cells = []
    for m in methods:
        r = row["methods"][m.name]
        cells.append(f"{r['tops']:>11.1f}" if "tops" in r else f"{'n/a':>11}")
    for b in baselines:
        s = row["speedup"].get(b)
        cells.append(f"{s:>9.2f}x" if s is not None else f"{'n/a':>10}")
    err = row.get("sage_rel_l1_vs_sdpa")
    cells.append(f"{err:>10.2e}" if err is not None else f"{'':>10}")
    return (f"{row['head_dim']:>4} {'yes' if row['causal'] else 'no':>6} {row['seqlen']:>6} |"
            + "".join(cells[:len(methods)]) + " |" + "".join(cells[len(methods):]))


def run(args):
    try:
        import torch
    except ImportError:
        print("bench needs PyTorch with a CUDA GPU; torch is not installed.", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("bench needs a CUDA GPU and none is available here (torch.cuda.is_available() is "
              "False). Run `python -m sageattention demo` for the CPU reference check.", file=sys.stderr)
        return 2

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    causal_values = {"0": [False], "1": [True], "both": [False, True]}[args.causal]
    env = _sysinfo.collect(torch.cuda.current_device())
    methods = _make_methods(args.methods)
    baselines = [m.name for m in methods if m.name not in _SAGE_KERNELS]

    print("sageattention bench")
    print(_sysinfo.format_header(env))
    print(f"  batch {args.batch}, heads {args.heads}, {args.dtype}, HND; TOPS = 4*B*H*N^2*d/t "
          "(halved when causal); median of CUDA-event times over >= 10 calls (>= 3 above 50 ms)")
    for m in methods:
        if m.unavailable:
            print(f"  {m.name}: n/a ({m.unavailable})")
    print()
    header = (f"{'hd':>4} {'causal':>6} {'N':>6} |" + "".join(f"{m.name:>11}" for m in methods) + " |"
              + "".join(f"{'vs ' + b.replace('sdpa_', ''):>10}" for b in baselines) + f"{'sage err':>10}")
    print(header + "\n" + "-" * len(header), flush=True)

    rows = []
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.inference_mode():
        for head_dim in args.head_dims:
            for causal in causal_values:
                for n in args.seqlens:
                    rows.append(_bench_shape(args, methods, baselines, dtype, head_dim, causal, n, gen))
                    print(_format_row(rows[-1], methods, baselines), flush=True)
                    if args.breakdown:
                        print(_breakdown_row(args, methods, rows[-1], dtype, gen), flush=True)

    notes = sorted({f"{name}: {r['error']}" for row in rows for name, r in row["methods"].items()
                    if "error" in r})
    if notes:
        print("\nn/a reasons:\n" + "\n".join(f"  {n}" for n in notes))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "config": vars(args), "results": rows}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


def _breakdown_row(args, methods, row, dtype, gen):
    """Profiles the first sageattn method on this shape; stores the split in row["breakdown"]."""
    import torch

    from ._profile import kernel_times, prepass_kernels_text, split_prepass

    sage = next((m for m in methods if m.name in _SAGE_KERNELS and not m.unavailable), None)
    if sage is None:
        return "       (no sageattn method to break down)"
    b, h, n, d = args.batch, args.heads, row["seqlen"], row["head_dim"]
    q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=dtype, generator=gen) for _ in range(3))
    split = split_prepass(kernel_times(lambda: sage.call(q, k, v, row["causal"])))
    row["breakdown"] = split
    flops = 4.0 * b * h * n * n * d * (0.5 if row["causal"] else 1.0)
    kernel_tops = flops / (split["attention_us"] * 1e-6) / 1e12 if split["attention_us"] > 0 else float("nan")
    return (f"       {sage.name}: attention kernel alone {kernel_tops:.1f} TOPS; pre-pass "
            f"{split['prepass_us']:.0f} us = {split['prepass_share']:.1%} of {split['total_us']:.0f} us GPU "
            f"time ({prepass_kernels_text(split, 'no pre-pass kernel')}); {split['launches']:.0f} launches per call")


def _bench_shape(args, methods, baselines, dtype, head_dim, causal, n, gen):
    import torch

    b, h = args.batch, args.heads
    # Fresh random inputs per shape (never zeros: zero inputs can take faster paths in hardware).
    q, k, v = (torch.randn(b, h, n, head_dim, device="cuda", dtype=dtype, generator=gen) for _ in range(3))
    flops = 4.0 * b * h * n * n * head_dim * (0.5 if causal else 1.0)
    row = {"batch": b, "heads": h, "head_dim": head_dim, "seqlen": n, "causal": causal,
           "dtype": args.dtype, "methods": {}, "speedup": {}}
    outputs = {}
    for m in methods:
        if m.unavailable:
            row["methods"][m.name] = {"error": m.unavailable}
            continue
        try:
            timing, outputs[m.name] = _measure(m, q, k, v, causal, args.warmup)
        except (RuntimeError, NotImplementedError, ValueError) as exc:
            row["methods"][m.name] = {"error": _first_line(exc)}
            torch.cuda.empty_cache()
            continue
        ms = timing["median_ms"]
        row["methods"][m.name] = {"ms": ms, "tops": flops / ms / 1e9, "min_ms": timing["min_ms"],
                                  "iters": timing["iters"]}
    # Speed-ups and the error column are for the first sageattn method listed; the JSON keeps the
    # error of every sageattn method.
    sage_name = next((m.name for m in methods if m.name in _SAGE_KERNELS), None)
    sage = row["methods"].get(sage_name, {})
    for name in baselines:
        other = row["methods"][name]
        if "ms" in sage and "ms" in other:
            row["speedup"][name] = other["ms"] / sage["ms"]
    reference_name = next((name for name in baselines if name in outputs), None)
    if reference_name is not None:
        row["rel_l1_vs_sdpa"] = {name: _rel_l1(out, outputs[reference_name])
                                 for name, out in outputs.items() if name in _SAGE_KERNELS}
        if sage_name in outputs:
            row["sage_rel_l1_vs_sdpa"] = row["rel_l1_vs_sdpa"][sage_name]
    del outputs, q, k, v
    return row
