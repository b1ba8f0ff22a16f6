// Phase 1 of K smoothing: the column sums of one (batch, kv head, token chunk) of K, over the keys
// the mean samples (tiling.h, k_mean_sampled). The consumers (the Q/K quantization items) add the
// few chunk partials and divide by the sample count.
#pragma once
#include <cstdint>
#include <type_traits>

#include "common/element.cuh"
#include "common/kernel_args.h"
#include "common/sequences.cuh"

namespace sageattn {

// One CTA of kThreads; `partial` is shared memory of kThreads / (kHeadDim / 8) rows of kHeadDim floats.
template <typename T, int kHeadDim, int kThreads>
__device__ __forceinline__ void k_column_sums_block(const QuantizeArgs& a, int chunk, int head, int batch,
                                                    float* partial) {
  constexpr int kLanesPerRow = kHeadDim / 8;  // one 16-byte vector of 8 channels per lane
  constexpr int kRowsPerPass = kThreads / kLanesPerRow;
  const int col = (threadIdx.x % kLanesPerRow) * 8;
  const int row_lane = threadIdx.x / kLanesPerRow;
  const SequenceSide side = key_side(a.packing, batch, a.seqlen_kv);
  const char* base = static_cast<const char*>(a.k) +
                     (token0_offset(side, batch, head, a.k_stride_batch, a.k_stride_head, a.k_stride_token) + col) *
                         sizeof(T);
  // Chunks are cut from the bound; those past a packed sequence's end sum nothing (and write 0).
  const int first = chunk * a.column_sum_chunk_tokens;
  const int last = min(first + a.column_sum_chunk_tokens, side.length);

  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  auto add_row = [&](int t) {
    const uint4 raw = *reinterpret_cast<const uint4*>(base + static_cast<int64_t>(t) * a.k_stride_token * sizeof(T));
    float x[8];
    unpack8<T>(raw, x);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] += x[e];
  };
  // One key per aligned group of kStride (tiling.h): chunks start at multiples of 64 tokens. The
  // stride is a template argument so that the group arithmetic is shifts, as with the one stride
  // (8) this loop had until session 13 (a runtime stride measured +3-5 us of pre-pass at 2K-4K).
  auto add_sampled_rows = [&](auto stride_constant) {
    constexpr int kStride = decltype(stride_constant)::value;
#pragma unroll 4
    for (int group = first / kStride + row_lane; group * kStride < last; group += kRowsPerPass) {
      const int t = group * kStride + k_mean_sample_offset(group, kStride);
      if (t < last) add_row(t);
    }
  };
  if (col < a.head_dim) {
    switch (k_mean_sample_stride(side.length)) {
      case 1:
#pragma unroll 4
        for (int t = first + row_lane; t < last; t += kRowsPerPass) add_row(t);
        break;
      case 2:
        add_sampled_rows(std::integral_constant<int, 2>{});
        break;
      case 4:
        add_sampled_rows(std::integral_constant<int, 4>{});
        break;
      default:
        add_sampled_rows(std::integral_constant<int, 8>{});
        break;
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) partial[row_lane * kHeadDim + col + e] = acc[e];
  __syncthreads();
  for (int c = threadIdx.x; c < kHeadDim; c += kThreads) {
    float sum = 0.f;
#pragma unroll 8
    for (int r = 0; r < kRowsPerPass; ++r) sum += partial[r * kHeadDim + c];
    const int64_t slot = (static_cast<int64_t>(batch) * a.heads_kv + head) * a.column_sum_chunks + chunk;
    a.k_column_sums[slot * kHeadDim + c] = sum;
  }
}

}  // namespace sageattn
