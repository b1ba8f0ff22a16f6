// Phase 2 of the Q/K pre-pass as a device function, shared by the sm80 path's quantize_qk_kernel and
// the fused sm90 pre-pass: one CTA of 128 threads per 128-row block of Q or per pair of 64-token K
// blocks. Each warp owns 32 rows and keeps them in registers (16 x 16-byte vectors per lane at head
// dim 128: 64 registers), so Q and K are read from memory exactly once here; group maxima go
// through shared memory. docs/design/quantization.md is the exact definition.
#pragma once
#include <cstdint>

#include "common/element.cuh"
#include "common/kernel_args.h"
#include "common/rotation.h"
#include "common/sequences.cuh"
#include "common/tiling.h"
#include "ptx/grid_dependency.cuh"

namespace sageattn {

constexpr int kQuantizeThreads = 128;  // 4 warps x 32 rows = one 128-row block
constexpr int kRowsPerQuantizeItem = kQuantizeThreads / 32 * kWarpRows;
static_assert(kRowsPerQuantizeItem == kQBlockRows, "a Q item is one attention Q block");
static_assert(kRowsPerQuantizeItem == 2 * kKBlockTokens, "a K item is two attention K blocks");

struct QuantizeQkShared {
  float mean[kMaxHeadDim];
  float row_amax[kRowsPerQuantizeItem];
  float row_inv_scale[kRowsPerQuantizeItem];
};

// Q blocks have work here unless the attention kernel quantizes Q itself (sm90: q_int8 NULL) and
// no LSE correction is wanted.
__host__ __device__ inline int64_t q_items(const QuantizeArgs& a) {
  return a.q_int8 == nullptr && a.lse_correction == nullptr ? 0 : static_cast<int64_t>(a.batch) * a.heads_q * a.q_blocks;
}

// Work items of one call: Q blocks (q_items), then pairs of K blocks.
__host__ __device__ inline int64_t qk_items(const QuantizeArgs& a) {
  return q_items(a) + static_cast<int64_t>(a.batch) * a.heads_kv * ((a.k_blocks + 1) / 2);
}

// Maximum of one row's 8-element segments across the lanes that share that row.
template <int kLanesPerRow>
__device__ __forceinline__ float row_max(float v) {
#pragma unroll
  for (int offset = kLanesPerRow / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

template <int kLanesPerRow>
__device__ __forceinline__ float row_sum(float v) {
#pragma unroll
  for (int offset = kLanesPerRow / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Maximum over the rows (of this 128-row item) that share a scale with `row`.
__device__ __forceinline__ float group_amax(const float* row_amax, int row, bool is_q, bool per_warp) {
  float m = 0.f;
  if (is_q) {
    const int slice = row / kWarpRows * kWarpRows;
    if (per_warp) {
      for (int r = 0; r < kWarpRows; ++r) m = fmaxf(m, row_amax[slice + r]);
    } else {
      for (int r = row % kQGroupsPerWarp; r < kWarpRows; r += kQGroupsPerWarp)
        m = fmaxf(m, row_amax[slice + r]);
    }
  } else {
    const int block = row / kKBlockTokens * kKBlockTokens;
    if (per_warp) {
      for (int r = 0; r < kKBlockTokens; ++r) m = fmaxf(m, row_amax[block + r]);
    } else {
      const int pair = (row % 8) / 2 * 2;  // tokens 2g, 2g+1 of every 8
      for (int r = pair; r < kKBlockTokens; r += 8)
        m = fmaxf(m, fmaxf(row_amax[block + r], row_amax[block + r + 1]));
    }
  }
  return m;
}

// Quantizes work item `item` (Q blocks first, then pairs of K blocks; qk_items() in all) with a CTA
// of kQuantizeThreads threads. Every thread of the CTA must call it (it synchronizes the CTA).
template <typename T, int kHeadDim>
__device__ __forceinline__ void quantize_qk_item(const QuantizeArgs& a, int64_t item, QuantizeQkShared& shared) {
  constexpr int kLanesPerRow = kHeadDim / 8;
  constexpr int kRowsPerPass = 32 / kLanesPerRow;
  constexpr int kPasses = kWarpRows / kRowsPerPass;
  static_assert(kHeadDim <= kMaxHeadDim, "shared arrays hold kMaxHeadDim channels");
  float* mean = shared.mean;
  float* row_amax = shared.row_amax;
  float* row_inv_scale = shared.row_inv_scale;

  const int64_t q_item_count = q_items(a);
  const int k_items_per_head = (a.k_blocks + 1) / 2;
  const bool is_q = item < q_item_count;
  const int64_t local = is_q ? item : item - q_item_count;
  const int items_per_head = is_q ? a.q_blocks : k_items_per_head;
  const int heads = is_q ? a.heads_q : a.heads_kv;
  const int block = static_cast<int>(local % items_per_head);
  const int batch = static_cast<int>(local / items_per_head / heads);
  const int head = static_cast<int>(local / items_per_head % heads);
  const SequenceSide side = is_q ? query_side(a.packing, batch, a.seqlen_q) : key_side(a.packing, batch, a.seqlen_kv);
  const int row0 = block * kRowsPerQuantizeItem;
  // Blocks past a packed sequence's end hold nothing (the attention kernels never read them). Never
  // taken for dense batches, whose grid ends with their last block. Uniform over the CTA.
  if (row0 >= side.length) return;
  const int seqlen = side.length;
  const int64_t stride_token = is_q ? a.q_stride_token : a.k_stride_token;
  const char* src = static_cast<const char*>(is_q ? a.q : a.k) +
                    token0_offset(side, batch, head, is_q ? a.q_stride_batch : a.k_stride_batch,
                                  is_q ? a.q_stride_head : a.k_stride_head, stride_token) *
                        static_cast<int64_t>(sizeof(T));
  const int* cu = is_q ? a.packing.cu_q : a.packing.cu_kv;
  const int64_t dense_rows = is_q ? static_cast<int64_t>(a.q_blocks) * kQBlockRows
                                  : static_cast<int64_t>(a.k_blocks) * kKBlockTokens;
  // Rows written, zero past the sequence: whole attention tiles (a packed sequence's slots).
  const int padded_rows = cu == nullptr ? static_cast<int>(dense_rows)
                                        : static_cast<int>(ceil_div(seqlen, kPackedSlotRows)) * kPackedSlotRows;
  const int64_t ws_row0 = workspace_row0(cu, side, batch, head, heads, is_q ? a.packing.slots_q : a.packing.slots_kv,
                                         dense_rows);
  int8_t* const dst_rows = is_q ? a.q_int8 : a.k_int8;  // NULL for Q quantized by the attention kernel
  const int kv_head = is_q ? head / (a.heads_q / a.heads_kv) : head;
  const bool subtract_mean = !is_q && a.smooth_k;
  const bool lse_correction = is_q && a.lse_correction != nullptr;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int col = (lane % kLanesPerRow) * 8;
  const int pass_row = lane / kLanesPerRow;
  const bool col_valid = col < a.head_dim;

  // Load all rows of this warp first: 16 independent 16-byte loads in flight per lane.
  uint4 raw[kPasses];
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int row = row0 + warp * kWarpRows + p * kRowsPerPass + pass_row;
    raw[p] = make_uint4(0u, 0u, 0u, 0u);
    if (row < seqlen && col_valid)
      raw[p] = *reinterpret_cast<const uint4*>(src + row * stride_token * static_cast<int64_t>(sizeof(T)) +
                                               col * static_cast<int64_t>(sizeof(T)));
  }

  // K's channel mean from the column-sum partials (L2 reads), while the rows above are in flight:
  // done before them, these up to 16 dependent-latency reads held every K item's row loads back.
  // The partials come from the previous grid (launched programmatically on sm90: wait for it).
  ptx::grid_dependency_wait();
  if (subtract_mean || lse_correction) {
    const float* sums = a.k_column_sums +
                        (static_cast<int64_t>(batch) * a.heads_kv + kv_head) * a.column_sum_chunks * kHeadDim;
    const int keys = is_q ? key_side(a.packing, batch, a.seqlen_kv).length : seqlen;
    for (int c = threadIdx.x; c < kHeadDim; c += kQuantizeThreads) {
      float s = 0.f;
#pragma unroll 4
      for (int i = 0; i < a.column_sum_chunks; ++i) s += sums[i * kHeadDim + c];
      mean[c] = keys > 0 ? s / static_cast<float>(keys) : 0.f;
    }
  }
  __syncthreads();

  // The values before the rotation: K - mean on valid K rows, the input otherwise (padding stays
  // zero). Each lane's 8 channels are one rotation block (common/rotation.h).
  static_assert(kRotationBlock == 8, "one rotation block per 16-byte vector");
  auto values = [&](int p, float (&x)[8]) {
    unpack8<T>(raw[p], x);
    const int row = row0 + warp * kWarpRows + p * kRowsPerPass + pass_row;
    if (subtract_mean && row < seqlen && col_valid) {
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] = __fsub_rn(x[e], mean[col + e]);
    }
  };
  // dot(q, mean(K)) of each row for the LSE correction, on the unrotated row.
  auto store_lse_correction = [&](int p, const float (&x)[8]) {
    float dot = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) dot += x[e] * mean[col + e];
    dot = row_sum<kLanesPerRow>(dot);
    const int row = row0 + warp * kWarpRows + p * kRowsPerPass + pass_row;
    if (lane % kLanesPerRow == 0 && row < seqlen) a.lse_correction[ws_row0 + row] = dot;
  };
  if (dst_rows == nullptr) {  // the Q item of a kernel that quantizes Q: the LSE correction only
#pragma unroll
    for (int p = 0; p < kPasses; ++p) {
      float x[8];
      values(p, x);
      store_lse_correction(p, x);
    }
    return;
  }
  int8_t* const dst = dst_rows + ws_row0 * kHeadDim;

#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    float x[8];
    values(p, x);
    if (a.rotate) rotate_block8(x);
    float m = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) m = fmaxf(m, fabsf(x[e]));
    m = row_max<kLanesPerRow>(m);
    if (lane % kLanesPerRow == 0) row_amax[warp * kWarpRows + p * kRowsPerPass + pass_row] = m;
  }
  __syncthreads();

  {
    const int row = threadIdx.x;  // one thread per row of the item
    const float amax = group_amax(row_amax, row, is_q, a.per_warp);
    const bool quantizable = amax >= kMinQuantizableAmax;
    row_inv_scale[row] = quantizable ? 127.f / amax : 0.f;
    // Q's scale absorbs the rotation's factor 8 (exact: a power of two).
    const float scale = quantizable ? (is_q && a.rotate ? amax / 127.f * kRotationScale : amax / 127.f) : 0.f;
    if (is_q) {
      if (row % kWarpRows < kQGroupsPerWarp) {
        const int64_t q_block = ws_row0 / kQBlockRows + block;
        a.q_scale[q_block * kQGroupsPerBlock + row / kWarpRows * kQGroupsPerWarp + row % kWarpRows] = scale;
      }
    } else {
      const int k_block = block * 2 + row / kKBlockTokens;
      const int in_block = row % kKBlockTokens;
      if (k_block < padded_rows / kKBlockTokens && in_block < 8 && in_block % 2 == 0)
        a.k_scale[(ws_row0 / kKBlockTokens + k_block) * kKGroupsPerBlock + in_block / 2] = scale;
    }
  }
  __syncthreads();

#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int local_row = warp * kWarpRows + p * kRowsPerPass + pass_row;
    const int row = row0 + local_row;
    if (row >= padded_rows) continue;  // second half of an odd last K pair
    float x[8];
    values(p, x);
    if (lse_correction) store_lse_correction(p, x);
    if (a.rotate) rotate_block8(x);
    const float inv = row_inv_scale[local_row];
    uint32_t packed[2] = {0u, 0u};
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      int qv = __float2int_rn(__fmul_rn(x[e], inv));
      qv = max(-127, min(127, qv));
      packed[e / 4] |= (static_cast<uint32_t>(qv) & 0xffu) << (8 * (e % 4));
    }
    // Chunk-swizzled rows (sm90) are only requested at head dim 128, where a row is 128 bytes.
    const int stored_col = kHeadDim == 128 && a.swizzle_rows ? ((col / 16) ^ (row % 8)) * 16 + col % 16 : col;
    *reinterpret_cast<uint2*>(dst + static_cast<int64_t>(row) * kHeadDim + stored_col) =
        make_uint2(packed[0], packed[1]);
  }
}

}  // namespace sageattn
