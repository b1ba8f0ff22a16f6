// cp.async loaders of the Q, K and V tiles into swizzled shared memory. Every thread of the CTA
// issues an equal share of 16-byte copies; tail tokens and padded head-dim columns of V are
// zero-filled (the int8 Q/K workspace is already zero-padded by the pre-pass).
#pragma once
#include <cstdint>

#include "common/kernel_args.h"
#include "ptx/cp_async.cuh"
#include "sm80/traits.cuh"

namespace sageattn::sm80 {

template <class Tr>
struct TileLoader {
  // Rows of this CTA's Q block in the padded int8 Q of its head.
  __device__ static void load_q(uint32_t smem_q, const int8_t* q_rows) {
    constexpr int kChunks = kQBlockRows * Tr::kInt8ChunksPerRow;
#pragma unroll
    for (int i = threadIdx.x; i < kChunks; i += Tr::kThreads) {
      const int row = i / Tr::kInt8ChunksPerRow, chunk = i % Tr::kInt8ChunksPerRow;
      ptx::cp_async_16(smem_q + swizzled_offset<Tr::kInt8ChunksPerRow>(row, chunk),
                       q_rows + row * Tr::kHeadDim + chunk * 16);
    }
  }

  // Tokens [64 * tile, 64 * tile + 64) of the padded int8 K of this CTA's kv head.
  __device__ static void load_k(uint32_t smem_k, const int8_t* k_head, int tile) {
    constexpr int kChunks = kKBlockTokens * Tr::kInt8ChunksPerRow;
    const int8_t* k_rows = k_head + static_cast<int64_t>(tile) * kKBlockTokens * Tr::kHeadDim;
#pragma unroll
    for (int i = threadIdx.x; i < kChunks; i += Tr::kThreads) {
      const int row = i / Tr::kInt8ChunksPerRow, chunk = i % Tr::kInt8ChunksPerRow;
      ptx::cp_async_16(smem_k + swizzled_offset<Tr::kInt8ChunksPerRow>(row, chunk),
                       k_rows + row * Tr::kHeadDim + chunk * 16);
    }
  }

  // Tokens of V straight from the caller's tensor (any strides, 16-byte aligned rows).
  __device__ static void load_v(uint32_t smem_v, const typename Tr::T* v_head, int64_t stride_token,
                                int tile, int seqlen_kv, int head_dim) {
    constexpr int kChunks = kKBlockTokens * Tr::kVChunksPerRow;
#pragma unroll
    for (int i = threadIdx.x; i < kChunks; i += Tr::kThreads) {
      const int row = i / Tr::kVChunksPerRow, chunk = i % Tr::kVChunksPerRow;
      const int token = tile * kKBlockTokens + row;
      const bool valid = token < seqlen_kv && chunk * 8 < head_dim;
      const typename Tr::T* src = valid ? v_head + token * stride_token + chunk * 8 : v_head;
      ptx::cp_async_16_or_zero(smem_v + swizzled_offset<Tr::kVChunksPerRow>(row, chunk), src, valid);
    }
  }
};

}  // namespace sageattn::sm80
