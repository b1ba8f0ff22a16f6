"""Small calls of every kernel path, for compute-sanitizer (scripts/gpu_check.sh, step `sanitize`):
memcheck finds out-of-bounds or misaligned accesses, racecheck shared-memory hazards. Shapes are
small (the tools slow kernels down 10-100x) but cover tails, GQA, causal, packed sequences, masks,
head dims 64-256, both P.V types and CTAs that run several items. Exits non-zero on a non-finite output.

    compute-sanitizer --tool memcheck --error-exitcode 1 python3 scripts/sanitize_calls.py
"""

import sys

import torch

from sageattention import sageattn, sageattn_varlen


def main():
    gen = torch.Generator(device="cuda").manual_seed(0)
    bad = []

    def check(name, out):
        torch.cuda.synchronize()
        if not torch.isfinite(out.float()).all():
            bad.append(name)
        print(f"{name}: ok", flush=True)

    def randn(*shape, dtype=torch.float16):
        return torch.randn(*shape, device="cuda", dtype=dtype, generator=gen)

    kernels = ["auto", "sm80_mma"]
    if torch.cuda.get_device_capability() == (9, 0):
        kernels += ["sm90_wgmma", "sm90_wgmma_pv16"]
    for kernel in kernels:
        for head_dim in (64, 96, 128, 256):
            if kernel == "sm90_wgmma_pv16" and head_dim > 128:  # sm90_wgmma: the native 256
                continue
            for causal in (False, True):
                q, k, v = randn(1, 4, 333, head_dim), randn(1, 2, 461, head_dim), randn(1, 2, 461, head_dim)
                check(f"{kernel} d={head_dim} causal={causal}", sageattn(q, k, v, is_causal=causal, kernel=kernel))
        q, k, v = randn(2, 4, 257, 128, dtype=torch.bfloat16), randn(2, 4, 300, 128, dtype=torch.bfloat16), \
            randn(2, 4, 300, 128, dtype=torch.bfloat16)
        keep = torch.rand(2, 4, 257, 300, device="cuda", generator=gen) < 0.7
        check(f"{kernel} bool mask", sageattn(q, k, v, attn_mask=keep, kernel=kernel))
        blocks = torch.rand(2, 4, 3, 3, device="cuda", generator=gen) < 0.5
        check(f"{kernel} block mask", sageattn(q, k, v, block_mask=blocks, kernel=kernel))
        if kernel != "sm90_wgmma_pv16":  # masks at head dim 256 (sm90_wgmma: the native 256)
            q, k, v = randn(1, 2, 257, 256), randn(1, 2, 300, 256), randn(1, 2, 300, 256)
            keep = torch.rand(1, 2, 257, 300, device="cuda", generator=gen) < 0.7
            check(f"{kernel} bool mask d=256", sageattn(q, k, v, attn_mask=keep, is_causal=True, kernel=kernel))
            bias = torch.randn(1, 2, 257, 300, device="cuda", generator=gen, dtype=torch.float16)
            check(f"{kernel} additive mask d=256", sageattn(q, k, v, attn_mask=bias, block_mask=blocks[:1, :2],
                                                            kernel=kernel))
        # More items than SMs: persistent CTAs run several items (the work queue, the next item's
        # Q prefetch, K/V tiles numbered across items).
        # Head dims 64 and 256 too: sm90_wgmma runs its native instantiations there.
        for head_dim in (128, 64) + ((256,) if kernel != "sm90_wgmma_pv16" else ()):
            q, k, v = randn(1, 160, 300, head_dim), randn(1, 80, 300, head_dim), randn(1, 80, 300, head_dim)
            check(f"{kernel} many items d={head_dim}", sageattn(q, k, v, is_causal=True, kernel=kernel))
            lengths = [0, 129, 1, 300, 77]
            cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32, device="cuda")
            total = sum(lengths)
            q, k, v = randn(total, 4, head_dim), randn(total, 2, head_dim), randn(total, 2, head_dim)
            out = sageattn_varlen(q, k, v, cu, cu, max(lengths), max(lengths), is_causal=True, kernel=kernel)
            check(f"{kernel} varlen d={head_dim}", out)
        # From 512 keys the FP8 V scale comes from a sample; a head with a V token beyond it takes
        # the exact path (quant/v_fp8.cuh: the per-head counters, the last tile's re-quantization).
        # Keys 500-503 hold 3 or 4 keys the sample (one in 4 at 1100 keys) skips.
        for head_dim in (128,) + ((256,) if kernel != "sm90_wgmma_pv16" else ()):
            q, k, v = randn(1, 4, 130, head_dim), randn(1, 2, 1100, head_dim), randn(1, 2, 1100, head_dim)
            v[0, 1, 500:504] = 100.0
            check(f"{kernel} V beyond the sample d={head_dim}", sageattn(q, k, v, kernel=kernel))
            lengths = [1100, 0, 600]
            cu = torch.tensor([0, 1100, 1100, 1700], dtype=torch.int32, device="cuda")
            q, k, v = randn(1700, 4, head_dim), randn(1700, 2, head_dim), randn(1700, 2, head_dim)
            v[500:504, 1] = 100.0
            v[1300:1304, 0] = -100.0
            out = sageattn_varlen(q, k, v, cu, cu, max(lengths), max(lengths), kernel=kernel)
            check(f"{kernel} varlen V beyond the sample d={head_dim}", out)
    if bad:
        print("non-finite outputs:", ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
