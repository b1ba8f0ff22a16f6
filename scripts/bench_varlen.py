"""Issue 5's varlen measurement: `sageattn_varlen` on 8 sequences of random lengths in [1, 8K]
against per-sequence dense calls (output agreement) and against one dense call with the same
attention work (throughput), hd128 fp16.

    python scripts/bench_varlen.py [--heads 16] [--seed 0] [--causal] [--kernel auto] [--rounds 5]

Work of a varlen call: sum of L_i^2 (halved when causal); the dense call of the same work is one
sequence of N = sqrt(sum L_i^2) tokens. Throughput is reported in TOPS of that work, so "vs dense"
is the ratio of the two TOPS. Timed: the kernel path with the lengths on the GPU (the main number),
with CPU lengths (adds a host-to-device copy per call), and the loop of one dense call per
sequence (varlen.attend_packed, the interim implementation before the kernel path).
--rounds N times the varlen and the dense call alternately N times and reports the median of the
N ratios with their range: the dense call alone moved by ~3 % between runs on unchanged code
(docs/performance.md, session 22), as much as the distance of seed 2 from issue 5's 0.90.
"""

import argparse
import math
import statistics

import torch

import sageattention
from sageattention import _library, _profile, _timing


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--kernel", default="auto", choices=["auto", "sm80_mma", "sm90_wgmma", "sm90_wgmma_pv16"])
    parser.add_argument("--profile", action="store_true", help="also print the pre-pass / attention split (us)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time the varlen and the dense call alternately this many times (median ratio)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    gen = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(1, 8193, (8,), generator=gen).tolist()
    h, d = args.heads, 128
    total = sum(lengths)
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0).tolist()), dtype=torch.int32)
    cuda_gen = torch.Generator(device="cuda").manual_seed(args.seed)
    q, k, v = (torch.randn(total, h, d, device="cuda", dtype=torch.float16, generator=cuda_gen) for _ in range(3))

    cu_device = cu.cuda()
    bounds = cu.tolist()
    # The dense calls compared with run the kernel the packed call runs: "auto" on packed sequences
    # is sm90_wgmma on Hopper (src/api/plan.cpp), while short dense calls would get its 16-bit variant.
    dense_kernel = args.kernel
    if dense_kernel == "auto":
        hopper = torch.cuda.get_device_capability() == (9, 0) and "90a" in _library.load().compiled_archs
        dense_kernel = "sm90_wgmma" if hopper else "sm80_mma"

    def varlen(lengths_on=cu_device):
        return sageattention.sageattn_varlen(q, k, v, lengths_on, lengths_on, max(lengths), max(lengths),
                                             is_causal=args.causal, kernel=args.kernel)

    def per_sequence():
        return sageattention.varlen.attend_packed(q, k, v, bounds, bounds, args.causal, kernel=dense_kernel)

    out = varlen()
    dense_pieces = per_sequence()
    agreement = ((out.double() - dense_pieces.double()).abs().sum() / dense_pieces.double().abs().sum()).item()

    work = sum(length * length for length in lengths) * 4.0 * h * d / (2 if args.causal else 1)
    n = int(math.isqrt(sum(length * length for length in lengths)))
    qd, kd, vd = (torch.randn(1, h, n, d, device="cuda", dtype=torch.float16, generator=cuda_gen) for _ in range(3))
    dense_work = 4.0 * h * n * n * d / (2 if args.causal else 1)

    def dense():
        return sageattention.sageattn(qd, kd, vd, is_causal=args.causal, kernel=dense_kernel)

    rounds = []  # (varlen ms, dense ms) per round
    for _ in range(args.rounds):
        rounds.append((_timing.time_cuda(varlen)["median_ms"], _timing.time_cuda(dense)["median_ms"]))
    ratios = sorted(dense_ms / varlen_ms * work / dense_work for varlen_ms, dense_ms in rounds)
    varlen_ms = statistics.median(r[0] for r in rounds)
    dense_ms = statistics.median(r[1] for r in rounds)
    ratio = statistics.median(ratios)
    host_lengths_ms = _timing.time_cuda(lambda: varlen(cu))["median_ms"]
    loop_ms = _timing.time_cuda(per_sequence)["median_ms"]
    varlen_tops, dense_tops = work / varlen_ms / 1e9, dense_work / dense_ms / 1e9
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    print(f"lengths {lengths} (total {total}), H={h} D={d} fp16 causal={args.causal} kernel={args.kernel}")
    print(f"varlen vs per-sequence dense calls: relative L1 {agreement:.2e}")
    print(f"varlen {varlen_ms:.3f} ms = {varlen_tops:.1f} TOPS; dense N={n} {dense_ms:.3f} ms = {dense_tops:.1f} TOPS;"
          f" varlen / dense = {ratio:.3f}")
    if args.rounds > 1:
        print(f"  {args.rounds} alternating rounds: varlen / dense {', '.join(f'{r:.3f}' for r in ratios)} "
              f"(median {ratio:.3f}); varlen ms "
              f"{', '.join(f'{r[0]:.3f}' for r in rounds)}; dense ms {', '.join(f'{r[1]:.3f}' for r in rounds)}")
    if args.profile:
        for name, fn in (("varlen", varlen), ("dense", dense)):
            split = _profile.split_prepass(_profile.kernel_times(fn))
            print(f"  {name}: attention {split['attention_us']:.0f} us, pre-pass {split['prepass_us']:.0f} us "
                  f"({split['prepass_share']:.0%}; {_profile.prepass_kernels_text(split)}), "
                  f"{split['launches']:.0f} launches")
    print(f"with CPU lengths (copied per call): {host_lengths_ms:.3f} ms; one dense call per sequence: "
          f"{loop_ms:.3f} ms ({work / loop_ms / 1e9 / dense_tops:.2f} of dense)")


if __name__ == "__main__":
    with torch.no_grad():
        main()
