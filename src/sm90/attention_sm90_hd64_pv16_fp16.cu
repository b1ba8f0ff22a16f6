// The head-dim-64 instantiations of the 16-bit P.V (dense or packed): a file of their own so that
// the build compiles them in parallel with the others.
#include <cuda_fp16.h>

#include "sm90/launch.cuh"

namespace sageattn {

cudaError_t launch_attention_sm90_hd64_pv16_fp16(const AttentionArgs& args, bool causal, cudaStream_t stream) {
  return sm90::launch_typed<__half, true, 64>(args, causal, stream);
}

}  // namespace sageattn
