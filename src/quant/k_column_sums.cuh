// Phase 1 of K smoothing: the column sums of one (batch, kv head, token chunk) of K, over the keys
// the mean samples (tiling.h, k_mean_sampled). The consumers (the Q/K quantization items) add the
// few chunk partials and divide by the sample count.
#pragma once
#include <cstdint>

#include "common/element.cuh"
#include "common/kernel_args.h"
#include "common/sequences.cuh"
#include "quant/sampled_keys.cuh"

namespace sageattn {

// One CTA of kThreads; `partial` is shared memory of kThreads / (kHeadDim / 8) rows of kHeadDim floats.
// `side`: sequence `batch`'s keys (key_side).
template <typename T, int kHeadDim, int kThreads>
__device__ __forceinline__ void k_column_sums_block(const QuantizeArgs& a, int chunk, int head, int batch,
                                                    const SequenceSide& side, float* partial) {
  constexpr int kLanesPerRow = kHeadDim / 8;  // one 16-byte vector of 8 channels per lane
  constexpr int kRowsPerPass = kThreads / kLanesPerRow;
  const int col = (threadIdx.x % kLanesPerRow) * 8;
  const int row_lane = threadIdx.x / kLanesPerRow;
  const char* base = static_cast<const char*>(a.k) +
                     (token0_offset(side, batch, head, a.k_stride_batch, a.k_stride_head, a.k_stride_token) + col) *
                         sizeof(T);
  // Chunks are cut from the bound; those past a packed sequence's end sum nothing (and write 0).
  const int first = chunk * a.column_sum_chunk_tokens;
  const int last = min(first + a.column_sum_chunk_tokens, side.length);

  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  auto load_row = [&](int t) {
    return *reinterpret_cast<const uint4*>(base + static_cast<int64_t>(t) * a.k_stride_token * sizeof(T));
  };
  auto add_row = [&](const uint4& raw) {
    float x[8];
    unpack8<T>(raw, x);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] += x[e];
  };
  if (col < a.head_dim) for_each_sampled_key(first, last, side.length, row_lane, kRowsPerPass, load_row, add_row);
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
