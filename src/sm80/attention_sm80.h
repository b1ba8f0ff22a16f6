// Host entry of the sm80 mma.sync attention kernel (runs on sm80 and every newer GPU).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common/kernel_args.h"
#include "sageattn/sageattn.h"

namespace sageattn {

// Defined once per dtype (attention_sm80_fp16.cu, attention_sm80_bf16.cu) so the two compile in
// parallel. `programmatic`: launch as a programmatic dependent of the previous kernel, which must be
// the pre-pass's quantization grid (compute capability 9.0 and newer only).
cudaError_t launch_attention_sm80_fp16(const AttentionArgs& args, bool causal, bool programmatic, cudaStream_t stream);
cudaError_t launch_attention_sm80_bf16(const AttentionArgs& args, bool causal, bool programmatic, cudaStream_t stream);

inline cudaError_t launch_attention_sm80(const AttentionArgs& args, sageattn_dtype dtype, bool causal,
                                         bool programmatic, cudaStream_t stream) {
  return dtype == SAGEATTN_DTYPE_BF16 ? launch_attention_sm80_bf16(args, causal, programmatic, stream)
                                      : launch_attention_sm80_fp16(args, causal, programmatic, stream);
}

}  // namespace sageattn
