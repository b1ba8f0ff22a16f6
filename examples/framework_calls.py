"""The calls that frameworks make into the ``sageattention`` package, run unchanged against this one.

    python examples/framework_calls.py [--require-gpu] [--dtype fp16|bf16]

Each case below reproduces one framework's call line as it is written in that framework (quoted in
the comment above it, with where it comes from), on inputs shaped and laid out the way that
framework lays them out, and compares the result with float64 attention. Inputs carry a per-channel
bias on K and V, as real activations do. A case passes when the output's relative L1 error is
below 2e-2 and, where an LSE comes back, its largest error is below 6e-2 (natural log units; see
MAX_LSE_ERROR).
Calls that must be refused (a mask where no masked kernel exists) must raise, because the framework
catches the exception and falls back to SDPA (that is how ComfyUI is written).
"""

import functools
import sys

import torch

import sageattention
from sageattention import (
    sageattn,
    sageattn_qk_int8_pv_fp8_cuda,
    sageattn_qk_int8_pv_fp8_cuda_sm90,
    sageattn_qk_int8_pv_fp16_cuda,
    sageattn_qk_int8_pv_fp16_triton,
    sageattn_varlen,
)

from example_utils import gpu_or_exit, parse_args, rel_l1

MAX_REL_L1 = 2e-2
# The LSE error is that of the INT8 Q.K^T scores (the same on every kernel). A row's LSE error is a
# softmax-weighted mean of its score errors, so the rows that see only a few keys (the first rows
# under a causal mask) keep the error of single scores: at head dim 128 and sm_scale 0.1 (the
# causal case below) that is ~1.2e-2 standard deviation, and the largest over the rows reaches
# 2e-2..4e-2 (CPU emulation, 20 seeds; 2.2e-2 fp16 and 3.3e-2 bf16 measured on an H100). The bound
# is 5 of those standard deviations; a wrong LSE convention (log base, layout, the K-smoothing shift
# or the scale left out) is off by 2 or more in that case.
MAX_LSE_ERROR = 6e-2
DEVICE = "cuda"  # the CPU test of this script runs it on the CPU with an exact stand-in kernel


def make_inputs(batch, tokens_q, tokens_kv, heads_q, heads_kv, head_dim, dtype, gen, layout="NHD"):
    """q, k, v on the GPU in `layout`; K and V carry a per-(head, channel) bias."""
    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=DEVICE)

    q = randn(batch, tokens_q, heads_q, head_dim)
    k = randn(batch, tokens_kv, heads_kv, head_dim) + 4 * randn(1, 1, heads_kv, head_dim)
    v = randn(batch, tokens_kv, heads_kv, head_dim) + randn(1, 1, heads_kv, head_dim)
    tensors = (q, k, v) if layout == "NHD" else (t.transpose(1, 2) for t in (q, k, v))
    return tuple(t.to(dtype) for t in tensors)


def exact(q, k, v, layout="NHD", is_causal=False, scale=None, attn_mask=None):
    """float64 attention and its natural-log LSE ([B, H, N]); causal bottom-right; an additive
    attn_mask ([B, H, Nq, Nk] broadcastable) added to the scaled scores; out in `layout`."""
    hnd = (lambda t: t.transpose(1, 2)) if layout == "NHD" else (lambda t: t)
    q, k, v = (hnd(t).double() for t in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if is_causal:
        nq, nk = scores.shape[-2:]
        seen = torch.arange(nk, device=q.device) <= torch.arange(nq, device=q.device)[:, None] + (nk - nq)
        scores = scores.masked_fill(~seen, float("-inf"))
    if attn_mask is not None:
        scores = scores + attn_mask.double()
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.softmax(scores, dim=-1).nan_to_num(0.0) @ v
    return hnd(out), lse


def lse_error(lse, ref):
    seen = torch.isfinite(ref)
    return (lse.double()[seen] - ref[seen]).abs().max().item()


# --- diffusers ---------------------------------------------------------------------------------

def diffusers_sage(dtype, gen):
    query, key, value = make_inputs(2, 1025, 1025, 8, 8, 64, dtype, gen)
    is_causal, scale, return_lse = False, None, True
    # huggingface/diffusers src/diffusers/models/attention_dispatch.py, _sage_attention (backend "sage"):
    #     out = sageattn(q=query, k=key, v=value, tensor_layout="NHD", is_causal=is_causal,
    #                    sm_scale=scale, return_lse=return_lse)
    #     if return_lse: out, lse, *_ = out
    out = sageattn(q=query, k=key, v=value, tensor_layout="NHD", is_causal=is_causal, sm_scale=scale,
                   return_lse=return_lse)
    out, lse, *_ = out
    ref, ref_lse = exact(query, key, value)
    return rel_l1(out, ref), lse_error(lse, ref_lse)


def diffusers_sage_varlen(dtype, gen):
    # diffusers packs the valid keys of each batch entry (the attention mask says how many) and
    # calls, in _sage_varlen_attention (backend "sage_varlen"):
    #     out = sageattn_varlen(q=query_packed, k=key_packed, v=value_packed,
    #                           cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
    #                           max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k,
    #                           is_causal=is_causal, sm_scale=scale)
    #     out = out.unflatten(0, (batch_size, -1))
    query, key, value = make_inputs(3, 300, 77, 8, 8, 64, dtype, gen)
    valid_k = [77, 50, 13]
    query_packed = query.flatten(0, 1)
    key_packed = torch.cat([key[b, :n] for b, n in enumerate(valid_k)])
    value_packed = torch.cat([value[b, :n] for b, n in enumerate(valid_k)])
    cu_seqlens_q = torch.arange(0, 4 * 300, 300, dtype=torch.int32, device=DEVICE)
    cu_seqlens_k = torch.tensor([0, 77, 127, 140], dtype=torch.int32, device=DEVICE)
    max_seqlen_q, max_seqlen_k, is_causal, scale = 300, 77, False, None
    out = sageattn_varlen(q=query_packed, k=key_packed, v=value_packed, cu_seqlens_q=cu_seqlens_q,
                          cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k,
                          is_causal=is_causal, sm_scale=scale)
    out = out.unflatten(0, (3, -1))
    ref = torch.cat([exact(query[b:b + 1], key[b:b + 1, :n], value[b:b + 1, :n])[0] for b, n in enumerate(valid_k)])
    return rel_l1(out, ref), None


def diffusers_sage_fp8_sm90(dtype, gen):
    query, key, value = make_inputs(1, 999, 999, 8, 2, 128, dtype, gen)
    is_causal, scale, qk_quant_gran, pv_accum_dtype, smooth_k, return_lse = True, 0.1, "per_thread", "fp32+fp32", True, True
    # diffusers attention_dispatch.py, _sage_qk_int8_pv_fp8_cuda_sm90_attention:
    #     return sageattn_qk_int8_pv_fp8_cuda_sm90(q=query, k=key, v=value, tensor_layout="NHD",
    #         is_causal=is_causal, qk_quant_gran=qk_quant_gran, sm_scale=scale,
    #         pv_accum_dtype=pv_accum_dtype, smooth_k=smooth_k, return_lse=return_lse)
    out, lse = sageattn_qk_int8_pv_fp8_cuda_sm90(q=query, k=key, v=value, tensor_layout="NHD", is_causal=is_causal,
                                                 qk_quant_gran=qk_quant_gran, sm_scale=scale,
                                                 pv_accum_dtype=pv_accum_dtype, smooth_k=smooth_k,
                                                 return_lse=return_lse)
    ref, ref_lse = exact(query, key, value, is_causal=True, scale=0.1)
    return rel_l1(out, ref), lse_error(lse, ref_lse)


def diffusers_sage_fp8_smooth_v(dtype, gen):
    query, key, value = make_inputs(2, 513, 513, 4, 4, 64, dtype, gen)
    is_causal, scale, qk_quant_gran, pv_accum_dtype = False, None, "per_warp", "fp32+fp32"
    smooth_k, smooth_v, return_lse = True, True, False
    # diffusers attention_dispatch.py, _sage_qk_int8_pv_fp8_cuda_attention:
    #     return sageattn_qk_int8_pv_fp8_cuda(q=query, k=key, v=value, tensor_layout="NHD",
    #         is_causal=is_causal, qk_quant_gran=qk_quant_gran, sm_scale=scale,
    #         pv_accum_dtype=pv_accum_dtype, smooth_k=smooth_k, smooth_v=smooth_v, return_lse=return_lse)
    out = sageattn_qk_int8_pv_fp8_cuda(q=query, k=key, v=value, tensor_layout="NHD", is_causal=is_causal,
                                       qk_quant_gran=qk_quant_gran, sm_scale=scale, pv_accum_dtype=pv_accum_dtype,
                                       smooth_k=smooth_k, smooth_v=smooth_v, return_lse=return_lse)
    return rel_l1(out, exact(query, key, value)[0]), None


# --- ComfyUI and its custom nodes ---------------------------------------------------------------

def comfyui_attention_sage(dtype, gen):
    # comfyanonymous/ComfyUI comfy/ldm/modules/attention.py, attention_sage: q, k, v arrive as
    # [b, tokens, heads * dim_head], are viewed as [b, tokens, heads, dim_head] and sent as
    #     out = sageattn(q, k, v, attn_mask=mask, is_causal=False, tensor_layout=tensor_layout)
    # inside try/except: any exception makes ComfyUI log it and use its PyTorch attention instead.
    heads, dim_head = 10, 64
    q, k, v = (t.flatten(2) for t in make_inputs(1, 4096, 77, heads, heads, dim_head, dtype, gen))
    b = q.shape[0]
    q, k, v = (t.view(b, -1, heads, dim_head) for t in (q, k, v))
    tensor_layout, mask = "NHD", None
    out = sageattn(q, k, v, attn_mask=mask, is_causal=False, tensor_layout=tensor_layout)
    error = rel_l1(out, exact(q, k, v)[0])
    # With a mask (ComfyUI's additive [b, 1, tokens, context] float mask; here the padding of a
    # 60-token prompt): computed with the mask, never ignored.
    mask = torch.zeros(b, 1, 4096, 77, device=DEVICE, dtype=dtype)
    mask[..., 60:] = float("-inf")
    out = sageattn(q, k, v, attn_mask=mask, is_causal=False, tensor_layout=tensor_layout)
    return max(error, rel_l1(out, exact(q, k, v, attn_mask=mask)[0])), None


def kjnodes_patch_sage_attention(dtype, gen):
    # kijai/ComfyUI-KJNodes nodes/model_optimization_nodes.py (the "Patch Sage Attention" node)
    # wraps the chosen kernel as sage_func(q, k, v, is_causal=False, attn_mask=None, tensor_layout="NHD"):
    #     sageattn_qk_int8_pv_fp16_triton(q, k, v, is_causal=is_causal, attn_mask=attn_mask, tensor_layout=tensor_layout)
    #     sageattn_qk_int8_pv_fp8_cuda(q, k, v, is_causal=is_causal, attn_mask=attn_mask,
    #                                  pv_accum_dtype="fp32+fp16", tensor_layout=tensor_layout)
    q, k, v = make_inputs(1, 1000, 1000, 12, 12, 128, dtype, gen, layout="HND")
    is_causal, attn_mask, tensor_layout = False, None, "HND"
    ref = exact(q, k, v, layout="HND")[0]
    triton = sageattn_qk_int8_pv_fp16_triton(q, k, v, is_causal=is_causal, attn_mask=attn_mask, tensor_layout=tensor_layout)
    fp8pp = sageattn_qk_int8_pv_fp8_cuda(q, k, v, is_causal=is_causal, attn_mask=attn_mask, pv_accum_dtype="fp32+fp16",
                                        tensor_layout=tensor_layout)
    return max(rel_l1(triton, ref), rel_l1(fp8pp, ref)), None


# --- xDiT / yunchang ring attention -------------------------------------------------------------

def xdit_ring_attention(dtype, gen):
    # feifeibear/long-context-attention yunchang/kernels/__init__.py, select_flash_attn_impl(
    # AttnType.SAGE_FP16, stage="fwd-only"):
    #     return partial(sageattention.sageattn_qk_int8_pv_fp16_cuda, pv_accum_dtype="fp32",
    #                    tensor_layout="NHD", return_lse=True)
    # xdit-project/xDiT xfuser/core/long_ctx_attention/ring/ring_flash_attn.py, per ring step:
    #     block_out, block_lse = fn(q, key, value, dropout_p=dropout_p, softmax_scale=softmax_scale,
    #         causal=causal and step == 0, window_size=window_size, softcap=0.0,
    #         alibi_slopes=alibi_slopes, return_softmax=True and dropout_p > 0)
    # and merges the steps with the LSE; two ring steps (two halves of K/V) here.
    fn = functools.partial(sageattention.sageattn_qk_int8_pv_fp16_cuda, pv_accum_dtype="fp32",
                           tensor_layout="NHD", return_lse=True)
    q, k, v = make_inputs(1, 1024, 2048, 8, 8, 64, dtype, gen)
    dropout_p, softmax_scale, causal, window_size, alibi_slopes = 0.0, 64 ** -0.5, False, (-1, -1), None
    out, lse = None, None
    for step, (key, value) in enumerate(zip(k.chunk(2, dim=1), v.chunk(2, dim=1))):
        block_out, block_lse = fn(q, key, value, dropout_p=dropout_p, softmax_scale=softmax_scale,
                                  causal=causal and step == 0, window_size=window_size, softcap=0.0,
                                  alibi_slopes=alibi_slopes, return_softmax=True and dropout_p > 0)
        block_out, block_lse = block_out.float(), block_lse.transpose(1, 2).unsqueeze(-1)  # [B, N, H, 1]
        if out is None:
            out, lse = block_out, block_lse
        else:
            new_lse = torch.logaddexp(lse, block_lse)
            out = out * torch.exp(lse - new_lse) + block_out * torch.exp(block_lse - new_lse)
            lse = new_lse
    ref, ref_lse = exact(q, k, v, scale=softmax_scale)
    return rel_l1(out, ref), lse_error(lse.squeeze(-1).transpose(1, 2), ref_lse)


# --- SGLang diffusion ---------------------------------------------------------------------------

def sglang_diffusion(dtype, gen):
    # sgl-project/sglang python/sglang/multimodal_gen/runtime/layers/attention/backends/sage_attn.py,
    # SageAttentionImpl.forward:
    #     output = sageattn(query, key, value,
    #                       # since input is (batch_size, seq_len, head_num, head_dim)
    #                       tensor_layout="NHD", is_causal=self.causal, sm_scale=self.softmax_scale,
    #                       return_lse=return_softmax_lse)
    query, key, value = make_inputs(1, 1560, 1560, 12, 12, 128, dtype, gen)  # a 30x52 latent
    causal, softmax_scale, return_softmax_lse = False, 128 ** -0.5, False
    output = sageattn(query, key, value, tensor_layout="NHD", is_causal=causal, sm_scale=softmax_scale,
                      return_lse=return_softmax_lse)
    return rel_l1(output, exact(query, key, value, scale=softmax_scale)[0]), None


CASES = [
    ("diffusers", "sage backend: sageattn(q=, k=, v=, NHD, return_lse)", diffusers_sage),
    ("diffusers", "sage_varlen backend: sageattn_varlen(...)", diffusers_sage_varlen),
    ("diffusers", "_sage_qk_int8_pv_fp8_cuda_sm90 (GQA, causal)", diffusers_sage_fp8_sm90),
    ("diffusers", "_sage_qk_int8_pv_fp8_cuda (smooth_v)", diffusers_sage_fp8_smooth_v),
    ("ComfyUI", "attention_sage: sageattn(..., attn_mask=mask)", comfyui_attention_sage),
    ("ComfyUI-KJNodes", "sage_func: fp16_triton / fp8_cuda++", kjnodes_patch_sage_attention),
    ("xDiT/yunchang", "ring attention, flash-attn kwargs + LSE merge", xdit_ring_attention),
    ("SGLang diffusion", "SageAttentionImpl.forward", sglang_diffusion),
]


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv, lambda parser: parser.add_argument(
        "--dtype", choices=("fp16", "bf16"), default="fp16"))
    gpu_or_exit(args, "Running the frameworks' calls")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    gen = torch.Generator(device=DEVICE).manual_seed(args.seed)
    failed = 0
    print(f"{'framework':17s} {'call':48s} {'rel L1':>9s} {'max |dLSE|':>10s}")
    with torch.no_grad():
        for framework, call, case in CASES:
            error, lse_err = case(dtype, gen)
            ok = error < MAX_REL_L1 and (lse_err is None or lse_err < MAX_LSE_ERROR)
            failed += not ok
            lse_text = "" if lse_err is None else f"{lse_err:.2e}"
            print(f"{framework:17s} {call:48s} {error:9.2e} {lse_text:>10s}{'' if ok else '  <-- FAIL'}")
    print(f"{len(CASES) - failed} of {len(CASES)} framework calls match float64 attention ({dtype}).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
