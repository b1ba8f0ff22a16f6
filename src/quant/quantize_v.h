// The FP8 V pre-pass of the sm90 kernel (compiled for sm_90a only): two launches, channel
// statistics then E4M3 tiles.
#pragma once
#include <cuda_runtime.h>

#include "common/kernel_args.h"
#include "sageattn/sageattn.h"

namespace sageattn {

cudaError_t launch_quantize_v_fp8(const QuantizeVArgs& args, sageattn_dtype dtype, cudaStream_t stream);

}  // namespace sageattn
