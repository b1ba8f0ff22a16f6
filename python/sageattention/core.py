"""The public entry point ``sageattn``: a drop-in for ``sageattention.sageattn`` and for
``torch.nn.functional.scaled_dot_product_attention`` on fp16/bf16 CUDA tensors (inference only).

torch.compile(fullgraph=True) traces this function without graph breaks: it only inspects
shapes, dtypes, devices and strides, and the kernel call is the opaque operator in ``ops``.
"""

import math

import torch

from . import _validate
from . import ops
from .ops import attention_forward

__all__ = ["sageattn", "validate_call"]

# Host time (issue 4): an eager call whose arguments all match a call checked before skips
# validate_call and canonicalize, whose outcome is a function of exactly what the key holds: shapes,
# strides, dtypes and devices of q, k, v and of the masks, and every other argument with its type (a
# type differing, e.g. numpy.bool_ for bool, takes the checks again, so nothing they refuse gets
# through; types come before values so that no unlike pair is ever compared). What can change
# between two such calls is checked on every call: grad mode and requires_grad here, the data
# pointers' alignment in ops._run. Only calls that need no copy of q, k or v are kept (the others
# pay far more than the checks). Bounded: a model has few shapes; a sweep past the bound starts over.
_checked_calls = {}
_MAX_CHECKED_CALLS = 256


class _CheckedCall:
    """What validate_call answered for one key, and the workspace size and params bytes of the C
    call (filled in by _launch.forward on the first call; later calls change only the pointers)."""

    __slots__ = ("layout", "sm_scale", "granularity", "kernel", "workspace_bytes", "params")

    def __init__(self, layout, sm_scale, granularity, kernel):
        self.layout, self.sm_scale, self.granularity, self.kernel = layout, sm_scale, granularity, kernel
        self.workspace_bytes = None
        self.params = None


def _call_key(q, k, v, tensor_layout, is_causal, sm_scale, return_lse, smooth_k, qk_quant_gran, dropout_p, kernel,
              rotate_qk, attn_mask=None, block_mask=None):
    """The masks are None or plain tensors (ops.eager_fast_path_ok): their layout, not their values,
    decides the checks (the values reach the kernel through the data pointer, patched every call)."""
    return (q.shape, k.shape, v.shape, q.stride(), k.stride(), v.stride(), q.dtype, k.dtype, v.dtype, q.device,
            k.device, v.device, type(tensor_layout), tensor_layout, type(is_causal), is_causal, type(sm_scale), sm_scale,
            type(return_lse), return_lse, type(smooth_k), smooth_k, type(qk_quant_gran), qk_quant_gran,
            type(dropout_p), dropout_p, type(kernel), kernel, type(rotate_qk), rotate_qk,
            None if attn_mask is None else (attn_mask.shape, attn_mask.stride(), attn_mask.dtype, attn_mask.device),
            None if block_mask is None else (block_mask.shape, block_mask.stride(), block_mask.dtype, block_mask.device))


def _requires_grad(t):
    return t is not None and t.requires_grad


def validate_call(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False, *,
                  smooth_k=True, qk_quant_gran="per_thread", attn_mask=None, block_mask=None,
                  dropout_p=0.0, kernel="auto", rotate_qk=True):
    """Every check `sageattn` makes, with `sageattn`'s exact signature (a test keeps the two equal),
    so that `supports()` answers from the same code: raises what `sageattn` would raise, else
    returns (head_dim, layout code, sm_scale, granularity code, kernel code, attn_mask expanded to
    [B, Hq, Nq, Nkv] or None, block_mask expanded to [B, Hq, ceil(Nq/128), ceil(Nkv/128)] or
    None). A plain tuple: this runs on every call (a NamedTuple costs ~0.5 us more)."""
    layout, sm_scale, granularity, kernel_code = _validate.check_scalars(
        tensor_layout, is_causal, sm_scale, return_lse, smooth_k, qk_quant_gran, attn_mask,
        dropout_p, kernel)
    _validate.check_flag("rotate_qk", rotate_qk)
    head_dim = _validate.check_tensor_shapes(q, k, v, layout)
    # Above 128 the sm90 kernel runs its native head dim 256 with the FP8 P.V only (src/api/plan.cpp).
    if head_dim > _validate.SM90_MAX_HEAD_DIM and kernel == "sm90_wgmma_pv16":
        raise NotImplementedError(f"kernel {kernel} supports head dims up to {_validate.SM90_MAX_HEAD_DIM} "
                                  f"(got {head_dim}); kernel='sm90_wgmma', 'auto', 'auto_pv16' or 'sm80_mma' run "
                                  f"up to {_validate.MAX_HEAD_DIM}")
    attn_mask, block_mask = _validate.check_masks(q, k, layout, attn_mask, block_mask)
    _validate.check_tensor_devices(q, k, v)
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(head_dim)
    return head_dim, layout, sm_scale, granularity, kernel_code, attn_mask, block_mask


def sageattn(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False, *,
             smooth_k=True, qk_quant_gran="per_thread", attn_mask=None, block_mask=None, dropout_p=0.0,
             kernel="auto", rotate_qk=True):
    """8-bit attention: INT8 Q.K^T (with K smoothing), 16-bit or FP8 P.V (by kernel), float32 accumulation.

    Args:
        q: [B, Hq, Nq, D] ("HND") or [B, Nq, Hq, D] ("NHD"), torch.float16 or torch.bfloat16, CUDA.
        k, v: [B, Hkv, Nkv, D] or [B, Nkv, Hkv, D], same dtype and device; Hq % Hkv == 0 (GQA/MQA).
            Any strided views work (e.g. slices of a packed qkv tensor).
        tensor_layout: "HND" or "NHD" (all three tensors).
        is_causal: bottom-right aligned causal mask (query i sees key j iff j <= i + Nkv - Nq, the
            FlashAttention-2 convention; same as top-left when Nq == Nkv). Query rows that see no
            key (Nq > Nkv) output zeros and an LSE of -inf.
        sm_scale: softmax scale; default 1/sqrt(D).
        return_lse: also return the log-sum-exp of the scaled scores: lse[b, h, i] =
            ln(sum_j exp(sm_scale * q_i . k_j)) over the keys row i sees, in natural log, float32,
            with the K-smoothing shift already undone (the value of the unquantized, unsmoothed
            scores), -inf for rows that see no key. This is upstream sageattention 2.x's convention
            (it converts its base-2 value and adds the same smoothing correction), so ring
            attention code that merges partial results with it works unchanged.
        smooth_k: subtract the per-channel mean of K before INT8 quantization (exact for the
            output; recommended).
        qk_quant_gran: "per_thread" (finer INT8 scales, default) or "per_warp".
        attn_mask: SDPA's mask, broadcastable to [B, Hq, Nq, Nkv] (that order for both layouts):
            torch.bool (True = attend) or float (torch.float32 or q's dtype) added to the scaled
            scores (-inf masks; NaN and values <= -1e30 count as -inf, values above 1e30 as 1e30).
            Combines with
            is_causal (both apply; SDPA refuses the pair). Query rows left with no key output zeros
            and an LSE of -inf (SDPA gives NaN there). 128 x 128 tiles the mask removes entirely
            are skipped; the mask costs one extra pass over it (docs/design/masks.md).
        block_mask: block-sparse mask, torch.bool broadcastable to
            [B, Hq, ceil(Nq / 128), ceil(Nkv / 128)]: False skips the 128 x 128 tile of queries
            and keys (as if masked), True computes it. Combines with attn_mask and is_causal; on
            its own it costs nothing extra, so structured sparsity runs at the speed of the kept
            tiles.
        dropout_p: accepted for signature compatibility with SDPA; anything other than 0.0 raises
            NotImplementedError (never ignored silently).
        rotate_qk: rotate Q and K by 8 x 8 Walsh-Hadamard blocks of channels before INT8
            quantization (Q.K^T unchanged): halves the error on inputs with outlier channels
            (docs/accuracy.md) for a few adds per element in the pre-pass (under 1 % of a call at
            4K tokens on H200). Default True.
        kernel: "auto" (on compute capability 9.0 builds with 90a: sm90_wgmma_pv16 at head dims
            65..128 up to 1536 query rows (3072 causal), sm90_wgmma above, and for head dims <= 64
            sm90_wgmma's native head dim 64 when queries and keys both reach 1024 (2048 causal; with
            a mask, its padded 128 from 3072, 6144 causal), and for head dims 129..256
            sm90_wgmma's native head dim 256; sm80_mma otherwise), "sm80_mma" (INT8 Q.K^T + 16-bit
            P.V, any sm80+ GPU), "sm90_wgmma" (INT8 Q.K^T + FP8 P.V with V smoothing, Hopper only;
            NotImplementedError elsewhere),
            "sm90_wgmma_pv16" (its accurate mode: the same kernel with a 16-bit P.V, about 3x less
            error on Gaussian inputs, docs/accuracy.md; head dims up to 128) or
            "auto_pv16" (the fastest 16-bit P.V kernel: sm90_wgmma_pv16 where "auto" picks
            sm90_wgmma at head dims <= 128, at head dims <= 64 from 3072 query rows and keys (6144
            causal), else sm80_mma).

    Returns:
        out with q's shape, layout and dtype (contiguous), or (out, lse) with lse float32
        [B, Hq, Nq] when return_lse.

    Head dims that are not a multiple of 8 and inputs whose strides or start are not 16-byte
    aligned are handled by a padded/contiguous copy (zero-padding the head dim leaves attention
    unchanged because the scale comes from the original head dim); the output is sliced back.

    Raises:
        TypeError for non-tensor inputs and unknown keyword arguments; ValueError for bad shapes,
        dtypes, devices (CPU tensors), layouts and scales; NotImplementedError for features not
        supported yet (dropout, head_dim > 256 (> 128 on compute capability 8.6, 8.9 and 12.x), v head_dim != q head_dim, sizes
        beyond the CUDA grid limits); `sageattention.supports(q, k, v, ...)` answers the same
        checks without raising.
        RuntimeError for inputs that require grad (forward only) and for CUDA failures.
    """
    key = None
    # Types and modes only: the same answer for the canonicalized tensors and expanded masks below.
    eager = ops.eager_fast_path_ok(q, k, v, attn_mask, block_mask)
    if eager:
        try:
            key = _call_key(q, k, v, tensor_layout, is_causal, sm_scale, return_lse, smooth_k, qk_quant_gran,
                            dropout_p, kernel, rotate_qk, attn_mask, block_mask)
            checked = _checked_calls.get(key)
        except TypeError:  # an unhashable argument: the checks below name it
            key = checked = None
        if checked is not None and not (
                torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad
                                             or _requires_grad(attn_mask) or _requires_grad(block_mask))):
            out, lse = ops.call_checked(q, k, v, checked, bool(is_causal), bool(return_lse), bool(smooth_k),
                                        bool(rotate_qk), attn_mask, block_mask)
            return (out, lse) if return_lse else out

    head_dim, layout, sm_scale, granularity, kernel_code, attn_mask, block_mask = validate_call(
        q, k, v, tensor_layout, is_causal, sm_scale, return_lse, smooth_k=smooth_k,
        qk_quant_gran=qk_quant_gran, attn_mask=attn_mask, block_mask=block_mask, dropout_p=dropout_p,
        kernel=kernel, rotate_qk=rotate_qk)

    align = _validate.ALIGN_ELEMENTS
    padded_head_dim = (head_dim + align - 1) // align * align
    q_in = _validate.canonicalize(q, padded_head_dim)
    k_in = _validate.canonicalize(k, padded_head_dim)
    v_in = _validate.canonicalize(v, padded_head_dim)
    if key is not None and q_in is q and k_in is k and v_in is v:
        if len(_checked_calls) >= _MAX_CHECKED_CALLS:
            _checked_calls.clear()
        _checked_calls[key] = _CheckedCall(layout, sm_scale, granularity, kernel_code)

    run = ops.call_eager if eager else attention_forward
    out, lse = run(q_in, k_in, v_in, layout, bool(is_causal), sm_scale, bool(return_lse),
                   bool(smooth_k), granularity, kernel_code, True, attn_mask, block_mask, bool(rotate_qk))
    if padded_head_dim != head_dim:
        # clone rather than contiguous(): same result, and it also runs on fake tensors in
        # CPU-only torch builds (the tests trace this path without a GPU).
        out = out.narrow(3, 0, head_dim).clone(memory_format=torch.contiguous_format)
    return (out, lse) if return_lse else out
