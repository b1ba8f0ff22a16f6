// FP8 V pre-pass of the sm90 kernel (docs/design/quantization.md, "FP8 P.V"), two launches:
//  1. per (batch, kv head, token chunk): channel sums, maxima and minima of V;
//  2. per (batch, kv head, 128-token tile): reduce the chunks to vbar and delta_v, then write the
//     E4M3 tile the attention kernel copies verbatim into shared memory: [channel][token slot],
//     tokens permuted inside every 16 so that slot order is the order in which a thread's P
//     accumulator values form the FP8 wgmma A fragment (docs/design/sm90_kernel.md), rows 128-byte
//     swizzled. The max and min give max|V - vbar| without a second pass over V:
//     max_j |V_j - vbar| = max(max_j V_j - vbar, vbar - min_j V_j), and float subtraction is
//     monotone, so this equals the per-element maximum of the rounded differences.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <cstdint>

#include "common/element.cuh"
#include "common/tiling.h"
#include "ptx/convert.cuh"
#include "quant/quantize_v.h"

namespace sageattn {
namespace {

constexpr int kThreads = 256;
constexpr int kChannels = kFp8VTileChannels;  // 128: every head dim is zero-padded to it
constexpr int kTileTokens = kSm90KeyTileTokens;
constexpr int kLanesPerRow = kChannels / 8;   // one 16-byte vector of 8 channels per lane
constexpr int kRowsPerPass = kThreads / kLanesPerRow;
enum Stat { kSum = 0, kMax = 1, kMin = 2, kStats = 3 };

template <typename T>
__global__ void __launch_bounds__(kThreads) v_stats_kernel(const QuantizeVArgs a) {
  __shared__ float partial[kStats][kRowsPerPass][kChannels];
  const int chunk = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  const int col = (threadIdx.x % kLanesPerRow) * 8;
  const int row_lane = threadIdx.x / kLanesPerRow;
  const char* base = static_cast<const char*>(a.v) +
                     (static_cast<int64_t>(batch) * a.v_stride_batch +
                      static_cast<int64_t>(head) * a.v_stride_head + col) * sizeof(T);
  const int first = chunk * a.stat_chunk_tokens;
  const int last = min(first + a.stat_chunk_tokens, a.seqlen_kv);

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
    partial[kSum][row_lane][col + e] = sum[e];
    partial[kMax][row_lane][col + e] = mx[e];
    partial[kMin][row_lane][col + e] = mn[e];
  }
  __syncthreads();
  float* out = a.stats + ((static_cast<int64_t>(batch) * a.heads_kv + head) * a.stat_chunks + chunk) * kStats * kChannels;
  for (int i = threadIdx.x; i < kStats * kChannels; i += kThreads) {
    const int stat = i / kChannels, c = i % kChannels;
    float r = partial[stat][0][c];
    for (int row = 1; row < kRowsPerPass; ++row) {
      const float x = partial[stat][row][c];
      r = stat == kSum ? r + x : (stat == kMax ? fmaxf(r, x) : fminf(r, x));
    }
    out[i] = r;
  }
}

// Slot of token `t` (0..15) inside its group of 16: a thread's accumulator holds, per 8-column
// block, tokens 2q and 2q + 1 (q = lane % 4); four consecutive fragment bytes 4q..4q+3 take tokens
// 2q, 2q + 1, 8 + 2q, 9 + 2q.
__device__ __forceinline__ int slot_in_16(int t) { return 4 * ((t % 8) / 2) + 2 * (t / 8) + t % 2; }

template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_v_kernel(const QuantizeVArgs a) {
  __shared__ float mean[kChannels];
  __shared__ float inv_scale[kChannels];
  __shared__ __align__(16) uint8_t tile[kChannels][kTileTokens];
  const int tile_index = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  const int64_t head_index = static_cast<int64_t>(batch) * a.heads_kv + head;

  if (threadIdx.x < kChannels) {
    const int c = threadIdx.x;
    const float* stats = a.stats + head_index * a.stat_chunks * kStats * kChannels;
    float sum = 0.f, mx = -FLT_MAX, mn = FLT_MAX;
    for (int i = 0; i < a.stat_chunks; ++i) {
      sum += stats[(i * kStats + kSum) * kChannels + c];
      mx = fmaxf(mx, stats[(i * kStats + kMax) * kChannels + c]);
      mn = fminf(mn, stats[(i * kStats + kMin) * kChannels + c]);
    }
    const float vbar = (a.smooth_v && c < a.head_dim) ? sum / static_cast<float>(a.seqlen_kv) : 0.f;
    const float amax = c < a.head_dim ? fmaxf(__fsub_rn(mx, vbar), __fsub_rn(vbar, mn)) : 0.f;
    const bool quantizable = amax >= kMinQuantizableAmax;
    mean[c] = vbar;
    inv_scale[c] = quantizable ? kE4m3MaxFinite / amax : 0.f;
    if (tile_index == 0) {
      a.v_scale[head_index * kChannels + c] = quantizable ? amax / kE4m3MaxFinite : 0.f;
      a.v_mean[head_index * kChannels + c] = vbar;
    }
  }
  __syncthreads();

  // Each thread converts a pair of adjacent tokens (adjacent slots too) for 32 channels.
  {
    constexpr int kPairs = kTileTokens / 2;
    const int pair = threadIdx.x % kPairs;
    const int c0 = threadIdx.x / kPairs * 32;
    const int t0 = 2 * pair;
    const int slot = t0 / 16 * 16 + slot_in_16(t0 % 16);
    const char* base = static_cast<const char*>(a.v) +
                       (static_cast<int64_t>(batch) * a.v_stride_batch +
                        static_cast<int64_t>(head) * a.v_stride_head) * sizeof(T);
#pragma unroll
    for (int vec = 0; vec < 4; ++vec) {
      const int c = c0 + vec * 8;
      float x[2][8];
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int token = tile_index * kTileTokens + t0 + k;
        uint4 raw = make_uint4(0u, 0u, 0u, 0u);
        const bool valid = token < a.seqlen_kv && c < a.head_dim;
        if (valid)
          raw = *reinterpret_cast<const uint4*>(base + (static_cast<int64_t>(token) * a.v_stride_token + c) * sizeof(T));
        unpack8<T>(raw, x[k]);
#pragma unroll
        for (int e = 0; e < 8; ++e)  // padding tokens stay exactly 0 (not -vbar * inv)
          x[k][e] = valid ? __fmul_rn(__fsub_rn(x[k][e], mean[c + e]), inv_scale[c + e]) : 0.f;
      }
#pragma unroll
      for (int e = 0; e < 8; ++e)
        *reinterpret_cast<uint16_t*>(&tile[c + e][slot]) = ptx::e4m3x2(x[0][e], x[1][e]);
    }
  }
  __syncthreads();

  uint8_t* dst = a.v_fp8 + (head_index * a.tiles + tile_index) * kFp8VTileBytes;
  constexpr int kChunksPerRow = kTileTokens / 16;
  for (int i = threadIdx.x; i < kChannels * kChunksPerRow; i += kThreads) {
    const int row = i / kChunksPerRow, chunk = i % kChunksPerRow;
    *reinterpret_cast<uint4*>(dst + row * kTileTokens + (chunk ^ (row % 8)) * 16) =
        *reinterpret_cast<const uint4*>(&tile[row][chunk * 16]);
  }
}

template <typename T>
cudaError_t launch(const QuantizeVArgs& a, cudaStream_t stream) {
  v_stats_kernel<T><<<dim3(a.stat_chunks, a.heads_kv, a.batch), kThreads, 0, stream>>>(a);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  quantize_v_kernel<T><<<dim3(a.tiles, a.heads_kv, a.batch), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_quantize_v_fp8(const QuantizeVArgs& args, sageattn_dtype dtype, cudaStream_t stream) {
  return dtype == SAGEATTN_DTYPE_BF16 ? launch<__nv_bfloat16>(args, stream) : launch<__half>(args, stream);
}

}  // namespace sageattn
