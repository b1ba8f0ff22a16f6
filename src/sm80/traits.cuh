// Tunables and shared-memory geometry of the sm80 mma.sync kernel.
//
// A CTA owns 128 Q rows (4 warps x 32 rows: two m16 tiles per warp, so each K/V fragment read from
// shared memory feeds two MMAs) and streams K/V in 64-token tiles through a 2-stage cp.async
// pipeline. Budget at head dim 128: Q int8 16 KB + K int8 2 x 8 KB + V 16-bit 2 x 16 KB = 64 KB,
// so two CTAs fit in an SM on every sm80+ part (>= 100 KB); registers per lane: O 128 fp32,
// S 64, Q fragments 16 -> the 255-register cap of two 128-thread CTAs per SM.
//
// Head dim 256: O of 32 rows x 256 columns would need 256 registers per lane, so 8 warps split the
// columns: warps w and w + 4 own the same 32 rows (the 32-row INT8 Q groups stay as they are), both
// compute the rows' scores and softmax (the INT8 Q.K^T, at twice the 16-bit rate, is computed
// twice), and each accumulates P.V for its 128 columns. Shared memory: Q 32 KB + K 2 x 16 KB + V
// 2 x 32 KB = 128 KB, one CTA per SM: sm80, sm87, sm90 and sm100 (163-227 KB per block), not sm86,
// sm89 or sm120 (99-101 KB per block; refused by the plan, api/plan.cpp).
#pragma once
#include "common/tiling.h"

namespace sageattn::sm80 {

template <int kHeadDim_, typename T_>
struct Traits {
  using T = T_;  // dtype of V, P (as fed to the P.V MMA) and the output
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kRowWarps = kQBlockRows / kWarpRows;  // warps with distinct rows
  static constexpr int kColumnSplit = kHeadDim == 256 ? 2 : 1;  // warps sharing rows, one per O column range
  static constexpr int kWarps = kRowWarps * kColumnSplit;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kMTiles = kWarpRows / 16;        // m16 tiles per warp
  static constexpr int kNTiles = kKBlockTokens / 8;     // n8 tiles of S per K tile
  static constexpr int kDTiles = kHeadDim / 8 / kColumnSplit;  // n8 tiles of O per warp
  static constexpr int kQKSteps = kHeadDim / 32;        // k32 steps of the int8 MMA
  static constexpr int kPVSteps = kKBlockTokens / 16;   // k16 steps of the 16-bit MMA
  static constexpr int kStages = 2;

  static constexpr int kInt8ChunksPerRow = kHeadDim / 16;  // 16-byte chunks in a Q or K row
  static constexpr int kVChunksPerRow = kHeadDim * 2 / 16;  // 16-byte chunks in a V row

  static constexpr int kQTileBytes = kQBlockRows * kHeadDim;
  static constexpr int kKTileBytes = kKBlockTokens * kHeadDim;
  static constexpr int kVTileBytes = kKBlockTokens * kHeadDim * 2;
  static constexpr int kQOffset = 0;
  static constexpr int kKOffset = kQOffset + kQTileBytes;
  static constexpr int kVOffset = kKOffset + kStages * kKTileBytes;
  static constexpr int kSharedBytes = kVOffset + kStages * kVTileBytes;

  // Head dim 64 (O: 64 registers per lane) fits 3 CTAs per SM in 168 registers (40-64 bytes of
  // spills): H100, B16 H16 fp16, against 2 CTAs in one call: N = 577 161 -> 168 TOPS, 1K 250 -> 253,
  // 4K equal (docs/design/sm80_kernel.md).
  static constexpr int kMinBlocksPerSM = kHeadDim == 256 ? 1 : kHeadDim == 64 ? 3 : 2;
  // The masked and packed instantiations keep 2 at head dim 64: at 168 registers they spilled
  // 124-324 bytes (masks: 320), where 2 CTAs spill nothing.
  static constexpr int kMinBlocksPerSMWithMasks = kHeadDim == 256 ? 1 : 2;
  // The kernel quantizes its own Q rows (sm80/q_quantize.cuh); head dim 256 reads the pre-pass's.
  static constexpr bool kQuantizesQ = kHeadDim <= 128;

  static_assert(kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256, "instantiated head dims");
};

// XOR swizzle of 16-byte chunks: ldmatrix reads one chunk from each of 8 consecutive rows; without
// it rows of 64/128/256 bytes put all 8 in the same banks (an 8-way conflict).
template <int kChunksPerRow>
__device__ __forceinline__ int swizzled_offset(int row, int chunk) {
  static_assert(kChunksPerRow == 4 || kChunksPerRow % 8 == 0, "supported row widths");
  int physical;
  if constexpr (kChunksPerRow == 4) {
    physical = chunk ^ ((row >> 1) & 3);  // two 64-byte rows share one 128-byte bank line
  } else {
    physical = (chunk & ~7) | ((chunk ^ row) & 7);
  }
  return (row * kChunksPerRow + physical) * 16;
}

}  // namespace sageattn::sm80
