// Phase 2 of the Q/K pre-pass as a device function, shared by the sm80 path's quantize_qk_kernel and
// the fused sm90 pre-pass: one CTA of 256 threads per 128-row block of Q or per pair of 64-token K
// blocks. Each warp owns 16 rows and keeps them in registers (8 x 16-byte vectors per lane at head
// dim 128: 32 registers), so Q and K are read from memory exactly once here; group maxima go
// through shared memory. docs/design/quantization.md is the exact definition.
//
// Why 8 warps of 16 rows and not 4 of 32: a CTA's life is serial (load, wait for the statistics,
// maxima, quantize, store) and its loads are in flight only at the start, so the memory system
// stays busy only if many CTAs overlap. 4 warps holding 32 rows each took 128 registers, 4 CTAs
// (16 warps) per SM, and the sm90 quantization grid reached 58 % of DRAM bandwidth (ncu, H100,
// hd128 4K) against 86 % for the statistics grid. 8 warps of 16 rows at 4 CTAs per SM (fp16,
// prepass_sm90.cu) measured +3-8 % end to end at 1K-2K tokens, -0.5 % at 4K-16K
// (docs/design/quantization.md, "Pre-pass quantization blocks").
#pragma once
#include <cstdint>

#include "common/element.cuh"
#include "common/int8_round.cuh"
#include "common/kernel_args.h"
#include "common/rotation.h"
#include "common/swizzled_rows.h"
#include "common/sequences.cuh"
#include "common/tiling.h"
#include "ptx/grid_dependency.cuh"

namespace sageattn {

constexpr int kQuantizeThreads = 256;
constexpr int kRowsPerQuantizeItem = kQBlockRows;  // one attention Q block, two K blocks
constexpr int kQuantizeWarpRows = kRowsPerQuantizeItem / (kQuantizeThreads / 32);  // 16 rows per warp
static_assert(kQuantizeThreads >= kRowsPerQuantizeItem, "one thread per row sets the row scales");
static_assert(kRowsPerQuantizeItem == 2 * kKBlockTokens, "a K item is two attention K blocks");

struct QuantizeQkShared {
  float mean[kMaxHeadDim];
  float row_amax[kRowsPerQuantizeItem];
  float row_inv_scale[kRowsPerQuantizeItem];
};

// Q blocks have work here unless the attention kernel quantizes Q itself (q_int8 NULL) and
// no LSE correction is wanted. Packed sequences: one item per workspace slot of each head
// (tiling.h), whichever sequence holds it (decode_qk_item), not batch x the longest one's blocks.
__host__ __device__ inline int64_t q_items(const QuantizeArgs& a) {
  if (a.q_int8 == nullptr && a.lse_correction == nullptr) return 0;
  if (a.packing.cu_q != nullptr) return static_cast<int64_t>(a.heads_q) * a.packing.slots_q;
  return static_cast<int64_t>(a.batch) * a.heads_q * a.q_blocks;
}

// Work items of one call: Q blocks (q_items), then pairs of K blocks.
__host__ __device__ inline int64_t qk_items(const QuantizeArgs& a) {
  if (a.packing.cu_kv != nullptr) return q_items(a) + static_cast<int64_t>(a.heads_kv) * a.packing.slots_kv;
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

// One Q/K work item decoded: which rows of which (sequence, head), and where they go.
struct QkItem {
  bool active;  // false: a block past a packed sequence's end (nothing to read or write)
  bool is_q;
  int block, batch, head;
  int row0;         // the item's first row in its sequence
  int seqlen;       // the sequence's rows
  int padded_rows;  // rows written, zero past the sequence: whole attention tiles (a packed sequence's slots)
  int64_t ws_row0;  // workspace row of the sequence's row 0
  const char* src;  // the item's row 0 in the caller's tensor
  int64_t stride_token_bytes;
};

// The Q block or K item `block` (128 rows: one attention Q block, two K blocks) of (sequence
// `batch`, head `head`); a negative block (wrong packed boundaries) is inactive. `side`: the
// sequence's queries (query_side) or keys (key_side).
template <typename T>
__device__ __forceinline__ QkItem qk_item_at(const QuantizeArgs& a, bool is_q, int block, int batch, int head,
                                            const SequenceSide& side) {
  QkItem it;
  it.is_q = is_q;
  it.block = block;
  it.batch = batch;
  it.head = head;
  const int heads = is_q ? a.heads_q : a.heads_kv;
  it.row0 = block * kRowsPerQuantizeItem;
  it.seqlen = side.length;
  // Blocks past a packed sequence's end hold nothing (the attention kernels never read them). Never
  // the case for dense batches, whose grid ends with their last block.
  it.active = block >= 0 && it.row0 < side.length;
  const int64_t stride_token = is_q ? a.q_stride_token : a.k_stride_token;
  it.stride_token_bytes = stride_token * static_cast<int64_t>(sizeof(T));
  it.src = static_cast<const char*>(is_q ? a.q : a.k) +
           (token0_offset(side, batch, head, is_q ? a.q_stride_batch : a.k_stride_batch,
                          is_q ? a.q_stride_head : a.k_stride_head, stride_token) +
            static_cast<int64_t>(it.row0) * stride_token) *
               static_cast<int64_t>(sizeof(T));
  const int* cu = is_q ? a.packing.cu_q : a.packing.cu_kv;
  const int64_t dense_rows = is_q ? static_cast<int64_t>(a.q_blocks) * kQBlockRows
                                  : static_cast<int64_t>(a.k_blocks) * kKBlockTokens;
  it.padded_rows = cu == nullptr ? static_cast<int>(dense_rows)
                                 : static_cast<int>(ceil_div(side.length, kPackedSlotRows)) * kPackedSlotRows;
  it.ws_row0 = workspace_row0(cu, side, batch, head, heads, is_q ? a.packing.slots_q : a.packing.slots_kv, dense_rows);
  return it;
}

// Work item `item` of qk_items(a): Q blocks (q_items), then pairs of K blocks. 32-bit index
// arithmetic (the launches check that the items fit): a 64-bit division is a ~70-instruction
// subroutine, and every thread decodes its items.
// Packed sequences: item = head * slots + slot, the sequence of the slot from the boundaries
// (common/sequences.cuh, packed_block_at_warp); slots between two sequences or past a sequence's
// rows are inactive. Every lane of the warp must call it with the same item.
template <typename T>
__device__ __forceinline__ QkItem decode_qk_item(const QuantizeArgs& a, int item) {
  const int q_item_count = static_cast<int>(q_items(a));
  const bool is_q = item < q_item_count;
  const int local = is_q ? item : item - q_item_count;
  const int* cu = is_q ? a.packing.cu_q : a.packing.cu_kv;
  const int bound = is_q ? a.seqlen_q : a.seqlen_kv;
  if (cu != nullptr) {
    const int slots = is_q ? a.packing.slots_q : a.packing.slots_kv;
    const int total = is_q ? a.packing.total_q : a.packing.total_kv;
    const PackedLookup found = packed_block_at_warp(cu, total, a.batch, kPackedSlotRows, local % slots, bound);
    // A negative block (wrong boundaries only) is inactive.
    return qk_item_at<T>(a, is_q, found.at.block, found.at.batch, local / slots, found.side);
  }
  const int items_per_head = is_q ? a.q_blocks : (a.k_blocks + 1) / 2;
  const int heads = is_q ? a.heads_q : a.heads_kv;
  const int block = local % items_per_head;
  const int batch = local / items_per_head / heads;
  const int head = local / items_per_head % heads;
  return qk_item_at<T>(a, is_q, block, batch, head, SequenceSide{0, bound});
}

// The rows and channels of an item this thread handles in quantize_qk_rows: lane group
// lane / kLanesPerRow takes row item_row(p) in pass p, 8 channels from col() each.
template <int kHeadDim>
struct QkThreadRows {
  static constexpr int kLanesPerRow = kHeadDim / 8;  // one 16-byte vector of 8 channels per lane
  static constexpr int kRowsPerPass = 32 / kLanesPerRow;
  static constexpr int kPasses = kQuantizeWarpRows / kRowsPerPass;
  // Of thread `thread` (constexpr: swizzle_separable checks these very formulas), and of this thread.
  // Unsigned, as threadIdx.x: signed thread indices compile to longer divisions.
  static constexpr int col_of(unsigned thread) { return static_cast<int>(thread % 32 % kLanesPerRow * 8); }
  static constexpr int row_of(unsigned thread, int p) {
    return static_cast<int>(thread / 32 * kQuantizeWarpRows + p * kRowsPerPass + thread % 32 / kLanesPerRow);
  }
  __device__ static int col() { return col_of(threadIdx.x); }
  __device__ static int item_row(int p) { return row_of(threadIdx.x, p); }
  // Where byte col() of the thread's row in pass p lies in a swizzled tile of 128 rows (sm90), as a
  // displacement from row * kHeadDim + col(): in pass 0, and what pass p XORs into it. A thread's
  // row in pass p is item_row(0) + p * kRowsPerPass, where item_row(0) is its warp's 16-row start
  // plus lane / kLanesPerRow < kRowsPerPass: the row bits the swizzle reads from the two terms do not
  // overlap, so the swizzle of its row is that of pass 0 XOR that of p * kRowsPerPass
  // (swizzle_separable checks every thread and pass at compile time). With
  // the offset computed per pass (a modulo, an XOR and the tile arithmetic from the row), the 8
  // passes of a K item spent ~20 integer instructions each on it (ncu SASS, session 21).
  __device__ static int swizzled_col0() {
    const int row = item_row(0);
    return SwizzledRows<kHeadDim>::offset(kRowsPerQuantizeItem, row, col()) - row * kHeadDim;
  }
  static constexpr int pass_swizzle_xor(int p) { return 16 * SwizzledRows<kHeadDim>::swizzle(p * kRowsPerPass); }
};

// Compile-time check of QkThreadRows's decomposition of the swizzled offsets: one panel (head dims
// 64 and 128), every thread and pass.
template <int kHeadDim>
constexpr bool swizzle_separable() {
  using Rows = QkThreadRows<kHeadDim>;
  using Swizzled = SwizzledRows<kHeadDim>;
  for (unsigned thread = 0; thread < kQuantizeThreads; ++thread) {
    const int row0 = Rows::row_of(thread, 0), col = Rows::col_of(thread);
    const int col0 = Swizzled::offset(kRowsPerQuantizeItem, row0, col) - row0 * kHeadDim;
    for (int p = 0; p < Rows::kPasses; ++p) {
      const int row = Rows::row_of(thread, p);
      if (Swizzled::offset(kRowsPerQuantizeItem, row, col) - row * kHeadDim != (col0 ^ Rows::pass_swizzle_xor(p)))
        return false;
    }
  }
  return true;
}
static_assert(swizzle_separable<64>() && swizzle_separable<128>(), "QkThreadRows::pass_swizzle_xor");

// This thread's rows of the item into registers, zeros past the sequence and the head dim.
template <typename T, int kHeadDim>
__device__ __forceinline__ void load_qk_rows(const QkItem& it, int head_dim,
                                             uint4 (&raw)[QkThreadRows<kHeadDim>::kPasses]) {
  using Rows = QkThreadRows<kHeadDim>;
  const int col = Rows::col();
#pragma unroll
  for (int p = 0; p < Rows::kPasses; ++p) {
    const int row = Rows::item_row(p);
    raw[p] = make_uint4(0u, 0u, 0u, 0u);
    if (it.row0 + row < it.seqlen && col < head_dim)
      raw[p] = *reinterpret_cast<const uint4*>(it.src + row * it.stride_token_bytes +
                                               col * static_cast<int64_t>(sizeof(T)));
  }
}

// Quantizes a decoded, active item from this thread's rows in registers (load_qk_rows) with a CTA
// of kQuantizeThreads threads. Every thread of the CTA must call it (it synchronizes the CTA).
template <typename T, int kHeadDim>
__device__ __forceinline__ void quantize_qk_rows(const QuantizeArgs& a, const QkItem& it,
                                                 const uint4 (&raw)[QkThreadRows<kHeadDim>::kPasses],
                                                 QuantizeQkShared& shared) {
  using Rows = QkThreadRows<kHeadDim>;
  constexpr int kLanesPerRow = Rows::kLanesPerRow;
  constexpr int kPasses = Rows::kPasses;
  static_assert(kHeadDim <= kMaxHeadDim, "shared arrays hold kMaxHeadDim channels");
  float* mean = shared.mean;
  float* row_amax = shared.row_amax;
  float* row_inv_scale = shared.row_inv_scale;
  const bool is_q = it.is_q;
  const int block = it.block, batch = it.batch;
  const int row0 = it.row0, seqlen = it.seqlen, padded_rows = it.padded_rows;
  const int64_t ws_row0 = it.ws_row0;
  int8_t* const dst_rows = is_q ? a.q_int8 : a.k_int8;  // NULL for Q quantized by the attention kernel
  const int kv_head = is_q ? it.head / (a.heads_q / a.heads_kv) : it.head;
  const bool subtract_mean = !is_q && a.smooth_k;
  const bool lse_correction = is_q && a.lse_correction != nullptr;
  const int lane = threadIdx.x % 32;
  const int col = Rows::col();
  const bool col_valid = col < a.head_dim;

  // K's channel mean from the column-sum partials (L2 reads), while the caller's loads of the rows
  // are in flight: done before them, these up to 16 dependent-latency reads held every K item's
  // row loads back. The partials come from the previous grid (launched programmatically on sm90:
  // wait for it).
  ptx::grid_dependency_wait();
  if (subtract_mean || lse_correction) {
    const float* sums = a.k_column_sums +
                        (static_cast<int64_t>(batch) * a.heads_kv + kv_head) * a.column_sum_chunks * kHeadDim;
    const int keys = is_q ? key_side(a.packing, batch, a.seqlen_kv).length : seqlen;
    const int chunks = sequence_chunks(a.packing, keys, a.column_sum_chunks, a.column_sum_chunk_tokens);
    for (int c = threadIdx.x; c < kHeadDim; c += kQuantizeThreads) {
      // Every chunk's partial in flight at once (predicated, at most kMaxColumnSumChunks), then
      // summed in chunk order (the same rounding as one at a time): with `unroll 4` a K item waited
      // for two L2 round trips at 4K tokens (8 chunks) before its rows' first use, and with `unroll
      // 8` four at 2K, where 4 chunks run the remainder loop (ncu stall samples and the grid's time,
      // H100, session 21).
      float part[kMaxColumnSumChunks];
#pragma unroll
      for (int i = 0; i < kMaxColumnSumChunks; ++i) part[i] = i < chunks ? sums[i * kHeadDim + c] : 0.f;
      float s = 0.f;
#pragma unroll
      for (int i = 0; i < kMaxColumnSumChunks; ++i)
        if (i < chunks) s += part[i];
      mean[c] = keys > 0 ? s / static_cast<float>(k_mean_sample_count(keys)) : 0.f;
    }
  }
  __syncthreads();

  // The values before the rotation: K - mean on valid K rows, the input otherwise (padding stays
  // zero). Each lane's 8 channels are one rotation block (common/rotation.h).
  static_assert(kRotationBlock == 8, "one rotation block per 16-byte vector");
  auto values = [&](int p, float (&x)[8]) {
    unpack8<T>(raw[p], x);
    const int row = row0 + Rows::item_row(p);
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
    const int row = row0 + Rows::item_row(p);
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
    if (lane % kLanesPerRow == 0) row_amax[Rows::item_row(p)] = m;
  }
  __syncthreads();

  if (threadIdx.x < kRowsPerQuantizeItem) {
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

  // This thread's pass-0 row in the destination; pass p's is kRowsPerPass * kHeadDim * p further
  // (an immediate offset of the store, not 64-bit arithmetic per pass).
  int8_t* const dst_row0 = dst + static_cast<int64_t>(row0 + Rows::item_row(0)) * kHeadDim;
  const int swizzled_col0 = Rows::swizzled_col0();
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int local_row = Rows::item_row(p);
    const int row = row0 + local_row;
    if (row >= padded_rows) continue;  // second half of an odd last K pair
    float x[8];
    values(p, x);
    if (lse_correction) store_lse_correction(p, x);
    if (a.rotate) rotate_block8(x);
    // |x| <= the group's amax and inv = 127 / amax: int8_byte_bits's clamp-free rounding applies.
    const float inv = row_inv_scale[local_row];
    uint32_t b[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) b[e] = int8_byte_bits(x[e], inv);
    const uint32_t packed[2] = {pack_low_bytes(b[0], b[1], b[2], b[3]), pack_low_bytes(b[4], b[5], b[6], b[7])};
    // sm90: swizzled 128-row tiles (common/swizzled_rows.h; the item's rows start on a tile), as a
    // 32-bit displacement from the unswizzled place row * kHeadDim + col: computing whole 64-bit
    // offsets in the branch made ptxas spill 64 bytes in the fp16 quantization kernel.
    int shifted_col = col;
    if (a.swizzle_rows) {
      if constexpr (SwizzledRows<kHeadDim>::kPanels == 1) {
        shifted_col = swizzled_col0 ^ Rows::pass_swizzle_xor(p);
      } else {
        const int tile_row = local_row % kRowsPerQuantizeItem;  // row0 is a multiple of the tile
        shifted_col = SwizzledRows<kHeadDim>::offset(kRowsPerQuantizeItem, tile_row, col) - tile_row * kHeadDim;
      }
    }
    *reinterpret_cast<uint2*>(dst_row0 + p * Rows::kRowsPerPass * kHeadDim + shifted_col) =
        make_uint2(packed[0], packed[1]);
  }
}

// Quantizes work item `item` of qk_items(a) from registers (the sm80 path's quantize_qk_kernel)
// with a CTA of kQuantizeThreads threads. Every thread of the CTA must call it.
template <typename T, int kHeadDim>
__device__ __forceinline__ void quantize_qk_item(const QuantizeArgs& a, int item, QuantizeQkShared& shared) {
  const QkItem it = decode_qk_item<T>(a, item);
  if (!it.active) return;  // uniform over the CTA
  // All rows of this warp first: QkThreadRows::kPasses (8 at head dim 128) independent 16-byte
  // loads in flight per lane.
  uint4 raw[QkThreadRows<kHeadDim>::kPasses];
  load_qk_rows<T, kHeadDim>(it, a.head_dim, raw);
  quantize_qk_rows<T, kHeadDim>(a, it, raw, shared);
}

}  // namespace sageattn
