"""Speed of masked calls (docs/design/masks.md): a random 50 % block mask, an all-True block mask, a
boolean causal mask, a key-padding mask and an all-True mask against the dense call, per kernel, with torch SDPA on the
same masks for reference. CUDA-event medians (sageattention._timing); one table per sequence length.

    python scripts/bench_masks.py [--seqlens 4096 8192 16384] [--batch 2] [--heads 16]
    python scripts/bench_masks.py --accuracy   # relative L1 against float64, the design's inputs

--accuracy: the accuracy table's shape (B=2, H=8, N=4096, fp16, design.md section 5) and its three
input distributions, masked by a boolean causal mask, a random 50 % block mask and an additive
relative-position bias, each against the float64 reference with the same mask.
"""

import argparse
import os
import sys

import torch
import torch.nn.functional as F

import sageattention
from sageattention import _profile, _timing


def _short(name):
    """A kernel's name without namespaces, template arguments and parameters."""
    return name.replace("(anonymous namespace)::", "").split("(")[0].split("<")[0].split("::")[-1]


def profile_line(fn):
    """Per-kernel GPU microseconds of one call (torch profiler, 5 calls)."""
    times = _profile.kernel_times(fn)
    return "  ".join(f"{_short(name)} {us:.0f}" for name, us, _ in sorted(times, key=lambda t: -t[1]))


def accuracy(kernels):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
    import torch_reference  # the tests' float64 attention, with masks

    b, h, n, d = 2, 8, 4096, 128
    gen = torch.Generator(device="cuda").manual_seed(1)

    def randn(*shape):
        return torch.randn(*shape, device="cuda", generator=gen)

    inputs = {}
    q, k, v = randn(b, h, n, d), randn(b, h, n, d), randn(b, h, n, d)
    inputs["gaussian"] = (q, k, v)
    inputs["k_bias"] = (q, k + 8.0 * randn(1, h, 1, d), v + 2.0 * randn(1, h, 1, d))
    q3, k3 = 3.0 * q, 3.0 * k
    channels = torch.arange(4, device="cuda") * (d // 4)
    q3[..., channels] *= 10.0
    k3[..., channels] += 20.0
    inputs["outlier"] = (q3, k3, v)
    pos = torch.arange(n, device="cuda")
    slopes = 2.0 ** -torch.arange(1, h + 1, device="cuda").view(h, 1, 1)
    masks = {
        "none": {},
        "bool causal": {"attn_mask": torch.ones(n, n, dtype=torch.bool, device="cuda").tril()},
        "block 50%": {"block_mask": torch.rand(b, h, n // 128, n // 128, device="cuda", generator=gen) < 0.5},
        "ALiBi bias": {"attn_mask": (-(slopes * (pos[:, None] - pos[None, :]).abs())).half().unsqueeze(0)},
    }
    print(f"\nrelative L1 against float64, B={b} H={h} N={n} D={d} fp16")
    print(f"{'kernel':<10} {'inputs':<9} " + " ".join(f"{name:>12}" for name in masks))
    for kernel in kernels:
        for kind, (q, k, v) in inputs.items():
            q, k, v = q.half(), k.half(), v.half()
            errors = []
            for kw in masks.values():
                dense = kw.get("attn_mask")
                if "block_mask" in kw:
                    dense = torch_reference.expand_block_mask(kw["block_mask"], n, n)
                ref, _ = torch_reference.attention(q, k, v, attn_mask=dense)
                out = sageattention.sageattn(q, k, v, kernel=kernel, **kw)
                errors.append(torch_reference.rel_l1(out, ref))
            print(f"{kernel:<10} {kind:<9} " + " ".join(f"{e:12.3e}" for e in errors))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqlens", type=int, nargs="+", default=[4096, 8192, 16384])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--kernels", nargs="+", default=["auto", "sm80_mma"])
    parser.add_argument("--no-sdpa", action="store_true")
    parser.add_argument("--accuracy", action="store_true", help="the accuracy table instead of timings")
    parser.add_argument("--profile", action="store_true", help="also print per-kernel times (us) of each case")
    args = parser.parse_args()
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    if args.accuracy:
        accuracy(args.kernels)
        return
    gen = torch.Generator(device="cuda").manual_seed(0)
    b, h, d = args.batch, args.heads, args.head_dim
    for n in args.seqlens:
        q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.float16, generator=gen) for _ in range(3))
        blocks = (n + 127) // 128
        block_mask = torch.rand(b, h, blocks, blocks, device="cuda", generator=gen) < 0.5
        kept = block_mask.float().mean().item()
        tril = torch.ones(n, n, dtype=torch.bool, device="cuda").tril()
        padding = torch.zeros(b, 1, 1, n, dtype=torch.float16, device="cuda")
        padding[..., n - n // 8:] = float("-inf")
        all_true = torch.ones(n, n, dtype=torch.bool, device="cuda")
        cases = [
            ("dense", {}),
            (f"block mask {kept:.0%} kept", {"block_mask": block_mask}),
            ("all-True block mask", {"block_mask": torch.ones_like(block_mask)}),
            ("is_causal", {"is_causal": True}),
            ("bool causal mask", {"attn_mask": tril}),
            ("padding mask 1/8", {"attn_mask": padding}),
            ("all-True bool mask", {"attn_mask": all_true}),
        ]
        flops = 4.0 * b * h * n * n * d
        print(f"\nB={b} H={h} N={n} D={d} fp16")
        print(f"{'method':<12} {'case':<24} {'ms':>9} {'vs dense':>9} {'dense-eq TOPS':>14}")
        for kernel in args.kernels:
            dense_ms = None
            for name, kw in cases:
                fn = lambda kw=kw: sageattention.sageattn(q, k, v, kernel=kernel, **kw)  # noqa: E731
                ms = _timing.time_cuda(fn)["median_ms"]
                dense_ms = dense_ms or ms
                print(f"{kernel:<12} {name:<24} {ms:9.3f} {dense_ms / ms:8.2f}x {flops / ms / 1e9:14.1f}")
                if args.profile:
                    print(f"{'':<12}   {profile_line(fn)}")
        if args.no_sdpa:
            continue
        sdpa_cases = [("dense", {}), ("is_causal", {"is_causal": True}), ("bool causal mask", {"attn_mask": tril})]
        dense_blocks = None
        if b * h * n * n <= 1 << 31:  # the block mask as a dense bool mask: 2 GB at most
            dense_blocks = block_mask.repeat_interleave(128, -2).repeat_interleave(128, -1)[..., :n, :n]
            sdpa_cases.insert(1, ("block mask as bool", {"attn_mask": dense_blocks}))
        dense_ms = None
        for name, kw in sdpa_cases:
            fn = lambda kw=kw: F.scaled_dot_product_attention(q, k, v, **kw)  # noqa: E731
            ms = _timing.time_cuda(fn)["median_ms"]
            dense_ms = dense_ms or ms
            print(f"{'sdpa':<12} {name:<24} {ms:9.3f} {dense_ms / ms:8.2f}x {flops / ms / 1e9:14.1f}")
        del dense_blocks
        torch.cuda.empty_cache()


if __name__ == "__main__":
    with torch.no_grad():
        main()
