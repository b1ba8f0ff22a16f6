#include <cuda_bf16.h>

#include "sm80/launch.cuh"

namespace sageattn {

cudaError_t launch_attention_sm80_bf16(const AttentionArgs& args, bool causal, bool programmatic,
                                        cudaStream_t stream) {
  return sm80::launch_typed<__nv_bfloat16>(args, causal, programmatic, stream);
}

}  // namespace sageattn
