// The pre-pass: K column sums (for smoothing) and INT8 quantization of K (and of Q where the attention
// kernel does not quantize it itself) into the workspace.
#pragma once
#include <cuda_runtime.h>

#include "common/kernel_args.h"
#include "sageattn/sageattn.h"

namespace sageattn {

// Two launches when smoothing K (column sums, then quantization), one otherwise.
cudaError_t launch_quantize_qk(const QuantizeArgs& args, sageattn_dtype dtype, cudaStream_t stream);

}  // namespace sageattn
