"""Inputs and accuracy assertions shared by the GPU tests.

The oracle (design.md section 6): with `ref` the exact float64 result and `emul` the library's CPU
emulation of the same quantization, every element must satisfy

    |out - ref| <= rtol * |emul - ref| + atol,
    atol = eps_out * |ref| + atol_frac[dtype] * mean|emul - ref|

and globally mean|out - ref| <= global_rtol * mean|emul - ref| + eps_out / 2 * mean|ref|.

Why the two atol terms: `eps_out * |ref|` covers rounding the output to fp16/bf16 (the emulation
keeps float64). The kernel rounds P to the 16-bit type relative to the running row maximum of the
online softmax, the emulation relative to the final one, so their P rounding errors are
independent noises of the same size; where the emulation's error happens to be ~0 the kernel's is
still of that size. That noise is ~8x larger for bf16 (8-bit mantissa) than for fp16, hence the
per-dtype `atol_frac` (measured on an H100: bf16 needed up to ~0.9, fp16 ~0.3; margins on top).
A wrong scale index, an unwritten tile or a misread tail makes errors of the order of |ref| (tens
of times the mean error) and fails loudly; the global bound catches small systematic biases.
"""

import numpy as np
import torch

from sageattention import reference

import torch_reference

OUTPUT_EPS = {torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}
RTOL = 1.5
ATOL_FRAC = {torch.float16: 1.0, torch.bfloat16: 4.0}
GLOBAL_RTOL = 1.25
LSE_ATOL = 2e-3


def make_inputs(kind, q_shape, kv_shape, dtype=torch.float16, seed=0, layout="HND"):
    """q, k, v on the GPU. kind: gaussian | k_bias (K channel bias x8, V bias x2, as real
    activations) | outlier (q, k x3 with 4 outlier channels: q x10, k +20)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, device="cuda", generator=gen)

    q, k, v = randn(*q_shape), randn(*kv_shape), randn(*kv_shape)
    d = q_shape[-1]
    head_axis = 1 if layout == "HND" else 2
    bias_shape = [1, 1, 1, d]
    bias_shape[head_axis] = kv_shape[head_axis]
    if kind == "k_bias":
        k = k + 8.0 * randn(*bias_shape)
        v = v + 2.0 * randn(*bias_shape)
    elif kind == "outlier":
        q, k = 3.0 * q, 3.0 * k
        channels = torch.arange(4, device="cuda") * max(1, d // 4)
        q[..., channels] *= 10.0
        k[..., channels] += 20.0
    elif kind != "gaussian":
        raise ValueError(kind)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def unsampled_key(keys, start):
    """The first key >= start that the K mean's sample (and FP8 V's scale) skips (common/tiling.h)."""
    shift = 3 if keys >= 2048 else 2 if keys >= 1024 else 1 if keys >= 512 else 0
    stride = 1 << shift
    for key in range(start, keys):
        offset = ((((key >> shift) * 2654435761) & 0xFFFFFFFF) >> 29) * stride >> 3
        if key & (stride - 1) != offset:
            return key
    raise ValueError(f"every key of {keys} is sampled")


def hnd(t, layout):
    return t.transpose(1, 2) if layout == "NHD" else t


def exact(q, k, v, layout="HND", **kw):
    """float64 reference on the GPU (HND out)."""
    return torch_reference.attention(q, k, v, layout=layout, **kw)


# The kernels that run only on compute capability 9.0 (sm90_wgmma_pv16 at head dims <= 128,
# sm90_wgmma up to 256); of them, only sm90_wgmma has the FP8 P.V (sm90_wgmma_pv16 rounds P and V as
# sm80_mma does).
SM90_KERNELS = ("sm90_wgmma", "sm90_wgmma_pv16")


def sm90_available(library):
    return torch.cuda.get_device_capability() == (9, 0) and "90a" in library.compiled_archs


# "auto" runs the 16-bit P.V on sm90 up to this many query rows, non-causal and causal
# (src/api/plan.cpp); head dims <= 64 run the sm90 kernel from AUTO_SM90_MIN_SEQLEN_HD64[_CAUSAL] on.
AUTO_PV16_MAX_SEQLEN_Q = 1536
AUTO_PV16_MAX_SEQLEN_Q_CAUSAL = 3072
AUTO_SM90_MIN_SEQLEN_HD64 = 3072
AUTO_SM90_MIN_SEQLEN_HD64_CAUSAL = 6144


def kernel_used(kernel, library, head_dim, seqlen_q, packed=False, seqlen_kv=None, causal=False):
    """The kernel a call with `kernel` runs, "auto" and "auto_pv16" resolved as src/api/plan.cpp
    does (for calls without a mask): on compute capability 9.0 with a 90a build, for head dims 65..128
    and for head dims <= 64 when query rows and keys both reach AUTO_SM90_MIN_SEQLEN_HD64[_CAUSAL]
    (seqlen_kv: seqlen_q if not given; padded to 128), sm90_wgmma_pv16 ("auto_pv16"; "auto" for dense
    calls with at most AUTO_PV16_MAX_SEQLEN_Q[_CAUSAL] query rows and V views with nonzero strides) or
    sm90_wgmma; for head dims 129..256, sm90_wgmma ("auto") or sm80_mma ("auto_pv16"); else sm80_mma."""
    if kernel not in ("auto", "auto_pv16"):
        return kernel
    if head_dim > 128:
        return "sm90_wgmma" if kernel == "auto" and sm90_available(library) else "sm80_mma"
    seqlen_kv = seqlen_q if seqlen_kv is None else seqlen_kv
    hd64_min = AUTO_SM90_MIN_SEQLEN_HD64_CAUSAL if causal else AUTO_SM90_MIN_SEQLEN_HD64
    long_enough = head_dim > 64 or min(seqlen_q, seqlen_kv) >= hd64_min
    if not (sm90_available(library) and head_dim <= 128 and long_enough):
        return "sm80_mma"
    pv16_max = AUTO_PV16_MAX_SEQLEN_Q_CAUSAL if causal else AUTO_PV16_MAX_SEQLEN_Q
    if kernel == "auto_pv16" or (not packed and seqlen_q <= pv16_max):
        return "sm90_wgmma_pv16"
    return "sm90_wgmma"


def emulated(q, k, v, layout="HND", kernel="sm80_mma", **kw):
    """The library's CPU emulation of `kernel` for these GPU inputs: sm80_mma and sm90_wgmma_pv16
    round P to q's dtype, sm90_wgmma runs the FP8 P.V with V smoothing (its default). Small shapes
    only: it is single-threaded. Returns float64 (out HND, lse) on the GPU."""
    if kernel == "sm90_wgmma":
        kw = dict(kw, dtype="e4m3", smooth_v=True)
    else:
        kw = dict(kw, dtype="bfloat16" if q.dtype == torch.bfloat16 else "float16")
    if isinstance(kw.get("mask"), torch.Tensor):  # an additive float mask [B, Hq, Nq, Nkv] (broadcastable)
        kw["mask"] = kw["mask"].float().cpu().numpy()
    qn, kn, vn = (hnd(t, layout).float().cpu().contiguous().numpy() for t in (q, k, v))
    out, lse = reference.attention_emulated(qn, kn, vn, **kw)
    return torch.from_numpy(out).cuda(), torch.from_numpy(lse).cuda()


# FP8 P.V (sm90_wgmma): the kernel rounds P~ to E4M3 (3 mantissa bits) against the running row
# maximum of each tile, the emulation against the final one; those independent roundings are 2^5
# times coarser than fp16's. Measured on an H100: the mean errors agree within 1%, while single
# elements of rows with few keys (causal, Nq > Nkv) deviate by up to ~13 x the mean emulation error
# (one P~ rounding flip moves such a row by ~6% of a V row).
FP8_ATOL_FRAC = 16.0


def assert_oracle(out, ref, emul, dtype, what="", rtol=RTOL, atol_frac=None):
    out, ref, emul = out.double(), ref.double(), emul.double()
    if atol_frac is None:
        atol_frac = ATOL_FRAC[dtype]
    assert torch.isfinite(out).all(), f"{what}: non-finite output"
    err = (out - ref).abs()
    emul_err = (emul - ref).abs()
    # The typical error of rows that see at least one key (rows without keys are exact zeros and
    # would dilute it: causal with Nq >> Nkv).
    seen_rows = ref.abs().sum(dim=-1) > 0
    typical = emul_err[seen_rows].mean() if seen_rows.any() else emul_err.mean()
    atol = OUTPUT_EPS[dtype] * ref.abs() + atol_frac * typical
    bad = err > rtol * emul_err + atol
    summary = (f"mean |out-ref| {err.mean().item():.3e}, mean |emul-ref| {emul_err.mean().item():.3e}, "
               f"mean |ref| {ref.abs().mean().item():.3e}")
    if bad.any():
        idx = tuple(int(i) for i in np.unravel_index(int((err - rtol * emul_err - atol).argmax()), out.shape))
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {out.numel()} elements fail the oracle; worst at {idx}: "
            f"out {out[idx].item():.6g}, ref {ref[idx].item():.6g}, emul {emul[idx].item():.6g}; {summary}"
        )
    assert_global_oracle(out, ref, emul, dtype, what=what)


def assert_global_oracle(out, ref, emul, dtype, what="", rounding=None):
    """The global half of assert_oracle: mean|out - ref| <= GLOBAL_RTOL * mean|emul - ref| +
    `rounding`, the mean error that rounding the result to `dtype` may add (default: half an ulp,
    eps_out / 2 * mean|ref|). Alone, for results the elementwise oracle does not describe (a kernel
    call inside other arithmetic, several calls pieced together)."""
    out, ref, emul = out.double(), ref.double(), emul.double()
    assert torch.isfinite(out).all(), f"{what}: non-finite output"
    err, emul_err = (out - ref).abs().mean(), (emul - ref).abs().mean()
    if rounding is None:
        rounding = 0.5 * OUTPUT_EPS[dtype] * ref.abs().mean()
    bound = GLOBAL_RTOL * emul_err + rounding
    assert err <= bound, (f"{what}: mean |out-ref| {err.item():.3e} above {bound.item():.3e} "
                          f"(mean |emul-ref| {emul_err.item():.3e}, mean |ref| {ref.abs().mean().item():.3e})")


def assert_lse_oracle(lse, ref_lse, emul_lse, what="", rtol=RTOL, atol=LSE_ATOL):
    lse, ref_lse, emul_lse = lse.double(), ref_lse.double(), emul_lse.double()
    seen = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), seen), f"{what}: finite LSE rows differ from the reference"
    assert torch.all(lse[~seen] == -torch.inf), f"{what}: rows with no key must have LSE -inf"
    err = (lse[seen] - ref_lse[seen]).abs()
    emul_err = (emul_lse[seen] - ref_lse[seen]).abs()
    bad = err > rtol * emul_err + atol
    assert not bad.any(), (f"{what}: {int(bad.sum())} LSE values fail the oracle; max |lse-ref| "
                           f"{err.max().item():.3e}, max |emul-ref| {emul_err.max().item():.3e}")


def rel_l1(out, ref):
    return torch_reference.rel_l1(out, ref)


def poison_allocator(*shapes_and_dtypes):
    """Leaves NaN-filled blocks of these sizes in torch's caching allocator, so the next tensors of
    the same sizes (the op's outputs) start as NaN: an element the kernel forgets to write shows."""
    blocks = [torch.full(shape, float("nan"), dtype=dtype, device="cuda") for shape, dtype in shapes_and_dtypes]
    del blocks
