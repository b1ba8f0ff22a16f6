// 16-bit V tiles for the sm90 kernel's 16-bit P.V (SAGEATTN_KERNEL_SM90_WGMMA_PV16), a device
// function of the fused sm90 pre-pass (quant/prepass_sm90.cu). V is not quantized: its values are
// copied bit for bit, transposed into the layout the attention kernel copies verbatim into shared
// memory. One 32 KB tile per 128 tokens of a (batch, kv head): two 16 KB halves (tokens 0..63 and
// 64..127) of [128 channels][64 tokens], K-major for the P.V wgmma (tokens contiguous, 128-byte
// rows, 128-byte swizzled: 16-byte chunk c of row r at chunk c ^ (r % 8)). Tokens keep their order:
// the 16-bit A fragment is the accumulator's own order (ptx/wgmma.cuh), unlike E4M3's. Tokens past
// the sequence and channels past the head dim are zeros (P is 0 there, and 0 * NaN would be NaN).
#pragma once
#include <cstdint>

#include "common/kernel_args.h"
#include "common/sequences.cuh"
#include "common/tiling.h"

namespace sageattn {

constexpr int kV16HalfTokens = 64;  // 64 tokens of 2 bytes: one 128-byte swizzled row per channel
constexpr int kV16HalfBytes = kFp8VTileChannels * kV16HalfTokens * 2;
constexpr int kV16TileBytes = 2 * kV16HalfBytes;
static_assert(kV16TileBytes == kSm90KeyTileTokens * kFp8VTileChannels * 2, "a tile is 128 tokens x 128 channels");

// One CTA of 128 threads per tile, no shared memory: every lane transposes 8 tokens x 8 channels in
// registers. Warp w owns channels 32w..32w+31; lane = 8 * channel group + token group, so each
// load instruction of a warp reads 8 tokens x 64 contiguous bytes and each store writes 4 whole
// 128-byte rows.
template <typename T>
__device__ __forceinline__ void transpose_v16_tile(const QuantizeVArgs& a, int tile_index, int head, int batch) {
  static_assert(sizeof(T) == 2, "16-bit V");
  const SequenceSide side = key_side(a.packing, batch, a.seqlen_kv);
  // Tiles past a packed sequence's end are never read (the kernel visits ceil(length / 128)
  // tiles). Never taken for dense batches. Uniform over the CTA.
  if (tile_index * kSm90KeyTileTokens >= side.length) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int token_group = lane % 8, c0 = 32 * warp + 8 * (lane / 8);
  const char* base = static_cast<const char*>(a.v) +
                     token0_offset(side, batch, head, a.v_stride_batch, a.v_stride_head, a.v_stride_token) * sizeof(T);
  const int64_t tile0 = workspace_row0(a.packing.cu_kv, side, batch, head, a.heads_kv, a.packing.slots_kv,
                                       static_cast<int64_t>(a.tiles) * kSm90KeyTileTokens) /
                        kSm90KeyTileTokens;
  uint8_t* dst = a.v_tiles + (tile0 + tile_index) * kV16TileBytes;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int t0 = tile_index * kSm90KeyTileTokens + half * kV16HalfTokens + 8 * token_group;
    uint4 in[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      in[i] = make_uint4(0u, 0u, 0u, 0u);
      if (t0 + i < side.length && c0 < a.head_dim)  // head_dim is a multiple of 8
        in[i] = *reinterpret_cast<const uint4*>(base + (static_cast<int64_t>(t0 + i) * a.v_stride_token + c0) * sizeof(T));
    }
    // Channel 2m + s of token i is half s of word m of in[i]; out[2m + s] word j packs tokens 2j, 2j + 1.
    const uint32_t words[8][4] = {
        {in[0].x, in[0].y, in[0].z, in[0].w}, {in[1].x, in[1].y, in[1].z, in[1].w},
        {in[2].x, in[2].y, in[2].z, in[2].w}, {in[3].x, in[3].y, in[3].z, in[3].w},
        {in[4].x, in[4].y, in[4].z, in[4].w}, {in[5].x, in[5].y, in[5].z, in[5].w},
        {in[6].x, in[6].y, in[6].z, in[6].w}, {in[7].x, in[7].y, in[7].z, in[7].w}};
    uint8_t* half_tile = dst + half * kV16HalfBytes;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int m = e / 2;
      const uint32_t select = e % 2 == 0 ? 0x5410u : 0x7632u;  // low or high halves of both words
      const uint4 out = make_uint4(__byte_perm(words[0][m], words[1][m], select), __byte_perm(words[2][m], words[3][m], select),
                                   __byte_perm(words[4][m], words[5][m], select), __byte_perm(words[6][m], words[7][m], select));
      const int row = c0 + e;
      *reinterpret_cast<uint4*>(half_tile + row * 128 + ((token_group ^ (row % 8)) * 16)) = out;
    }
  }
}

}  // namespace sageattn
