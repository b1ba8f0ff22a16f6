// Online softmax in base 2 over the S fragments of one warp (32 rows x 64 keys per tile).
// A lane holds rows g and g+8 of each m16 tile (g = lane / 4); the four lanes of a quad share rows,
// so row reductions are two xor-shuffles. Row sums stay per lane until the epilogue (one
// reduction per CTA instead of one per tile).
#pragma once
#include <cmath>

#include "ptx/math.cuh"
#include "sm80/traits.cuh"

namespace sageattn::sm80 {

template <class Tr>
struct OnlineSoftmax {
  static constexpr int kRows = Tr::kMTiles * 2;  // rows this lane holds
  float row_max[kRows];      // running max of x = s * c (base-2 logits); -inf before any key
  float row_sum[kRows];      // this lane's share of sum(exp2(x - row_max))

  __device__ void init() {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      row_max[r] = -INFINITY;
      row_sum[r] = 0.f;
    }
  }

  __device__ static float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
  }
  __device__ static float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
  }

  // x holds base-2 logits (masked entries -inf) on entry and probabilities exp2(x - max) on exit.
  // Returns, per row, the factor by which earlier O accumulators must be rescaled.
  __device__ void update(float (&x)[Tr::kMTiles][Tr::kNTiles][4], float (&rescale)[kRows]) {
#pragma unroll
    for (int mt = 0; mt < Tr::kMTiles; ++mt) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = mt * 2 + half;
        float tile_max = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < Tr::kNTiles; ++nt)
          tile_max = fmaxf(tile_max, fmaxf(x[mt][nt][2 * half], x[mt][nt][2 * half + 1]));
        const float new_max = fmaxf(row_max[r], quad_max(tile_max));
        // A row with no allowed key so far keeps max -inf; subtracting 0 instead keeps
        // exp2(-inf - (-inf)) = NaN out and still gives p = 0.
        const float offset = new_max == -INFINITY ? 0.f : new_max;
        rescale[r] = ptx::exp2_approx(row_max[r] - offset);
        row_max[r] = new_max;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < Tr::kNTiles; ++nt) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float p = ptx::exp2_approx(x[mt][nt][2 * half + e] - offset);
            x[mt][nt][2 * half + e] = p;
            sum += p;
          }
        }
        row_sum[r] = row_sum[r] * rescale[r] + sum;
      }
    }
  }
};

}  // namespace sageattn::sm80
