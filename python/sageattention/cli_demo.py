"""`python -m sageattention demo`: one realistic call, timed and checked against float64.

The default workload looks like one attention layer of a video diffusion transformer: batch 1,
24 heads, 16K tokens, head dim 128, fp16. Inputs are Gaussian plus a per-channel bias on K (and a
smaller one on V), as real activations have; that bias is what K smoothing removes.

Without a CUDA GPU the demo says so and runs the library's CPU reference instead: the exact
float64 attention against the emulated 8-bit pipeline, on a small problem. That path needs only
numpy, not torch.
"""

import math

import numpy as np

from . import _library, reference
from ._metrics import error_metrics, format_metrics

K_BIAS_STD = 4.0  # per-channel K bias, in units of the K noise (real activations: a few units)
V_BIAS_STD = 1.0


def add_arguments(parser):
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=24)
    parser.add_argument("--seqlen", type=int, default=16384)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--dtype", choices=("fp16", "bf16"), default="fp16")
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--seed", type=int, default=0)


def _cuda_available():
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed, so no GPU can be used.")
        return False
    return torch.cuda.is_available()


def _gaussian_with_channel_bias(rng, shape):
    """q, k, v as numpy float32 arrays of shape [B, H, N, D] (the CPU path)."""
    b, h, n, d = shape
    q = rng.standard_normal(shape, dtype=np.float32)
    k = rng.standard_normal(shape, dtype=np.float32) + K_BIAS_STD * rng.standard_normal((1, h, 1, d), dtype=np.float32)
    v = rng.standard_normal(shape, dtype=np.float32) + V_BIAS_STD * rng.standard_normal((1, h, 1, d), dtype=np.float32)
    return q, k, v


def run_cpu(seed=0):
    """Exact vs emulated 8-bit pipeline on B=1, H=2, N=256, D=64 (fp16-representable inputs)."""
    shape = (1, 2, 256, 64)
    print("No CUDA GPU is available here, so the GPU kernels cannot run.")
    print("Running the library's CPU reference instead: exact float64 attention vs the emulated")
    print(f"8-bit pipeline (INT8 Q.K^T with K smoothing, fp16 P.V), shape [B, H, N, D] = {list(shape)}.")
    try:
        lib = _library.load()
    except _library.LibraryNotFoundError as exc:
        print(f"error: {exc}")
        return 1
    print(f"library {lib.version} ({lib.path}), kernels for sm {' '.join(lib.compiled_archs)}")
    rng = np.random.default_rng(seed)
    # Round to fp16 first: the emulation models fp16 inputs (the conversion to float32 is exact).
    q, k, v = (x.astype(np.float16) for x in _gaussian_with_channel_bias(rng, shape))
    ref_out, ref_lse = reference.attention_exact(q, k, v)
    fp16_out = ref_out.astype(np.float16)
    print(f"  {'fp16 rounding of the exact output':<38} {format_metrics(error_metrics(fp16_out, ref_out))}")
    for gran in ("per_thread", "per_warp"):
        for smooth in (True, False):
            out, lse = reference.attention_emulated(q, k, v, qk_quant_gran=gran, smooth_k=smooth)
            label = f"emulated {gran}, smooth_k={smooth}"
            lse_err = float(np.abs(lse - ref_lse).max())
            print(f"  {label:<38} {format_metrics(error_metrics(out, ref_out))}  lse max abs {lse_err:.2e}")
    return 0


def run_gpu(args):
    import torch
    import torch.nn.functional as F

    from ._metrics import attention_float64
    from ._timing import time_cuda
    from .core import sageattn

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    b, h, n, d = args.batch, args.heads, args.seqlen, args.head_dim
    gen = torch.Generator(device="cuda").manual_seed(args.seed)

    def randn(*shape):
        return torch.randn(*shape, device="cuda", dtype=torch.float32, generator=gen)

    q = randn(b, h, n, d).to(dtype)
    k = (randn(b, h, n, d) + K_BIAS_STD * randn(1, h, 1, d)).to(dtype)
    v = (randn(b, h, n, d) + V_BIAS_STD * randn(1, h, 1, d)).to(dtype)
    print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"workload: [B, H, N, D] = [{b}, {h}, {n}, {d}] {args.dtype}, causal={args.causal}, "
          f"Gaussian q/k/v with a per-channel K bias (std {K_BIAS_STD}) and V bias (std {V_BIAS_STD})")

    with torch.inference_mode():
        def run_sdpa():
            return F.scaled_dot_product_attention(q, k, v, is_causal=args.causal)

        def run_sage():
            return sageattn(q, k, v, tensor_layout="HND", is_causal=args.causal)

        try:
            sage_out = run_sage()
        except (RuntimeError, NotImplementedError, ValueError) as exc:
            print(f"sageattn failed: {exc}")
            return 1
        sdpa_out = run_sdpa()
        times = {"torch SDPA": time_cuda(run_sdpa), "sageattn": time_cuda(run_sage)}
        ref_out, _ = attention_float64(q, k, v, is_causal=args.causal)
        errors = {"torch SDPA": error_metrics(sdpa_out, ref_out), "sageattn": error_metrics(sage_out, ref_out)}

    flops = 4.0 * b * h * n * n * d * (0.5 if args.causal else 1.0)
    print(f"\n  {'method':<12} {'time':>10} {'TOPS':>8}   accuracy vs float64 reference")
    for name in ("torch SDPA", "sageattn"):
        ms = times[name]["median_ms"]
        print(f"  {name:<12} {ms:>8.3f}ms {flops / ms / 1e9:>8.1f}   {format_metrics(errors[name])}")
    speedup = times["torch SDPA"]["median_ms"] / times["sageattn"]["median_ms"]
    print(f"\nsageattn speed-up over torch SDPA: {speedup:.2f}x (median of "
          f"{times['sageattn']['iters']} timed calls each)")
    if not math.isfinite(errors["sageattn"]["cos"]):
        print("error: sageattn output is not finite")
        return 1
    return 0


def run(args):
    if not _cuda_available():
        return run_cpu(args.seed)
    return run_gpu(args)
