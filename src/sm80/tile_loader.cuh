// cp.async loaders of the Q (head dim 256), K and V tiles into swizzled shared memory. Every thread of
// the CTA issues an equal share of 16-byte copies; tail tokens and padded head-dim columns of V are
// zero-filled (the int8 Q/K workspace is already zero-padded by the pre-pass).
#pragma once
#include <cstdint>

#include "common/kernel_args.h"
#include "ptx/cp_async.cuh"
#include "sm80/traits.cuh"

namespace sageattn::sm80 {

template <class Tr>
struct TileLoader {
  // A tile of kRows rows of kChunksPerRow 16-byte chunks, kPerThread chunks per thread: thread t
  // copies chunk t % kChunksPerRow of rows t / kChunksPerRow + k * kRowStep. Spelled with a
  // compile-time trip count from the unsigned thread index, and with the shared-memory address of
  // chunk k a constant offset from chunk 0's (kRowStep is a multiple of the swizzle's 8-row period):
  // the strided loop (i = threadIdx.x; i < chunks; i += kThreads) compiled to a generic loop with a
  // remainder and signed divisions, and the swizzle was recomputed per chunk. With V's stepped
  // pointer (load_v) the head-dim-128 tile loop went from 1393 to 1104 instructions, +18-21 % end to
  // end (docs/design/sm80_kernel.md, "Tile-load addressing and Q in the kernel").
  template <int kRows, int kChunksPerRow>
  struct Share {
    static constexpr int kRowStep = Tr::kThreads / kChunksPerRow;
    static constexpr int kPerThread = kRows / kRowStep;
    static_assert(Tr::kThreads % kChunksPerRow == 0 && kRows % kRowStep == 0, "whole rows per pass");
    static_assert(kRowStep % 8 == 0, "rows k * kRowStep apart share their swizzle");
    __device__ static int row0() { return static_cast<int>(threadIdx.x / kChunksPerRow); }
    __device__ static int chunk() { return static_cast<int>(threadIdx.x % kChunksPerRow); }
    __device__ static uint32_t smem(uint32_t tile_base, int k) {
      return tile_base + swizzled_offset<kChunksPerRow>(row0(), chunk()) + k * (kRowStep * kChunksPerRow * 16);
    }
  };

  // Rows of this CTA's Q block in the padded int8 Q of its head (head dim 256; the kernel quantizes
  // narrower Q itself).
  __device__ static void load_q(uint32_t smem_q, const int8_t* q_rows) {
    using Q = Share<kQBlockRows, Tr::kInt8ChunksPerRow>;
    const int8_t* src = q_rows + Q::row0() * Tr::kHeadDim + Q::chunk() * 16;
#pragma unroll
    for (int k = 0; k < Q::kPerThread; ++k)
      ptx::cp_async_16(Q::smem(smem_q, k), src + k * Q::kRowStep * Tr::kHeadDim);
  }

  // Tokens [64 * tile, 64 * tile + 64) of the padded int8 K of this CTA's kv head.
  __device__ static void load_k(uint32_t smem_k, const int8_t* k_head, int tile) {
    using K = Share<kKBlockTokens, Tr::kInt8ChunksPerRow>;
    const int8_t* src =
        k_head + (static_cast<int64_t>(tile) * kKBlockTokens + K::row0()) * Tr::kHeadDim + K::chunk() * 16;
#pragma unroll
    for (int k = 0; k < K::kPerThread; ++k)
      ptx::cp_async_16(K::smem(smem_k, k), src + k * K::kRowStep * Tr::kHeadDim);
  }

  // Tokens of V straight from the caller's tensor (any strides, 16-byte aligned rows).
  __device__ static void load_v(uint32_t smem_v, const typename Tr::T* v_head, int64_t stride_token,
                                int tile, int seqlen_kv, int head_dim) {
    using V = Share<kKBlockTokens, Tr::kVChunksPerRow>;
    const int token0 = tile * kKBlockTokens + V::row0();
    const bool column_valid = V::chunk() * 8 < head_dim;
    // One 64-bit pointer stepped by kRowStep rows: written as src + k * step, the compiler turned
    // each chunk's address into a predicated 64-bit multiply (and reloaded the stride from constant
    // memory), ~70 more instructions per tile.
    const typename Tr::T* src = v_head + token0 * stride_token + V::chunk() * 8;
    const int64_t step = V::kRowStep * stride_token;
#pragma unroll
    for (int k = 0; k < V::kPerThread; ++k) {
      const bool valid = column_valid && token0 + k * V::kRowStep < seqlen_kv;
      ptx::cp_async_16_or_zero(V::smem(smem_v, k), valid ? src : v_head, valid);
      src += step;
    }
  }
};

}  // namespace sageattn::sm80
