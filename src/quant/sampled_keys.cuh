// The keys of one statistics chunk that the K mean and the V statistics read (tiling.h,
// k_mean_sampled): every key below 512 keys, else one per aligned group of 2, 4 or 8 at a hashed
// position. Chunks start at multiples of 64 tokens, so they cut no group.
#pragma once
#include <type_traits>

#include "common/tiling.h"

namespace sageattn {

// Rows of a statistics CTA's thread loaded before the first is used. One at a time (a loop of
// `if (t < last) add(t)` the compiler unrolled but could not hoist a load across), each sampled row
// was a whole memory round trip: a 512-token chunk sampled one in 8 took 4 of them per thread in
// sequence, a 1024-token one 8 (ncu SASS, H100). 8 in flight: 48 -> 76 registers, no spills;
// statistics grid (H100, two rounds) B4 H32 hd128 1K 10 -> 7 us, 16K 67 -> 58 us, packed 8 x 1-8K
// tokens 29 -> 25-26 us; 4 in flight (59 registers) 1-2 us slower (docs/performance.md).
constexpr int kStatsLoadsInFlight = 8;

// Calls add(load(t)) for the sampled keys t in [first, last) of a sequence of `length` keys, this
// row lane's share (row_lane, row_lane + rows_per_pass, ... counted in groups), in that order,
// kStatsLoadsInFlight loads ahead of the adds. The stride is a template argument inside so that the
// group arithmetic is shifts (a runtime stride measured +3-5 us of pre-pass at 2K-4K, session 13).
template <typename Load, typename Add>
__device__ __forceinline__ void for_each_sampled_key(int first, int last, int length, int row_lane,
                                                     int rows_per_pass, Load&& load, Add&& add) {
  auto sampled_groups = [&](auto stride_constant) {
    constexpr int kStride = decltype(stride_constant)::value;
    for (int group = first / kStride + row_lane; group * kStride < last;
         group += kStatsLoadsInFlight * rows_per_pass) {
      decltype(load(0)) rows[kStatsLoadsInFlight];
      bool sampled[kStatsLoadsInFlight];
#pragma unroll
      for (int u = 0; u < kStatsLoadsInFlight; ++u) {
        const int g = group + u * rows_per_pass;
        const int t = g * kStride + k_mean_sample_offset(g, kStride);  // offset 0 at stride 1
        sampled[u] = t < last;
        if (sampled[u]) rows[u] = load(t);
      }
#pragma unroll
      for (int u = 0; u < kStatsLoadsInFlight; ++u)
        if (sampled[u]) add(rows[u]);
    }
  };
  switch (k_mean_sample_stride(length)) {
    case 1:
      sampled_groups(std::integral_constant<int, 1>{});
      break;
    case 2:
      sampled_groups(std::integral_constant<int, 2>{});
      break;
    case 4:
      sampled_groups(std::integral_constant<int, 4>{});
      break;
    default:
      sampled_groups(std::integral_constant<int, 8>{});
      break;
  }
}

}  // namespace sageattn
