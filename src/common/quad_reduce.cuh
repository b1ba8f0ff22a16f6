// Reductions over the four lanes of an MMA quad (lanes 4g..4g+3), which hold the same accumulator
// rows (g and g + 8) in both the mma.sync and the wgmma fragment layouts: two xor-shuffles.
#pragma once

namespace sageattn {

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

}  // namespace sageattn
