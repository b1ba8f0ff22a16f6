// Q quantized inside the sm80 kernel (head dims 64 and 128): each warp turns its 32 query rows from
// the caller's 16-bit tensor into INT8 rows of the CTA's swizzled Q tile and keeps its lanes'
// dequantization factor in a register. Groups, rounding and scales are exactly the pre-pass's
// (quant/quantize_qk_item.cuh, docs/design/quantization.md), as in the sm90 kernel
// (sm90/q_quantize.cuh), so the result is bit for bit the same. What it saves is the pre-pass's read
// of Q and the write and read of its INT8 copy and scales: 4 bytes of memory traffic per Q element
// become the kernel's 2 (docs/design/sm80_kernel.md, "Tile-load addressing and Q in the kernel").
//
// Head dim 256 keeps the pre-pass's Q: its warps split O's columns in pairs that share rows
// (sm80/traits.cuh), and a lane's 4 rows of 256 channels would need 128 registers for the loads.
#pragma once
#include <cstdint>

#include "common/lane_q_rows.cuh"
#include "common/rotation.h"
#include "common/tiling.h"
#include "sm80/traits.cuh"

namespace sageattn::sm80 {

// Quantizes the warp's rows row0 + lane / 4 + {0, 8, 16, 24} of one Q head whose token 0 is at
// `head_rows` (sequence rows; the warp's first row is row0) into rows tile_row0 + the same offsets
// of the CTA's Q tile `q_tile` (generic pointer to shared memory, layout of TileLoader::load_q), and
// returns the scale of this lane's group: 0 for a group without a quantizable value. Rows at or past
// `seqlen` and columns at or past `head_dim` are zeros. Per-thread groups are the rows of the warp's
// 32 with equal row % 8, i.e. exactly the 4 rows a lane quad holds; per-warp groups the whole warp.
// The caller synchronizes the CTA before the tile is read.
template <class Tr>
__device__ __forceinline__ float quantize_q_warp(const typename Tr::T* head_rows, int64_t stride_token, int row0,
                                                 int seqlen, int head_dim, bool rotate, bool per_warp,
                                                 unsigned char* q_tile, int tile_row0) {
  static_assert(Tr::kHeadDim == 64 || Tr::kHeadDim == 128, "Q of head dim 256 comes from the pre-pass");
  static_assert(kWarpRows == 32 && kQGroupsPerWarp == 8, "a lane quad holds one per-thread group");
  using T = typename Tr::T;
  constexpr int kRows = kWarpRows / kQGroupsPerWarp;  // 4 rows per lane
  const int lane = threadIdx.x % 32;
  using Rows = LaneQRows<T, kRows, Tr::kHeadDim / 32>;
  Rows rows;
  rows.load(head_rows, stride_token, row0, seqlen, head_dim);
  // Head dim 64 (64 values per lane): converted (and rotated) once for the maximum and the bytes, as
  // the sm90 kernel does (sm90/q_quantize.cuh); nothing else of the item is live yet. Head dim 128
  // (128 values) converts twice.
  typename Rows::template Kept<Tr::kHeadDim == 64> kept;
  float m = rows.abs_max_keeping(rotate, kept);
  const int group_lanes = per_warp ? 32 : 4;
  for (int offset = 1; offset < group_lanes; offset *= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
  const bool quantizable = m >= kMinQuantizableAmax;
  const float inv = quantizable ? 127.f / m : 0.f;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int row = tile_row0 + lane / 4 + 8 * r;
#pragma unroll
    for (int j = 0; j < Tr::kHeadDim / 32; ++j) {
      // Byte column 8 (4 j + lane % 4) is the (lane % 2)-th half of 16-byte chunk (4 j + lane % 4) / 2.
      const int offset = swizzled_offset<Tr::kInt8ChunksPerRow>(row, (4 * j + lane % 4) / 2) + (lane % 2) * 8;
      *reinterpret_cast<uint2*>(q_tile + offset) = rows.int8_bytes_from(kept, r, j, rotate, inv);
    }
  }
  if (!quantizable) return 0.f;
  // Q's scale absorbs the rotation's factor 8 (exact: a power of two).
  return rotate ? m / 127.f * kRotationScale : m / 127.f;
}

}  // namespace sageattn::sm80
