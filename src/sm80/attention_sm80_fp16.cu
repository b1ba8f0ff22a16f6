#include <cuda_fp16.h>

#include "sm80/launch.cuh"

namespace sageattn {

cudaError_t launch_attention_sm80_fp16(const AttentionArgs& args, bool causal, bool programmatic,
                                        cudaStream_t stream) {
  return sm80::launch_typed<__half>(args, causal, programmatic, stream);
}

}  // namespace sageattn
