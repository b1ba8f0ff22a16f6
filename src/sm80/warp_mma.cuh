// The two warp-level products of one K/V tile: S = Q.K^T (int8 -> int32) and O += P.V (16-bit ->
// fp32), with operands read from swizzled shared memory by ldmatrix.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "common/element.cuh"
#include "ptx/ldmatrix.cuh"
#include "ptx/mma_sm80.cuh"
#include "sm80/traits.cuh"

namespace sageattn::sm80 {

template <class Tr>
struct WarpMma {
  using T = typename Tr::T;

  // S[mt][nt] for the 32 rows of row warp `row_warp` x the tile's 64 keys.
  __device__ static void qk(int32_t (&s)[Tr::kMTiles][Tr::kNTiles][4], uint32_t smem_q,
                            uint32_t smem_k, int row_warp, int lane) {
#pragma unroll
    for (int mt = 0; mt < Tr::kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < Tr::kNTiles; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) s[mt][nt][i] = 0;

    auto step = [&](int ks) {
      // A fragments of one k32 step: matrices (rows 0-7 | 8-15) x (bytes 0-15 | 16-31).
      uint32_t a[Tr::kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < Tr::kMTiles; ++mt) {
        const int row = row_warp * kWarpRows + mt * 16 + lane % 16;
        const int chunk = ks * 2 + lane / 16;
        ptx::ldmatrix_x4(a[mt], smem_q + swizzled_offset<Tr::kInt8ChunksPerRow>(row, chunk));
      }
#pragma unroll
      for (int nt = 0; nt < Tr::kNTiles; nt += 2) {
        // B fragments of two n8 tiles for this k32 step: matrices (tokens of tile nt | nt+1) x
        // (bytes 0-15 | 16-31).
        uint32_t b[4];
        const int row = (nt + lane / 16) * 8 + lane % 8;
        const int chunk = ks * 2 + (lane / 8) % 2;
        ptx::ldmatrix_x4(b, smem_k + swizzled_offset<Tr::kInt8ChunksPerRow>(row, chunk));
        const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
#pragma unroll
        for (int mt = 0; mt < Tr::kMTiles; ++mt) {
          ptx::mma_m16n8k32_s8(s[mt][nt], a[mt], b0);
          ptx::mma_m16n8k32_s8(s[mt][nt + 1], a[mt], b1);
        }
      }
    };
    if constexpr (Tr::kQKSteps <= 4) {
#pragma unroll
      for (int ks = 0; ks < Tr::kQKSteps; ++ks) step(ks);
    } else {
      // Head dim 256: 8 steps fully unrolled let the scheduler hoist fragment loads until the 255
      // registers spill; 4 at a time keep the loop at the head dim 128 kernel's shape.
#pragma unroll 4
      for (int ks = 0; ks < Tr::kQKSteps; ++ks) step(ks);
    }
  }

  __device__ static void mma_pv(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    if constexpr (std::is_same_v<T, __half>) {
      ptx::mma_m16n8k16_f16(acc, a, b);
    } else {
      ptx::mma_m16n8k16_bf16(acc, a, b);
    }
  }

  // The accumulator layout of S (rows g/g+8, columns 2t/2t+1 of each n8 tile) is the A-operand
  // layout of m16n8k16 once two n8 tiles are paired, so P never leaves registers. Packing all of P
  // right after the softmax halves its registers (32 instead of 64) before the P.V loop, which
  // leaves the compiler room to prefetch V fragments.
  __device__ static void pack_p(uint32_t (&packed)[Tr::kMTiles][Tr::kPVSteps][4],
                                const float (&p)[Tr::kMTiles][Tr::kNTiles][4]) {
#pragma unroll
    for (int mt = 0; mt < Tr::kMTiles; ++mt)
#pragma unroll
      for (int ks = 0; ks < Tr::kPVSteps; ++ks) {
        packed[mt][ks][0] = Element<T>::from_float2(p[mt][2 * ks][0], p[mt][2 * ks][1]);
        packed[mt][ks][1] = Element<T>::from_float2(p[mt][2 * ks][2], p[mt][2 * ks][3]);
        packed[mt][ks][2] = Element<T>::from_float2(p[mt][2 * ks + 1][0], p[mt][2 * ks + 1][1]);
        packed[mt][ks][3] = Element<T>::from_float2(p[mt][2 * ks + 1][2], p[mt][2 * ks + 1][3]);
      }
  }

  // O += P.V with V from swizzled shared memory, for this warp's kDTiles * 8 columns from
  // column_part * kDTiles * 8 on.
  __device__ static void pv(float (&o)[Tr::kMTiles][Tr::kDTiles][4],
                            const uint32_t (&p)[Tr::kMTiles][Tr::kPVSteps][4], uint32_t smem_v, int column_part,
                            int lane) {
#pragma unroll
    for (int ks = 0; ks < Tr::kPVSteps; ++ks) {
#pragma unroll
      for (int dp = 0; dp < Tr::kDTiles / 2; ++dp) {
        // Matrices: (tokens 0-7 | 8-15 of this k16 step) x (channel tiles 2dp | 2dp+1), transposed.
        uint32_t b[4];
        const int row = ks * 16 + lane % 8 + 8 * ((lane / 8) % 2);
        const int chunk = column_part * Tr::kDTiles + dp * 2 + lane / 16;
        ptx::ldmatrix_x4_trans(b, smem_v + swizzled_offset<Tr::kVChunksPerRow>(row, chunk));
        const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
#pragma unroll
        for (int mt = 0; mt < Tr::kMTiles; ++mt) {
          mma_pv(o[mt][2 * dp], p[mt][ks], b0);
          mma_pv(o[mt][2 * dp + 1], p[mt][ks], b1);
        }
      }
    }
  }
};

}  // namespace sageattn::sm80
