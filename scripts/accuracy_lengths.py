"""Relative L1 against float64 over sequence lengths, for the design's three distributions
(scripts/smoke.py), plus a signed error that a systematic shrink of O (e.g. truncating
accumulation) would show: mean((o - ref) * sign(ref)) / mean|ref|. Development tool (GPU machine).

    python scripts/accuracy_lengths.py [kernel]          # default sm90_wgmma
    SAGEATTN_LIBRARY=/tmp/variants/x/libsageattn.so PYTHONPATH=python python scripts/accuracy_lengths.py
"""

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smoke import make_distribution, reference, rel_l1  # noqa: E402

import sageattention  # noqa: E402


def main(kernel):
    # (batch, heads, tokens): the float64 reference holds B * H * N^2 doubles twice.
    for b, h, n in [(2, 8, 4096), (1, 2, 16384), (1, 1, 32768)]:
        for kind in ("gaussian", "k_bias", "outlier"):
            torch.manual_seed(1)
            q, k, v = make_distribution(kind, b, h, n, 128)
            ref, _ = reference(q, k, v, False, 1.0 / math.sqrt(128))
            out = sageattention.sageattn(q, k, v, kernel=kernel)
            signed = ((out.double() - ref) * ref.sign()).mean().item() / ref.abs().mean().item()
            print(f"n{n:6d} b{b} h{h} {kind:9s} relL1 {rel_l1(out, ref):.4e}  signed {signed:+.2e}", flush=True)
            del ref, out
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sm90_wgmma")
