// The pre-pass of the sm90 kernel (compiled for sm_90a only): two launches for K and V (the
// attention kernel quantizes Q itself, sm90/q_quantize.cuh).
#pragma once
#include <cuda_runtime.h>

#include "common/kernel_args.h"
#include "sageattn/sageattn.h"

namespace sageattn {

// 1. Statistics: K column sums (when smoothing K) and, for E4M3 V, V channel sums, maxima and
//    minima, per token chunk, in one grid (skipped when it has nothing to do). 2. Quantization: INT8
//    K blocks and the V tiles (E4M3, or 16-bit with v.v16), plus dot(q, mean K) per query row when
//    qk.lse_correction is set, in one grid launched programmatically after the first.
// Head dim 128 only (the plan pads 65..128 to it).
cudaError_t launch_prepass_sm90(const QuantizeArgs& qk, const QuantizeVArgs& v, sageattn_dtype dtype,
                                cudaStream_t stream);

}  // namespace sageattn
