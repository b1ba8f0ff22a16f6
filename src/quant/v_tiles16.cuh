// 16-bit V tiles for the sm90 kernel's 16-bit P.V (SAGEATTN_KERNEL_SM90_WGMMA_PV16), a device
// function of the fused sm90 pre-pass (quant/prepass_sm90.cu). V is not quantized: its bits are
// copied into tiles the attention kernel moves verbatim into shared memory with one bulk copy. One
// tile per 128 tokens of a (batch, kv head), MN-major for the transposed P.V wgmma: kChannels / 64
// panels of 16 KB (channels 0..63, 64..127) of [128 tokens][128 bytes], 128-byte swizzled (16-byte
// chunk c of token row r at chunk c ^ (r % 8)); kChannels = 128, or 64 at head dim 64. Tokens past
// the sequence and channels past the head dim are zeros (P is 0 there, and 0 * NaN would be NaN).
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
#include "quant/v_fp8.cuh"

namespace sageattn {

constexpr int kV16PanelChannels = 64;  // 64 channels of 2 bytes: one 128-byte swizzled row per token
constexpr int kV16PanelBytes = kSm90KeyTileTokens * kV16PanelChannels * 2;

// How kThreads threads split a tile of kChannels channels: kChunks 16-byte chunks (8 channels)
// per token, one per thread, kThreads / kChunks tokens per pass.
template <int kThreads, int kChannels>
struct V16Copy {
  static_assert(kChannels == 64 || kChannels == 128, "head dims 64 and 128");
  static constexpr int kChunks = kChannels * 2 / 16;
  static constexpr int kTokensPerPass = kThreads / kChunks;
  static constexpr int kPasses = kSm90KeyTileTokens / kTokensPerPass;
  static constexpr int kTileBytes = kChannels / kV16PanelChannels * kV16PanelBytes;
  static_assert(kSm90KeyTileTokens % kTokensPerPass == 0, "whole passes");
};

// This thread's chunks of a tile into registers (copy_v16_tile's mapping), zeros past the
// sequence and the head dim.
template <int kThreads, int kChannels>
__device__ __forceinline__ void load_v16_chunks(const VTile& tile, int head_dim,
                                                uint4 (&raw)[V16Copy<kThreads, kChannels>::kPasses]) {
  using Copy = V16Copy<kThreads, kChannels>;
  constexpr int kTokensPerPass = Copy::kTokensPerPass;
  const int chunk = threadIdx.x % Copy::kChunks;
  const int valid_tokens = tile.side.length - tile.index * kSm90KeyTileTokens;
#pragma unroll
  for (int pass = 0; pass < Copy::kPasses; ++pass) {
    const int token = pass * kTokensPerPass + threadIdx.x / Copy::kChunks;
    raw[pass] = make_uint4(0u, 0u, 0u, 0u);
    if (token < valid_tokens && chunk * 8 < head_dim)  // head_dim is a multiple of 8
      raw[pass] = *reinterpret_cast<const uint4*>(tile.src + token * tile.stride_token_bytes + chunk * 16);
  }
}

// One CTA of kThreads threads per tile (decode_v_tile), no shared memory: kChannels / 8 consecutive
// threads copy one token's row as 16-byte chunks (8 channels each) from their registers
// (load_v16_chunks).
template <int kThreads, int kChannels>
__device__ __forceinline__ void copy_v16_tile(const QuantizeVArgs& a, const VTile& tile,
                                              const uint4 (&raw)[V16Copy<kThreads, kChannels>::kPasses]) {
  using Copy = V16Copy<kThreads, kChannels>;
  constexpr int kChunksPerToken = Copy::kChunks;
  constexpr int kChunksPerPanelRow = kV16PanelChannels * 2 / 16;     // 8
  constexpr int kTokensPerPass = Copy::kTokensPerPass;
  // Tiles past a packed sequence's end are never read (the kernel visits ceil(length / 128)
  // tiles). Never the case for dense batches. Uniform over the CTA.
  if (tile.index * kSm90KeyTileTokens >= tile.side.length) return;
  const int chunk = threadIdx.x % kChunksPerToken;
  const int panel = chunk / kChunksPerPanelRow, in_row = chunk % kChunksPerPanelRow;
  const int64_t tile0 = workspace_row0(a.packing.cu_kv, tile.side, tile.batch, tile.head, a.heads_kv,
                                       a.packing.slots_kv, static_cast<int64_t>(a.tiles) * kSm90KeyTileTokens) /
                        kSm90KeyTileTokens;
  uint8_t* dst = a.v_tiles + (tile0 + tile.index) * Copy::kTileBytes + panel * kV16PanelBytes;
#pragma unroll
  for (int pass = 0; pass < Copy::kPasses; ++pass) {
    const int row = pass * kTokensPerPass + threadIdx.x / kChunksPerToken;
    *reinterpret_cast<uint4*>(dst + row * 128 + ((in_row ^ (row % 8)) * 16)) = raw[pass];
  }
}

}  // namespace sageattn
