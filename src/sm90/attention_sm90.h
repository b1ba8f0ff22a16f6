// Host entry of the sm90a wgmma attention kernel (INT8 Q.K^T, FP8 or 16-bit P.V). Compiled only for sm_90a;
// builds without that target do not define these, and the dispatcher never selects the kernel.
#pragma once
#include <cuda_runtime.h>

#include "common/kernel_args.h"
#include "sageattn/sageattn.h"

namespace sageattn {

cudaError_t launch_attention_sm90_fp16(const AttentionArgs& args, bool causal, cudaStream_t stream);
cudaError_t launch_attention_sm90_bf16(const AttentionArgs& args, bool causal, cudaStream_t stream);
cudaError_t launch_attention_sm90_pv16_fp16(const AttentionArgs& args, bool causal, cudaStream_t stream);
cudaError_t launch_attention_sm90_pv16_bf16(const AttentionArgs& args, bool causal, cudaStream_t stream);
cudaError_t launch_attention_sm90_hd64_fp16(const AttentionArgs& args, bool causal, cudaStream_t stream);
cudaError_t launch_attention_sm90_hd64_bf16(const AttentionArgs& args, bool causal, cudaStream_t stream);
cudaError_t launch_attention_sm90_hd64_pv16_fp16(const AttentionArgs& args, bool causal, cudaStream_t stream);
cudaError_t launch_attention_sm90_hd64_pv16_bf16(const AttentionArgs& args, bool causal, cudaStream_t stream);
cudaError_t launch_attention_sm90_hd256_fp16(const AttentionArgs& args, bool causal, cudaStream_t stream);
cudaError_t launch_attention_sm90_hd256_bf16(const AttentionArgs& args, bool causal, cudaStream_t stream);

// pv16: 16-bit P.V (args.v_tiles holds 16-bit tiles) instead of E4M3. padded_head_dim: the INT8
// rows and V tiles of the workspace (64: without masks; 256: E4M3 P.V only; else 128).
inline cudaError_t launch_attention_sm90(const AttentionArgs& args, sageattn_dtype dtype, bool causal, bool pv16,
                                         int padded_head_dim, cudaStream_t stream) {
  const bool bf16 = dtype == SAGEATTN_DTYPE_BF16;
  if (padded_head_dim == 64) {
    if (pv16)
      return bf16 ? launch_attention_sm90_hd64_pv16_bf16(args, causal, stream)
                  : launch_attention_sm90_hd64_pv16_fp16(args, causal, stream);
    return bf16 ? launch_attention_sm90_hd64_bf16(args, causal, stream)
                : launch_attention_sm90_hd64_fp16(args, causal, stream);
  }
  if (padded_head_dim == 256) {
    if (pv16) return cudaErrorInvalidValue;
    return bf16 ? launch_attention_sm90_hd256_bf16(args, causal, stream)
                : launch_attention_sm90_hd256_fp16(args, causal, stream);
  }
  if (padded_head_dim != 128) return cudaErrorInvalidValue;
  if (pv16)
    return bf16 ? launch_attention_sm90_pv16_bf16(args, causal, stream)
                : launch_attention_sm90_pv16_fp16(args, causal, stream);
  return bf16 ? launch_attention_sm90_bf16(args, causal, stream) : launch_attention_sm90_fp16(args, causal, stream);
}

}  // namespace sageattn
