// 16-bit V tiles for the sm90 kernel's 16-bit P.V (SAGEATTN_KERNEL_SM90_WGMMA_PV16), a device
// function of the fused sm90 pre-pass (quant/prepass_sm90.cu). V is not quantized: its bits are
// copied into tiles the attention kernel moves verbatim into shared memory with one bulk copy. One
// 32 KB tile per 128 tokens of a (batch, kv head), MN-major for the transposed P.V wgmma: two 16 KB
// panels (channels 0..63 and 64..127) of [128 tokens][128 bytes], 128-byte swizzled (16-byte chunk
// c of token row r at chunk c ^ (r % 8)). Tokens past the sequence and channels past the head dim
// are zeros (P is 0 there, and 0 * NaN would be NaN).
//
// Why a copy at all: the attention kernel's producer warps could read V from the caller's tensor
// with cp.async instead (no pass, no workspace), but that measured 35 % slower (H200, hd128 4K-16K):
// its ~440 issue slots per warp and tile land on the sub-partitions of the softmax warps, which are
// issue-bound (docs/design/sm90_kernel.md).
#pragma once
#include <cstdint>

#include "common/kernel_args.h"
#include "common/sequences.cuh"
#include "common/tiling.h"

namespace sageattn {

constexpr int kV16PanelChannels = 64;  // 64 channels of 2 bytes: one 128-byte swizzled row per token
constexpr int kV16PanelBytes = kSm90KeyTileTokens * kV16PanelChannels * 2;
constexpr int kV16TileBytes = 2 * kV16PanelBytes;
static_assert(kV16TileBytes == kSm90KeyTileTokens * kFp8VTileChannels * 2, "a tile is 128 tokens x 128 channels");

// One CTA of 128 threads per tile, no shared memory: 16 consecutive threads copy one token's
// 256-byte row as 16-byte chunks (8 channels each), 8 tokens per pass, 16 passes.
template <typename T>
__device__ __forceinline__ void copy_v16_tile(const QuantizeVArgs& a, int tile_index, int head, int batch) {
  static_assert(sizeof(T) == 2, "16-bit V");
  constexpr int kChunksPerToken = kFp8VTileChannels * 2 / 16;        // 16
  constexpr int kChunksPerPanelRow = kV16PanelChannels * 2 / 16;     // 8
  constexpr int kTokensPerPass = 128 / kChunksPerToken;              // 8
  const SequenceSide side = key_side(a.packing, batch, a.seqlen_kv);
  // Tiles past a packed sequence's end are never read (the kernel visits ceil(length / 128)
  // tiles). Never taken for dense batches. Uniform over the CTA.
  if (tile_index * kSm90KeyTileTokens >= side.length) return;
  const int chunk = threadIdx.x % kChunksPerToken, c = chunk * 8;
  const int panel = chunk / kChunksPerPanelRow, in_row = chunk % kChunksPerPanelRow;
  const T* v = static_cast<const T*>(a.v) +
               token0_offset(side, batch, head, a.v_stride_batch, a.v_stride_head, a.v_stride_token);
  const int64_t tile0 = workspace_row0(a.packing.cu_kv, side, batch, head, a.heads_kv, a.packing.slots_kv,
                                       static_cast<int64_t>(a.tiles) * kSm90KeyTileTokens) /
                        kSm90KeyTileTokens;
  uint8_t* dst = a.v_tiles + (tile0 + tile_index) * kV16TileBytes + panel * kV16PanelBytes;
  uint4 rows[kSm90KeyTileTokens / kTokensPerPass];
#pragma unroll
  for (int pass = 0; pass < kSm90KeyTileTokens / kTokensPerPass; ++pass) {  // all loads first
    const int token = tile_index * kSm90KeyTileTokens + pass * kTokensPerPass + threadIdx.x / kChunksPerToken;
    rows[pass] = make_uint4(0u, 0u, 0u, 0u);
    if (token < side.length && c < a.head_dim)  // head_dim is a multiple of 8
      rows[pass] = *reinterpret_cast<const uint4*>(v + static_cast<int64_t>(token) * a.v_stride_token + c);
  }
#pragma unroll
  for (int pass = 0; pass < kSm90KeyTileTokens / kTokensPerPass; ++pass) {
    const int row = pass * kTokensPerPass + threadIdx.x / kChunksPerToken;
    *reinterpret_cast<uint4*>(dst + row * 128 + ((in_row ^ (row % 8)) * 16)) = rows[pass];
  }
}

}  // namespace sageattn
