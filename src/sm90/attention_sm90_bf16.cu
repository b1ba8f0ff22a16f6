#include <cuda_bf16.h>

#include "sm90/launch.cuh"

namespace sageattn {

cudaError_t launch_attention_sm90_bf16(const AttentionArgs& args, bool causal, cudaStream_t stream) {
  return sm90::launch_typed<__nv_bfloat16, false>(args, causal, stream);
}

}  // namespace sageattn
