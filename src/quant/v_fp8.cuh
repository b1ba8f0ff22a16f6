// FP8 V for the sm90 kernel (docs/design/quantization.md, "FP8 P.V") as device functions of the
// fused sm90 pre-pass (quant/prepass_sm90.cu); compiled for sm_90a only (E4M3 conversion):
//  1. v_stats_block: per (batch, kv head, token chunk), channel sums, maxima and minima of V;
//  2. quantize_v_tile: per (batch, kv head, 128-token tile), reduce the chunks to vbar and delta_v,
//     then write the E4M3 tile the attention kernel copies verbatim into shared memory:
//     [channel][token slot] (kTileChannels channels: the padded head dim, 64, 128 or 256), tokens
//     permuted inside every 16 so that slot order is the order in which a thread's P accumulator
//     values form the FP8 wgmma A fragment
//     (docs/design/sm90_kernel.md), rows 128-byte swizzled. The max and min give max|V - vbar|
//     without a second pass over V: max_j |V_j - vbar| = max(max_j V_j - vbar, vbar - min_j V_j),
//     and float subtraction is monotone, so this equals the per-element maximum of the rounded
//     differences.
#pragma once
#include <cfloat>
#include <cstdint>

#include "common/element.cuh"
#include "common/kernel_args.h"
#include "common/sequences.cuh"
#include "common/tiling.h"
#include "ptx/convert.cuh"
#include "ptx/grid_dependency.cuh"

namespace sageattn {

// Channels of the statistics, scales and means per K/V head: 128 at head dims 64 and 128 (zeros
// past head_dim), 256 at 256; the tiles hold the padded head dim's (quantize_v_tile).
template <int kTileChannels>
constexpr int kVChannelsOf = fp8_v_channels(kTileChannels);
constexpr int kVTileTokens = kSm90KeyTileTokens;
enum VStat { kVSum = 0, kVMax = 1, kVMin = 2, kVStats = 3 };

// One CTA of kThreads; `partial` is shared memory of kVStats * kThreads * 8 floats.
template <typename T, int kThreads, int kVChannels>
__device__ __forceinline__ void v_stats_block(const QuantizeVArgs& a, int chunk, int head, int batch,
                                              float* partial) {
  constexpr int kLanesPerRow = kVChannels / 8;  // one 16-byte vector of 8 channels per lane
  constexpr int kRowsPerPass = kThreads / kLanesPerRow;
  auto at = [&](int stat, int row, int c) -> float& { return partial[(stat * kRowsPerPass + row) * kVChannels + c]; };
  const int col = (threadIdx.x % kLanesPerRow) * 8;
  const int row_lane = threadIdx.x / kLanesPerRow;
  const SequenceSide side = key_side(a.packing, batch, a.seqlen_kv);
  const char* base = static_cast<const char*>(a.v) +
                     (token0_offset(side, batch, head, a.v_stride_batch, a.v_stride_head, a.v_stride_token) + col) *
                         sizeof(T);
  const int first = chunk * a.stat_chunk_tokens;
  const int last = min(first + a.stat_chunk_tokens, side.length);

  float sum[8], mx[8], mn[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    sum[e] = 0.f;
    mx[e] = -FLT_MAX;
    mn[e] = FLT_MAX;
  }
  if (col < a.head_dim) {
#pragma unroll 4
    for (int t = first + row_lane; t < last; t += kRowsPerPass) {
      float x[8];
      unpack8<T>(*reinterpret_cast<const uint4*>(base + static_cast<int64_t>(t) * a.v_stride_token * sizeof(T)), x);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        sum[e] += x[e];
        mx[e] = fmaxf(mx[e], x[e]);
        mn[e] = fminf(mn[e], x[e]);
      }
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    at(kVSum, row_lane, col + e) = sum[e];
    at(kVMax, row_lane, col + e) = mx[e];
    at(kVMin, row_lane, col + e) = mn[e];
  }
  __syncthreads();
  float* out = a.stats + ((static_cast<int64_t>(batch) * a.heads_kv + head) * a.stat_chunks + chunk) * kVStats * kVChannels;
  for (int i = threadIdx.x; i < kVStats * kVChannels; i += kThreads) {
    const int stat = i / kVChannels, c = i % kVChannels;
    float r = at(stat, 0, c);
    for (int row = 1; row < kRowsPerPass; ++row) {
      const float x = at(stat, row, c);
      r = stat == kVSum ? r + x : (stat == kVMax ? fmaxf(r, x) : fminf(r, x));
    }
    out[i] = r;
  }
}

// Slot of token `t` (0..15) inside its group of 16: a thread's accumulator holds, per 8-column
// block, tokens 2q and 2q + 1 (q = lane % 4); four consecutive fragment bytes 4q..4q+3 take tokens
// 2q, 2q + 1, 8 + 2q, 9 + 2q.
__device__ __forceinline__ int slot_in_16(int t) { return 4 * ((t % 8) / 2) + 2 * (t / 8) + t % 2; }

template <int kVChannels>
struct VTileShared {
  float mean[kVChannels];
  float inv_scale[kVChannels];
  __align__(16) uint8_t tile[kVChannels][kVTileTokens];
};

constexpr int kVTileThreads = 256;

// One V tile decoded: 128 tokens of one (batch, kv head).
struct VTile {
  bool active;  // false: a tile past a packed sequence's end (nothing to read or write)
  int index, head, batch;
  SequenceSide side;  // the sequence's place and tokens
  const char* src;  // the tile's token 0 in the caller's tensor
  int64_t stride_token_bytes;
};

template <typename T>
__device__ __forceinline__ VTile decode_v_tile(const QuantizeVArgs& a, int tile_index, int head, int batch) {
  VTile t;
  const SequenceSide side = key_side(a.packing, batch, a.seqlen_kv);
  t.index = tile_index;
  t.head = head;
  t.batch = batch;
  t.side = side;
  // Tiles past a packed sequence's end hold nothing; tile 0 always runs, even for an empty
  // sequence, because it writes the V scale and mean the attention epilogue reads. Never the case
  // for dense batches.
  t.active = tile_index == 0 || tile_index * kVTileTokens < side.length;
  t.stride_token_bytes = a.v_stride_token * static_cast<int64_t>(sizeof(T));
  t.src = static_cast<const char*>(a.v) +
          (token0_offset(side, batch, head, a.v_stride_batch, a.v_stride_head, a.v_stride_token) +
           static_cast<int64_t>(tile_index) * kVTileTokens * a.v_stride_token) *
              static_cast<int64_t>(sizeof(T));
  return t;
}

// The tokens and channels of a tile of kChannels channels this thread converts in quantize_v_tile:
// a pair of adjacent tokens (adjacent slots too) for kChannels / 4 channels, as kVectors vectors of 8
// from channel c0().
template <int kChannels>
struct VTileThread {
  static constexpr int kPairs = kVTileTokens / 2;
  static constexpr int kVectors = kChannels / 8 / (kVTileThreads / kPairs);  // 4 (or 2) vectors of 8
  __device__ static int t0() { return 2 * (threadIdx.x % kPairs); }
  __device__ static int c0() { return threadIdx.x / kPairs * (kVectors * 8); }
};

// This thread's vectors of a tile into registers (VTileThread), zeros past the sequence and the
// head dim.
template <typename T, int kChannels>
__device__ __forceinline__ void load_v_tile_vectors(const VTile& tile, int head_dim,
                                                    uint4 (&raw)[VTileThread<kChannels>::kVectors][2]) {
  using Thread = VTileThread<kChannels>;
  const int t0 = Thread::t0(), c0 = Thread::c0();
  const int valid_tokens = tile.side.length - tile.index * kVTileTokens;
#pragma unroll
  for (int vec = 0; vec < Thread::kVectors; ++vec)
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      const int c = c0 + vec * 8;
      raw[vec][t] = make_uint4(0u, 0u, 0u, 0u);
      if (t0 + t < valid_tokens && c < head_dim)
        raw[vec][t] = *reinterpret_cast<const uint4*>(tile.src + (t0 + t) * tile.stride_token_bytes +
                                                      c * static_cast<int64_t>(sizeof(T)));
    }
}

// Quantizes a decoded, active tile from this thread's vectors in registers (load_v_tile_vectors)
// with a CTA of kVTileThreads threads, and writes its first kTileChannels channels (64, 128 or 256:
// the tile of the attention kernel's head dim). Every thread must call it (it synchronizes the CTA).
template <typename T, int kTileChannels>
__device__ __forceinline__ void quantize_v_tile(const QuantizeVArgs& a, const VTile& tile,
                                                const uint4 (&raw)[VTileThread<kTileChannels>::kVectors][2],
                                                VTileShared<kVChannelsOf<kTileChannels>>& sh) {
  constexpr int kVChannels = kVChannelsOf<kTileChannels>;
  static_assert(kVTileThreads >= kVChannels, "one thread per channel reduces the statistics");
  static_assert(kTileChannels == 64 || kTileChannels == kVChannels, "tiles of head dim 64, 128 or 256");
  constexpr int kVectors = VTileThread<kTileChannels>::kVectors;
  const int head = tile.head, batch = tile.batch, tile_index = tile.index;
  const int64_t head_index = static_cast<int64_t>(batch) * a.heads_kv + head;
  const SequenceSide side = tile.side;
  const int t0 = VTileThread<kTileChannels>::t0(), c0 = VTileThread<kTileChannels>::c0();

  // The statistics are reduced while the caller's loads are in flight (L2-resident partials).
  ptx::grid_dependency_wait();  // the statistics grid (a programmatic launch may start before it ends)
  if (threadIdx.x < kVChannels) {
    const int c = threadIdx.x;
    const float* stats = a.stats + head_index * a.stat_chunks * kVStats * kVChannels;
    float sum = 0.f, mx = -FLT_MAX, mn = FLT_MAX;
    const int chunks = sequence_chunks(a.packing, side.length, a.stat_chunks, a.stat_chunk_tokens);
    for (int i = 0; i < chunks; ++i) {
      sum += stats[(i * kVStats + kVSum) * kVChannels + c];
      mx = fmaxf(mx, stats[(i * kVStats + kVMax) * kVChannels + c]);
      mn = fminf(mn, stats[(i * kVStats + kVMin) * kVChannels + c]);
    }
    const float vbar =
        (a.smooth_v && c < a.head_dim && side.length > 0) ? sum / static_cast<float>(side.length) : 0.f;
    const float amax = c < a.head_dim ? fmaxf(__fsub_rn(mx, vbar), __fsub_rn(vbar, mn)) : 0.f;
    const bool quantizable = amax >= kMinQuantizableAmax;
    sh.mean[c] = vbar;
    sh.inv_scale[c] = quantizable ? kE4m3MaxFinite / amax : 0.f;
    if (tile_index == 0) {
      a.v_scale[head_index * kVChannels + c] = quantizable ? amax / kE4m3MaxFinite : 0.f;
      a.v_mean[head_index * kVChannels + c] = vbar;
    }
  }
  __syncthreads();

  const int slot = t0 / 16 * 16 + slot_in_16(t0 % 16);
#pragma unroll
  for (int vec = 0; vec < kVectors; ++vec) {
    const int c = c0 + vec * 8;
    float x[2][8];
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const bool valid = tile_index * kVTileTokens + t0 + k < side.length && c < a.head_dim;
      unpack8<T>(raw[vec][k], x[k]);
#pragma unroll
      for (int e = 0; e < 8; ++e)  // padding tokens stay exactly 0 (not -vbar * inv)
        x[k][e] = valid ? __fmul_rn(__fsub_rn(x[k][e], sh.mean[c + e]), sh.inv_scale[c + e]) : 0.f;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e)
      *reinterpret_cast<uint16_t*>(&sh.tile[c + e][slot]) = ptx::e4m3x2(x[0][e], x[1][e]);
  }
  __syncthreads();

  const int64_t tile0 = workspace_row0(a.packing.cu_kv, side, batch, head, a.heads_kv, a.packing.slots_kv,
                                       static_cast<int64_t>(a.tiles) * kVTileTokens) / kVTileTokens;
  uint8_t* dst = a.v_tiles + (tile0 + tile_index) * (kTileChannels * kVTileTokens);
  constexpr int kChunksPerRow = kVTileTokens / 16;
  for (int i = threadIdx.x; i < kTileChannels * kChunksPerRow; i += kVTileThreads) {
    const int row = i / kChunksPerRow, chunk = i % kChunksPerRow;
    *reinterpret_cast<uint4*>(dst + row * kVTileTokens + (chunk ^ (row % 8)) * 16) =
        *reinterpret_cast<const uint4*>(&sh.tile[row][chunk * 16]);
  }
}

}  // namespace sageattn
