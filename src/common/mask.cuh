// Masks inside the attention kernels (docs/design/masks.md): per 128 x 128 tile a TileCode says
// whether the tile is skipped, computed as usual, or computed with the element mask applied to
// each score. Shared by the sm80 and sm90 kernels.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/kernel_args.h"
#include "common/tile_codes.h"
#include "common/tiling.h"
#include "sageattn/sageattn.h"

namespace sageattn {

// The codes of one (batch, head, Q block): a row of the code matrix.
struct TileCodeRow {
  const uint8_t* row;  // NULL: every tile plain
  int64_t stride;

  // kKeyTile is the kernel's key tile (64 or 128 tokens); codes are per 128 keys.
  template <int kKeyTile>
  __device__ __forceinline__ uint8_t code(int tile) const {
    static_assert(kMaskBlock % kKeyTile == 0, "a key tile lies inside one mask block");
    return row == nullptr ? kTilePlain : row[(tile / (kMaskBlock / kKeyTile)) * stride];
  }
  // The first tile >= `tile` that is not skipped, or `end`.
  template <int kKeyTile>
  __device__ __forceinline__ int next_visited(int tile, int end) const {
    if (row == nullptr) return tile;
    while (tile < end && code<kKeyTile>(tile) == kTileSkip) ++tile;
    return tile;
  }
};

// The codes of one row seen by a whole warp, 32 tiles at a time: lane i loads the code of tile
// base + i, two ballots turn them into bit masks, and the next visited tile is a find-first-set.
// For kernels whose key tile is one code (128 keys); every lane of the warp must call it alike.
struct TileCodeWindow {
  TileCodeRow row;
  int end;   // tiles [0, end) exist
  int lane;
  int base = -1;  // first tile of the loaded window (-1: none loaded)
  uint32_t visit = 0, element_bits = 0;

  __device__ __forceinline__ void load(int tile) {
    base = tile & ~31;
    const int mine = base + lane;
    const uint8_t code = mine < end ? row.code<kMaskBlock>(mine) : kTileSkip;
    visit = __ballot_sync(0xffffffffu, code != kTileSkip);
    element_bits = __ballot_sync(0xffffffffu, code == kTileElementMask);
  }
  // The first tile >= `tile` that is not skipped, or `end`.
  __device__ __forceinline__ int next_visited(int tile) {
    while (tile < end) {
      if (base < 0 || tile >= base + 32) load(tile);
      const uint32_t ahead = visit >> (tile - base);
      if (ahead != 0) return tile + __ffs(ahead) - 1;
      tile = base + 32;
    }
    return end;
  }
  // Whether tile (visited, inside the loaded window) is coded kTileElementMask.
  __device__ __forceinline__ bool element(int tile) const { return (element_bits >> (tile - base)) & 1u; }
};

__device__ __forceinline__ TileCodeRow tile_code_row(const AttentionArgs& a, int batch, int head, int q_block) {
  const MaskView& c = a.tile_codes;
  if (c.data == nullptr) return {nullptr, 0};
  static_assert(kMaskBlock == 128, "Q blocks of both kernels are 128 rows");
  return {static_cast<const uint8_t*>(c.data) + batch * c.stride_batch + head * c.stride_head + q_block * c.stride_row,
          c.stride_column};
}

// Element mask values. T is the dtype of q (the element type of SAGEATTN_MASK_ADDITIVE).
template <typename T>
__device__ __forceinline__ int64_t mask_element_bytes(int type) {
  return type == SAGEATTN_MASK_BOOL ? 1 : type == SAGEATTN_MASK_ADDITIVE_FP32 ? 4 : sizeof(T);
}
template <typename T>
__device__ __forceinline__ float additive_mask_value(int type, const char* base, int64_t index) {
  return type == SAGEATTN_MASK_ADDITIVE_FP32 ? reinterpret_cast<const float*>(base)[index]
                                             : static_cast<float>(reinterpret_cast<const T*>(base)[index]);
}

// Whether an additive mask value leaves its key attended: false for NaN, -inf and values <= -1e30.
__host__ __device__ __forceinline__ bool additive_keeps(float value) { return value > -kMaxMaskValue; }

// The additive term of an element-mask value in base-2 score units: 0 (keep) or -inf for a boolean
// mask; for an additive mask its value * log2(e), with NaN and values <= -1e30 as -inf and values
// capped at 1e30 (kMaxMaskValue), so that no mask value can produce a NaN or an infinite row maximum,
// and the mask pass (additive_keeps) agrees on which keys are masked.
template <typename T>
__device__ __forceinline__ float mask_term_log2(const AttentionArgs& a, const char* row_base, int key) {
  const int64_t index = key * a.mask.stride_column;
  if (a.mask_type == SAGEATTN_MASK_BOOL) return row_base[index] != 0 ? 0.f : -INFINITY;
  const float value = additive_mask_value<T>(a.mask_type, row_base, index);
  if (!additive_keeps(value)) return -INFINITY;
  return fminf(value, kMaxMaskValue) * static_cast<float>(kLog2e);
}

// The 128 keep bits of row `row` in tile `tile` (MaskTileArgs::bits).
__device__ __forceinline__ uint4 mask_bits_of(const AttentionArgs& a, int batch, int head, int row, int tile) {
  const MaskView& m = a.mask_bits;
  return static_cast<const uint4*>(m.data)[batch * m.stride_batch + head * m.stride_head + row * m.stride_row +
                                           tile * m.stride_column];
}

// Start of mask row `row` of (batch, head), in bytes.
template <typename T>
__device__ __forceinline__ const char* mask_row(const AttentionArgs& a, int batch, int head, int row) {
  const int64_t index = batch * a.mask.stride_batch + head * a.mask.stride_head + row * a.mask.stride_row;
  return static_cast<const char*>(a.mask.data) + index * mask_element_bytes<T>(a.mask_type);
}

}  // namespace sageattn
