"""Issue 5's varlen measurement: `sageattn_varlen` on 8 sequences of random lengths in [1, 8K]
against per-sequence dense calls (output agreement) and against one dense call with the same
attention work (throughput), hd128 fp16.

    python scripts/bench_varlen.py [--heads 16] [--seed 0] [--causal]

Work of a varlen call: sum of L_i^2 (halved when causal); the dense call of the same work is one
sequence of N = sqrt(sum L_i^2) tokens. Throughput is reported in TOPS of that work, so "vs dense"
is the ratio of the two TOPS. The lengths are passed as CPU tensors (the interim implementation
reads them on the host), and once more as CUDA tensors (one synchronizing copy per call).
"""

import argparse
import math

import torch

import sageattention
from sageattention import _timing


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--causal", action="store_true")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(1, 8193, (8,), generator=gen).tolist()
    h, d = args.heads, 128
    total = sum(lengths)
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0).tolist()), dtype=torch.int32)
    cuda_gen = torch.Generator(device="cuda").manual_seed(args.seed)
    q, k, v = (torch.randn(total, h, d, device="cuda", dtype=torch.float16, generator=cuda_gen) for _ in range(3))

    cu_device = cu.cuda()

    def varlen(lengths_on=cu):
        return sageattention.sageattn_varlen(q, k, v, lengths_on, lengths_on, max(lengths), max(lengths),
                                             is_causal=args.causal)

    out = varlen()
    pieces = [sageattention.sageattn(q[a:b].unsqueeze(0), k[a:b].unsqueeze(0), v[a:b].unsqueeze(0), "NHD",
                                     args.causal).squeeze(0) for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())]
    dense_pieces = torch.cat(pieces)
    agreement = ((out.double() - dense_pieces.double()).abs().sum() / dense_pieces.double().abs().sum()).item()

    work = sum(length * length for length in lengths) * 4.0 * h * d / (2 if args.causal else 1)
    n = int(math.isqrt(sum(length * length for length in lengths)))
    qd, kd, vd = (torch.randn(1, h, n, d, device="cuda", dtype=torch.float16, generator=cuda_gen) for _ in range(3))
    dense_work = 4.0 * h * n * n * d / (2 if args.causal else 1)
    varlen_ms = _timing.time_cuda(varlen)["median_ms"]
    device_lengths_ms = _timing.time_cuda(lambda: varlen(cu_device))["median_ms"]
    dense_ms = _timing.time_cuda(lambda: sageattention.sageattn(qd, kd, vd, is_causal=args.causal))["median_ms"]
    varlen_tops, dense_tops = work / varlen_ms / 1e9, dense_work / dense_ms / 1e9
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    print(f"lengths {lengths} (total {total}), H={h} D={d} fp16 causal={args.causal}")
    print(f"varlen vs per-sequence dense calls: relative L1 {agreement:.2e}")
    print(f"varlen {varlen_ms:.3f} ms = {varlen_tops:.1f} TOPS; dense N={n} {dense_ms:.3f} ms = {dense_tops:.1f} TOPS;"
          f" varlen / dense = {varlen_tops / dense_tops:.2f}")
    print(f"with the lengths on the GPU (one synchronizing copy per call): {device_lengths_ms:.3f} ms")


if __name__ == "__main__":
    with torch.no_grad():
        main()
