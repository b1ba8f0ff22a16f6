// The 16-bit P.V instantiations (SAGEATTN_KERNEL_SM90_WGMMA_PV16): a file of their own so that the
// build compiles them in parallel with the E4M3 ones.
#include <cuda_bf16.h>

#include "sm90/launch.cuh"

namespace sageattn {

cudaError_t launch_attention_sm90_pv16_bf16(const AttentionArgs& args, bool causal, cudaStream_t stream) {
  return sm90::launch_typed<__nv_bfloat16, true>(args, causal, stream);
}

}  // namespace sageattn
