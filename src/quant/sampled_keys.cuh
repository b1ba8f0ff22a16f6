// The keys of one statistics chunk that the K mean and the V statistics read (tiling.h,
// k_mean_sampled): every key below 512 keys, else one per aligned group of 2, 4 or 8 at a hashed
// position. Chunks start at multiples of 64 tokens, so they cut no group.
#pragma once
#include <type_traits>

#include "common/tiling.h"

namespace sageattn {

// Calls add(t) for the sampled keys t in [first, last) of a sequence of `length` keys, this row
// lane's share (row_lane, row_lane + rows_per_pass, ... counted in groups). The stride is a template
// argument inside so that the group arithmetic is shifts (a runtime stride measured +3-5 us of
// pre-pass at 2K-4K, session 13).
template <typename Add>
__device__ __forceinline__ void for_each_sampled_key(int first, int last, int length, int row_lane,
                                                     int rows_per_pass, Add&& add) {
  auto sampled_groups = [&](auto stride_constant) {
    constexpr int kStride = decltype(stride_constant)::value;
#pragma unroll 4
    for (int group = first / kStride + row_lane; group * kStride < last; group += rows_per_pass) {
      const int t = group * kStride + k_mean_sample_offset(group, kStride);
      if (t < last) add(t);
    }
  };
  switch (k_mean_sample_stride(length)) {
    case 1:
#pragma unroll 4
      for (int t = first + row_lane; t < last; t += rows_per_pass) add(t);
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
