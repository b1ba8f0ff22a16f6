// The head-dim-256 instantiations (E4M3 P.V: dense, masked or packed): a file of their own so that the build
// compiles them in parallel with the others.
#include <cuda_fp16.h>

#include "sm90/launch.cuh"

namespace sageattn {

cudaError_t launch_attention_sm90_hd256_fp16(const AttentionArgs& args, bool causal, cudaStream_t stream) {
  return sm90::launch_typed<__half, false, 256>(args, causal, stream);
}

}  // namespace sageattn
