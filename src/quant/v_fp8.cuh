// FP8 V for the sm90 kernel (docs/design/quantization.md, "FP8 P.V") as device functions of the
// fused sm90 pre-pass (quant/prepass_sm90.cu); compiled for sm_90a only (E4M3 conversion):
//  1. v_stats_block: per (batch, kv head, token chunk), channel sums, maxima and minima of the keys
//     the K mean samples (tiling.h: every key below 512 keys, one in 8 from 2048), so the
//     statistics pass reads an eighth of V, not all of it;
//  2. quantize_v_tile: per (batch, kv head, 128-token tile), reduce the chunks to vbar and the
//     sample's max|V - vbar| (times tiling.h's margin), then write the E4M3 tile the attention kernel
//     copies verbatim into shared memory: [channel][token slot] (kTileChannels channels: the padded
//     head dim, 64, 128 or 256), tokens permuted inside every 16 so that slot order is the order in
//     which a thread's P accumulator values form the FP8 wgmma A fragment
//     (docs/design/sm90_kernel.md), rows 128-byte swizzled. The max and min give max|V - vbar|
//     without a second pass over V: max_j |V_j - vbar| = max(max_j V_j - vbar, vbar - min_j V_j),
//     and float subtraction is monotone, so this equals the per-element maximum of the rounded
//     differences. A tile with an element beyond that scale's range marks its (sequence, head), and
//     the head's last tile to finish re-quantizes the whole head with exact maxima
//     (requantize_v_head_exact): rare, and never a clipped value.
#pragma once
#include <cfloat>
#include <cstdint>
#include <cuda/atomic>

#include "common/element.cuh"
#include "common/kernel_args.h"
#include "common/sequences.cuh"
#include "common/tiling.h"
#include "ptx/convert.cuh"
#include "ptx/grid_dependency.cuh"
#include "quant/sampled_keys.cuh"

namespace sageattn {

// Channels of the statistics, scales and means per K/V head: 128 at head dims 64 and 128 (zeros
// past head_dim), 256 at 256; the tiles hold the padded head dim's (quantize_v_tile).
template <int kTileChannels>
constexpr int kVChannelsOf = fp8_v_channels(kTileChannels);
constexpr int kVTileTokens = kSm90KeyTileTokens;
enum VStat { kVSum = 0, kVMax = 1, kVMin = 2, kVStats = 3 };

// One CTA of kThreads; `partial` is shared memory of kVStats * kThreads * 8 floats. `side`: sequence
// `batch`'s keys (key_side).
template <typename T, int kThreads, int kVChannels>
__device__ __forceinline__ void v_stats_block(const QuantizeVArgs& a, int chunk, int head, int batch,
                                              const SequenceSide& side, float* partial) {
  constexpr int kLanesPerRow = kVChannels / 8;  // one 16-byte vector of 8 channels per lane
  constexpr int kRowsPerPass = kThreads / kLanesPerRow;
  auto at = [&](int stat, int row, int c) -> float& { return partial[(stat * kRowsPerPass + row) * kVChannels + c]; };
  const int col = (threadIdx.x % kLanesPerRow) * 8;
  const int row_lane = threadIdx.x / kLanesPerRow;
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
  auto load_row = [&](int t) {
    return *reinterpret_cast<const uint4*>(base + static_cast<int64_t>(t) * a.v_stride_token * sizeof(T));
  };
  auto add_row = [&](const uint4& raw) {
    float x[8];
    unpack8<T>(raw, x);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      sum[e] += x[e];
      mx[e] = fmaxf(mx[e], x[e]);
      mn[e] = fminf(mn[e], x[e]);
    }
  };
  if (col < a.head_dim) for_each_sampled_key(first, last, side.length, row_lane, kRowsPerPass, load_row, add_row);
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
  float limit[kVChannels];  // the largest |V - vbar| the scale covers (448 / inv_scale, or 0)
  // requantize_v_head_exact also keeps its channel maxima here (as bits: non-negative floats order
  // as unsigned integers) before any tile is converted, so the shared memory stays what a tile needs.
  __align__(16) uint8_t tile[kVChannels][kVTileTokens];
};

// Per (sequence, kv head) in QuantizeVArgs::v_fixup, zeroed by the statistics grid: the V tiles
// finished, and whether one of them had an element beyond 448 at the sample's scale.
enum VFixupWord { kVTilesDone = 0, kVExceeds = 1, kVFixupWords = 2 };

// The V tiles of a sequence of `length` keys that quantize_kernel runs: tile 0 always (it writes the
// scales and means), one per 128 keys.
__host__ __device__ inline int v_head_tiles(int length) {
  return length > 0 ? (length + kVTileTokens - 1) / kVTileTokens : 1;
}

constexpr int kVTileThreads = 256;

// One V tile decoded: 128 tokens of one (batch, kv head).
struct VTile {
  bool active;  // false: a tile past a packed sequence's end (nothing to read or write)
  int index, head, batch;
  SequenceSide side;  // the sequence's place and tokens
  const char* src;  // the tile's token 0 in the caller's tensor
  int64_t stride_token_bytes;
};

// `side`: sequence `batch`'s keys (key_side).
template <typename T>
__device__ __forceinline__ VTile decode_v_tile(const QuantizeVArgs& a, int tile_index, int head, int batch,
                                               const SequenceSide& side) {
  VTile t;
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
// a pair of adjacent tokens (adjacent slots too), pair threadIdx.x / 4, for kVectors vectors of 8
// channels, vector threadIdx.x % 4 + 4 j. The 4 threads of a pair read 64 contiguous bytes of each
// row, so a warp's loads fill whole 32-byte sectors; with one pair per lane (32 rows per load,
// 16 bytes of each) every sector was fetched twice (ncu, H100, 4K: 4.19 M excess L2 sectors,
// docs/performance.md, session 20).
template <int kChannels>
struct VTileThread {
  static constexpr int kThreadsPerPair = 4;
  static_assert(kVTileThreads / kThreadsPerPair == kVTileTokens / 2, "a pair of tokens per 4 threads");
  static constexpr int kVectors = kChannels / 8 / kThreadsPerPair;  // 4, 2 or 8 vectors of 8
  __device__ static int t0() { return 2 * (threadIdx.x / kThreadsPerPair); }
  __device__ static int channel(int vec) { return 8 * (threadIdx.x % kThreadsPerPair + kThreadsPerPair * vec); }
};

// Byte of token slot `slot` in row (channel) `row` of the tile in shared memory: 16-byte chunks
// XOR-swizzled by row / 8, so that the 4 threads of a pair, which store the same slots of rows 8
// apart, hit 4 different chunks (bank groups).
__device__ __forceinline__ int v_tile_shared_byte(int row, int slot) { return slot ^ (row / 8 % 8 * 16); }

// This thread's vectors of a tile into registers (VTileThread), zeros past the sequence and the
// head dim.
template <typename T, int kChannels>
__device__ __forceinline__ void load_v_tile_vectors(const VTile& tile, int head_dim,
                                                    uint4 (&raw)[VTileThread<kChannels>::kVectors][2]) {
  using Thread = VTileThread<kChannels>;
  const int t0 = Thread::t0();
  const int valid_tokens = tile.side.length - tile.index * kVTileTokens;
#pragma unroll
  for (int vec = 0; vec < Thread::kVectors; ++vec)
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      const int c = Thread::channel(vec);
      raw[vec][t] = make_uint4(0u, 0u, 0u, 0u);
      if (t0 + t < valid_tokens && c < head_dim)
        raw[vec][t] = *reinterpret_cast<const uint4*>(tile.src + (t0 + t) * tile.stride_token_bytes +
                                                      c * static_cast<int64_t>(sizeof(T)));
    }
}

// Channel c's inverse scale and covered range in shared memory from its amax (a zero channel below
// kMinQuantizableAmax covers nothing); returns delta_v, the scale the attention epilogue applies.
template <int kVChannels>
__device__ __forceinline__ float set_v_channel_scale(VTileShared<kVChannels>& sh, int c, float amax) {
  const bool quantizable = amax >= kMinQuantizableAmax;
  sh.inv_scale[c] = quantizable ? kE4m3MaxFinite / amax : 0.f;
  sh.limit[c] = quantizable ? amax : 0.f;
  return quantizable ? amax / kE4m3MaxFinite : 0.f;
}

// vbar and the channel scales of a tile's (sequence, kv head) from the statistics grid's sample
// into shared memory (thread c < kVChannels: channel c); tile 0 also writes them for the attention
// epilogue. Every thread must call it (it synchronizes the CTA).
template <int kVChannels>
__device__ __forceinline__ void v_scales_from_sample(const QuantizeVArgs& a, const VTile& tile,
                                                     VTileShared<kVChannels>& sh) {
  const int64_t head_index = static_cast<int64_t>(tile.batch) * a.heads_kv + tile.head;
  const int length = tile.side.length;
  // The statistics are reduced while the caller's loads are in flight (L2-resident partials).
  ptx::grid_dependency_wait();  // the statistics grid (a programmatic launch may start before it ends)
  if (threadIdx.x < kVChannels) {
    const int c = threadIdx.x;
    const float* stats = a.stats + head_index * a.stat_chunks * kVStats * kVChannels;
    float sum = 0.f, mx = -FLT_MAX, mn = FLT_MAX;
    const int chunks = sequence_chunks(a.packing, length, a.stat_chunks, a.stat_chunk_tokens);
    for (int i = 0; i < chunks; ++i) {
      sum += stats[(i * kVStats + kVSum) * kVChannels + c];
      mx = fmaxf(mx, stats[(i * kVStats + kVMax) * kVChannels + c]);
      mn = fminf(mn, stats[(i * kVStats + kVMin) * kVChannels + c]);
    }
    const float vbar = (a.smooth_v && c < a.head_dim && length > 0)
                           ? sum / static_cast<float>(k_mean_sample_count(length))
                           : 0.f;
    const float sampled = c < a.head_dim ? fmaxf(__fsub_rn(mx, vbar), __fsub_rn(vbar, mn)) : 0.f;
    // The margin is a power of two (exact); FLT_MAX bounds it for bf16 values near the float range.
    const float amax = fminf(sampled * v_scale_margin(length), FLT_MAX);
    sh.mean[c] = vbar;
    // A zero channel of the sample covers nothing: any nonzero element elsewhere exceeds it.
    const float delta_v = set_v_channel_scale(sh, c, amax);
    if (tile.index == 0) {
      a.v_scale[head_index * kVChannels + c] = delta_v;
      a.v_mean[head_index * kVChannels + c] = vbar;
    }
  }
  __syncthreads();
}

// Converts a tile from this thread's vectors in registers (load_v_tile_vectors) with the scales in
// shared memory and writes its first kTileChannels channels (64, 128 or 256: the tile of the
// attention kernel's head dim). Returns, for the whole CTA, whether an element's |V - vbar|
// exceeded what its channel's scale covers (sh.limit: beyond 448 after scaling, or a nonzero value
// in a channel the sample found zero). Every thread must call it (it synchronizes the CTA).
// kWhole: every token of the tile lies in the sequence and every channel below head_dim (all tiles
// but a sequence's last and padded head dims). It skips the per-element validity and tests the limit
// once per channel on the larger |V - vbar| of the thread's two tokens (fmaxf is exact), ~5 instead
// of ~11 instructions per element (ncu SASS counts, H100, session 21); same bytes and same answer.
template <typename T, int kTileChannels, bool kWhole>
__device__ __forceinline__ bool convert_v_tile_as(const QuantizeVArgs& a, const VTile& tile,
                                                  const uint4 (&raw)[VTileThread<kTileChannels>::kVectors][2],
                                                  VTileShared<kVChannelsOf<kTileChannels>>& sh) {
  constexpr int kVectors = VTileThread<kTileChannels>::kVectors;
  const int t0 = VTileThread<kTileChannels>::t0();
  const int slot = t0 / 16 * 16 + slot_in_16(t0 % 16);
  bool beyond = false;
#pragma unroll
  for (int vec = 0; vec < kVectors; ++vec) {
    const int c = VTileThread<kTileChannels>::channel(vec);
    float x[2][8];
#pragma unroll
    for (int k = 0; k < 2; ++k) unpack8<T>(raw[vec][k], x[k]);
    if constexpr (kWhole) {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float c0 = __fsub_rn(x[0][e], sh.mean[c + e]), c1 = __fsub_rn(x[1][e], sh.mean[c + e]);
        beyond |= fmaxf(fabsf(c0), fabsf(c1)) > sh.limit[c + e];
        x[0][e] = __fmul_rn(c0, sh.inv_scale[c + e]);
        x[1][e] = __fmul_rn(c1, sh.inv_scale[c + e]);
      }
    } else {
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const bool valid = tile.index * kVTileTokens + t0 + k < tile.side.length && c < a.head_dim;
#pragma unroll
        for (int e = 0; e < 8; ++e) {  // padding tokens stay exactly 0 (not -vbar * inv)
          const float centred = __fsub_rn(x[k][e], sh.mean[c + e]);
          beyond = beyond || (valid && fabsf(centred) > sh.limit[c + e]);
          x[k][e] = valid ? __fmul_rn(centred, sh.inv_scale[c + e]) : 0.f;
        }
      }
    }
    // Channel c + e's row of the tile: rows 8 apart share their swizzle, so two base addresses (even
    // and odd vec) and constant offsets address every store (per-row addresses spilled at head dim 256).
    static_assert(VTileThread<kTileChannels>::kThreadsPerPair == 4, "channel(vec) / 8 % 8 = tid % 4 + 4 (vec % 2)");
    uint8_t* const row0 = &sh.tile[VTileThread<kTileChannels>::channel(vec % 2)][v_tile_shared_byte(c, slot)];
#pragma unroll
    for (int e = 0; e < 8; ++e)
      *reinterpret_cast<uint16_t*>(row0 + (vec / 2 * 64 + e) * kVTileTokens) = ptx::e4m3x2(x[0][e], x[1][e]);
  }
  const bool exceeds = __syncthreads_or(beyond);

  const int64_t tile0 = workspace_row0(a.packing.cu_kv, tile.side, tile.batch, tile.head, a.heads_kv,
                                       a.packing.slots_kv, static_cast<int64_t>(a.tiles) * kVTileTokens) /
                        kVTileTokens;
  uint8_t* dst = a.v_tiles + (tile0 + tile.index) * (kTileChannels * kVTileTokens);
  // Unsigned, unrolled chunk indices: the signed loop's divisions and 64-bit offsets took ~130
  // instructions per warp for its four stores (ncu SASS, session 21).
  constexpr unsigned kChunksPerRow = kVTileTokens / 16;
  constexpr int kStores = kTileChannels * kChunksPerRow / kVTileThreads;
  static_assert(kStores * kVTileThreads == kTileChannels * kChunksPerRow, "whole rounds of 16-byte chunks");
#pragma unroll
  for (int j = 0; j < kStores; ++j) {
    const unsigned i = threadIdx.x + static_cast<unsigned>(j * kVTileThreads);
    const unsigned row = i / kChunksPerRow, chunk = i % kChunksPerRow;
    *reinterpret_cast<uint4*>(dst + (row * kVTileTokens + (chunk ^ (row % 8)) * 16)) =
        *reinterpret_cast<const uint4*>(&sh.tile[row][v_tile_shared_byte(row, chunk * 16)]);
  }
  return exceeds;
}

// convert_v_tile_as, the whole-tile form where it applies (uniform over the CTA).
template <typename T, int kTileChannels>
__device__ __forceinline__ bool convert_v_tile(const QuantizeVArgs& a, const VTile& tile,
                                               const uint4 (&raw)[VTileThread<kTileChannels>::kVectors][2],
                                               VTileShared<kVChannelsOf<kTileChannels>>& sh) {
  const bool whole = (tile.index + 1) * kVTileTokens <= tile.side.length && a.head_dim >= kTileChannels;
  return whole ? convert_v_tile_as<T, kTileChannels, true>(a, tile, raw, sh)
               : convert_v_tile_as<T, kTileChannels, false>(a, tile, raw, sh);
}

// The rare path: the exact maxima max_j |V_j - vbar| over every token of the head (vbar stays the
// sample's), its scales, and every tile again. One CTA, after all the head's tiles are written.
// Inlined: a call would keep the caller's state on a stack frame (52 bytes of spills in the fp16
// grid at its 64 registers); here nothing of the tile is live any more.
template <typename T, int kTileChannels>
__device__ __forceinline__ void requantize_v_head_exact(const QuantizeVArgs& a, const VTile& any_tile,
                                                        VTileShared<kVChannelsOf<kTileChannels>>& sh) {
  constexpr int kVChannels = kVChannelsOf<kTileChannels>;
  constexpr int kLanesPerRow = kVChannels / 8;  // one 16-byte vector of 8 channels per lane
  constexpr int kRowsPerPass = kVTileThreads / kLanesPerRow;
  const VTile first = decode_v_tile<T>(a, 0, any_tile.head, any_tile.batch, any_tile.side);
  const int length = first.side.length;
  unsigned* amax_bits = reinterpret_cast<unsigned*>(&sh.tile[0][0]);
  static_assert(sizeof(sh.tile) >= kVChannels * sizeof(unsigned), "the maxima fit the tile area");
  for (int c = threadIdx.x; c < kVChannels; c += kVTileThreads) amax_bits[c] = 0u;
  __syncthreads();
  const int col = (threadIdx.x % kLanesPerRow) * 8;
  if (col < a.head_dim) {
    float largest[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    for (int t = threadIdx.x / kLanesPerRow; t < length; t += kRowsPerPass) {
      float x[8];
      unpack8<T>(*reinterpret_cast<const uint4*>(first.src + t * first.stride_token_bytes + col * sizeof(T)), x);
#pragma unroll
      for (int e = 0; e < 8; ++e) largest[e] = fmaxf(largest[e], fabsf(__fsub_rn(x[e], sh.mean[col + e])));
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) atomicMax(&amax_bits[col + e], __float_as_uint(largest[e]));
  }
  __syncthreads();
  if (threadIdx.x < kVChannels) {
    const int c = threadIdx.x;
    a.v_scale[(static_cast<int64_t>(first.batch) * a.heads_kv + first.head) * kVChannels + c] =
        set_v_channel_scale(sh, c, __uint_as_float(amax_bits[c]));
  }
  __syncthreads();
  for (int i = 0; i < v_head_tiles(length); ++i) {
    const VTile tile = decode_v_tile<T>(a, i, first.head, first.batch, first.side);
    uint4 raw[VTileThread<kTileChannels>::kVectors][2];
    load_v_tile_vectors<T, kTileChannels>(tile, a.head_dim, raw);
    convert_v_tile<T, kTileChannels>(a, tile, raw, sh);
    __syncthreads();  // the stores of this tile read sh.tile before the next one is written
  }
}

// Counts the tile as finished for its (sequence, kv head); the head's last tile re-quantizes the head
// if any of its tiles had an element beyond its channel's limit. Every thread must call it.
template <typename T, int kTileChannels>
__device__ __forceinline__ void settle_v_head(const QuantizeVArgs& a, const VTile& tile, bool exceeds,
                                              VTileShared<kVChannelsOf<kTileChannels>>& sh) {
  unsigned* words = a.v_fixup + (static_cast<int64_t>(tile.batch) * a.heads_kv + tile.head) * kVFixupWords;
  // Thread 0's release after the barrier covers the whole CTA's tile stores (as in a grid barrier),
  // so the re-quantization below overwrites them, never the other way round.
  __syncthreads();
  bool requantize = false;
  if (threadIdx.x == 0) {
    if (exceeds) atomicOr(&words[kVExceeds], 1u);
    // acq_rel: releases the tile (and the flag above), and the last tile acquires every other's.
    cuda::atomic_ref<unsigned, cuda::thread_scope_device> done(words[kVTilesDone]);
    const bool last = done.fetch_add(1u, cuda::memory_order_acq_rel) + 1u ==
                      static_cast<unsigned>(v_head_tiles(tile.side.length));
    requantize = last && cuda::atomic_ref<unsigned, cuda::thread_scope_device>(words[kVExceeds]).load(
                             cuda::memory_order_relaxed) != 0u;
  }
  if (__syncthreads_or(requantize)) requantize_v_head_exact<T, kTileChannels>(a, tile, sh);
}

// Quantizes a decoded, active tile from this thread's vectors in registers with a CTA of
// kVTileThreads threads. Every thread must call it (it synchronizes the CTA).
template <typename T, int kTileChannels>
__device__ __forceinline__ void quantize_v_tile(const QuantizeVArgs& a, const VTile& tile,
                                                const uint4 (&raw)[VTileThread<kTileChannels>::kVectors][2],
                                                VTileShared<kVChannelsOf<kTileChannels>>& sh) {
  constexpr int kVChannels = kVChannelsOf<kTileChannels>;
  static_assert(kVTileThreads >= kVChannels, "one thread per channel reduces the statistics");
  static_assert(kTileChannels == 64 || kTileChannels == kVChannels, "tiles of head dim 64, 128 or 256");
  v_scales_from_sample<kVChannels>(a, tile, sh);
  const bool exceeds = convert_v_tile<T, kTileChannels>(a, tile, raw, sh);
  // With every key sampled the scale is exact and nothing can exceed 448.
  if (!k_mean_samples_all(tile.side.length)) settle_v_head<T, kTileChannels>(a, tile, exceeds, sh);
}

}  // namespace sageattn
