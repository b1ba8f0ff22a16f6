"""Checks that the PTX embedded in the library runs and computes the same attention as its SASS.

GPUs newer than every SASS target (Blackwell and later) get the portable kernels only by the
driver JIT-compiling the embedded compute_90 PTX (docs/wheels.md). No such GPU is at hand, so the
PTX path is forced on the GPU we have: with CUDA_FORCE_PTX_JIT=1 the driver ignores all SASS. The
check runs the portable kernel in two child processes, one on SASS and one forced onto PTX, and
compares both with a float64 reference and with each other.

Torch's own kernels may lack PTX for this GPU, so the forced child launches none: inputs are made
on the CPU and copied over, and the op only allocates through torch. Negative control: in the
forced child the sm90a-only kernel, which has no PTX on purpose, must fail to launch; if it runs,
the driver did not honour CUDA_FORCE_PTX_JIT and the check proves nothing.

    python3 scripts/ptx_jit_check.py      # needs a CUDA GPU; tests the sageattention on sys.path
"""

import math
import os
import subprocess
import sys
import tempfile

import torch

SHAPE_Q, SHAPE_KV = (1, 4, 777, 64), (1, 2, 777, 64)   # GQA, odd length, causal
MAX_REL_L1_VS_REFERENCE = 3e-2   # the kernel's accuracy on Gaussian inputs is ~1.1e-2
MAX_REL_L1_JIT_VS_SASS = 1e-3    # same source, same compiler: expected bit-identical or nearly


def reference(q, k, v):
    q, k, v = q.double(), k.double(), v.double()
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def rel_l1(a, b):
    return ((a.double() - b.double()).abs().sum() / b.double().abs().sum()).item()


def child(folder):
    from sageattention import sageattn

    q, k, v = (t.cuda() for t in torch.load(os.path.join(folder, "inputs.pt")))
    out = sageattn(q, k, v, is_causal=True, kernel="sm80_mma").cpu()
    torch.save(out, os.path.join(folder, f"out_{os.environ.get('CUDA_FORCE_PTX_JIT', '0')}.pt"))
    if os.environ.get("CUDA_FORCE_PTX_JIT") == "1":
        try:
            sageattn(q, k, v, is_causal=True, kernel="sm90_wgmma")
            torch.cuda.synchronize()
        except (ValueError, NotImplementedError) as exc:
            print(f"negative control not available here: {exc}")
        except RuntimeError as exc:
            print(f"negative control ok: the kernel without PTX fails under forced JIT ({str(exc)[:120]})")
        else:
            sys.exit("FAIL: the sm90a-only kernel ran under CUDA_FORCE_PTX_JIT=1: the driver did not force JIT")


def run_child(folder, force_jit):
    env = dict(os.environ, CUDA_FORCE_PTX_JIT="1" if force_jit else "0")
    subprocess.run([sys.executable, __file__, "--child", folder], env=env, check=True)
    return torch.load(os.path.join(folder, f"out_{int(force_jit)}.pt"))


def main():
    if not torch.cuda.is_available():
        sys.exit("ptx_jit_check needs a CUDA GPU")
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=gen).half() for shape in (SHAPE_Q, SHAPE_KV, SHAPE_KV))
    expected = reference(q, k, v)
    with tempfile.TemporaryDirectory() as folder:
        torch.save((q, k, v), os.path.join(folder, "inputs.pt"))
        sass = run_child(folder, force_jit=False)
        jit = run_child(folder, force_jit=True)
    errors = {"sass vs float64": rel_l1(sass, expected), "ptx-jit vs float64": rel_l1(jit, expected),
              "ptx-jit vs sass": rel_l1(jit, sass)}
    print("  ".join(f"{name}: rel L1 {value:.2e}" for name, value in errors.items()))
    bad = [name for name, value in errors.items()
           if not value <= (MAX_REL_L1_JIT_VS_SASS if name == "ptx-jit vs sass" else MAX_REL_L1_VS_REFERENCE)]
    if bad:
        sys.exit(f"FAIL: {', '.join(bad)} above the bound")
    print("ok: the PTX JIT-compiles and matches the SASS")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        main()
