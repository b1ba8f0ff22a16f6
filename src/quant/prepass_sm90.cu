// The sm90 pre-pass as two launches instead of four: every (chunk, head) of the statistics grid and
// every block/tile of the quantization grid is independent of the others in its grid, so the K and
// V work of each phase shares one launch (one launch gap and one grid tail instead of two).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "common/dependent_launch.h"
#include "ptx/grid_dependency.cuh"
#include "quant/k_column_sums.cuh"
#include "quant/prepass_sm90.h"
#include "quant/quantize_qk_item.cuh"
#include "quant/v_fp8.cuh"
#include "quant/v_tiles16.cuh"

namespace sageattn {
namespace {

// kHeadDim (template parameter below): the INT8 K rows' and the E4M3 V tiles' head dim, 64, 128 or 256.
constexpr int kStatsThreads = 256;
static_assert(kVTileThreads == kQuantizeThreads, "Q/K items and V tiles share one CTA size");

// Statistics CTAs per kind (V, K) and head: dense, the chunks of every sequence (blockIdx.z the
// sequence); packed, one per chunk position of all sequences (common/sequences.cuh,
// packed_chunk_at), not batch x the longest sequence's chunks.
__host__ __device__ inline int stats_units(const QuantizeVArgs& v) {
  return v.packing.cu_kv == nullptr ? v.stat_chunks : packed_positions(v.packing.total_kv, v.batch, v.stat_chunk_tokens);
}

// blockIdx.x: V units [0, units) for FP8 V, then K units [units, 2 * units) when smoothing K.
// kFp8V false (16-bit V has no statistics): K units only, and none of the V code: compiled in, the
// V statistics' sampled loops made the K-only grid of 16-bit P.V calls 2-3 % slower end to end at
// 1K-2K (H100, docs/performance.md), although that grid never runs them.
template <typename T, int kHeadDim, bool kFp8V>
__global__ void __launch_bounds__(kStatsThreads) stats_kernel(const QuantizeArgs qk, const QuantizeVArgs v) {
  // kThreads / (channels / 8) rows of the channels: kStatsThreads * 8 floats per statistic at any
  // channel count (the V statistics have kVChannelsOf, the K sums kHeadDim and use the first third).
  __shared__ float partial[kVStats * kStatsThreads * 8];
  ptx::grid_dependents_launch();  // the quantization grid may start its loads (it waits for us)
  if (kFp8V) {  // read by the quantization grid's V tiles once this grid has ended
    const int words = kVFixupWords * v.batch * v.heads_kv;
    const int cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    for (int i = cta * kStatsThreads + threadIdx.x; i < words; i += gridDim.x * gridDim.y * gridDim.z * kStatsThreads)
      v.v_fixup[i] = 0u;
  }
  const int v_units = kFp8V ? stats_units(v) : 0;
  const bool is_v = static_cast<int>(blockIdx.x) < v_units;
  int chunk = is_v ? blockIdx.x : blockIdx.x - v_units, batch = blockIdx.z;
  const int bound = is_v ? v.seqlen_kv : qk.seqlen_kv;
  SequenceSide side{0, bound};  // a dense batch's (sequence_side without boundaries)
  if (v.packing.cu_kv != nullptr) {
    const PackedLookup found = packed_chunk_at(v.packing, v.batch, bound, v.stat_chunks, v.stat_chunk_tokens, chunk);
    if (found.at.block < 0) return;  // uniform over the CTA
    chunk = found.at.block;
    batch = found.at.batch;
    side = found.side;
  }
  if constexpr (kFp8V) {
    if (is_v) {
      v_stats_block<T, kStatsThreads, kVChannelsOf<kHeadDim>>(v, chunk, blockIdx.y, batch, side, partial);
      return;
    }
  }
  k_column_sums_block<T, kHeadDim, kStatsThreads>(qk, chunk, blockIdx.y, batch, side, partial);
}

// One work item of the quantization grid, decoded.
struct Work {
  bool is_v;  // a V tile (v), else a Q/K item (qk)
  QkItem qk;
  VTile v;
};

// K items and V tiles of one call. Packed sequences: per K/V head, one K item and one V tile per
// workspace slot (tiling.h), whichever sequence holds it (decode_packed_work), rather than per
// sequence up to the longest one's blocks, which left every shorter sequence's tail an empty CTA.
__host__ __device__ inline int64_t kv_work_items(const QuantizeArgs& qk, const QuantizeVArgs& v) {
  const int64_t kinds = v.v_tiles == nullptr ? 1 : 2;  // K items, and V tiles unless none are written
  if (qk.packing.cu_kv != nullptr) return kinds * qk.heads_kv * qk.packing.slots_kv;
  return static_cast<int64_t>(qk.batch) * qk.heads_kv * ((qk.k_blocks + 1) / 2 + (kinds == 2 ? v.tiles : 0));
}

// Work item `block` of the K items and V tiles of packed sequences: the K items of every slot, then
// the V tiles of every slot, the K/V heads of a slot next to each other (head = block % heads).
// Slot s holds 128 rows of the sequence found by packed_block_at_warp (common/sequences.cuh): the slots
// between two sequences, and those past a sequence's last row, are inactive, except the one V tile
// an empty sequence has (it writes the V scale and mean). Against per-head order (every slot of the
// last head first), H100, 8 sequences of 1-8K tokens, 16 heads, hd128, four rounds: quantization
// grid 219-223 -> 209-211 us (seed 2), 195-200 -> 187-188 (seed 0), bit-identical. The cause is not
// measured (docs/design/varlen.md: packed tensors are [tokens, heads, head dim]).
template <typename T>
__device__ __forceinline__ Work decode_packed_work(const QuantizeArgs& qk, const QuantizeVArgs& v, int block) {
  Work w{};
  const int slots = qk.packing.slots_kv;
  const int head = block % qk.heads_kv;
  const int in_head = block / qk.heads_kv;
  w.is_v = in_head >= slots;
  const int slot = w.is_v ? in_head - slots : in_head;
  const PackedLookup found = packed_block_at_warp(qk.packing.cu_kv, qk.packing.total_kv, qk.batch, kPackedSlotRows,
                                                  slot, w.is_v ? v.seqlen_kv : qk.seqlen_kv);
  if (w.is_v) {
    w.v = decode_v_tile<T>(v, found.at.block, head, found.at.batch, found.side);
    w.v.active = w.v.active && found.at.block >= 0;
  } else {
    w.qk = qk_item_at<T>(qk, false, found.at.block, found.at.batch, head, found.side);
  }
  return w;
}

// Work items: the Q items of decode_qk_item (LSE corrections only; none without an LSE), then per
// K/V head, last head first, its K items and V tiles. The statistics grid reads the last head last,
// so the first heads quantized here may still have K and V in L2 (50 MB on H100: all of K and V at
// B4 H32 1K). 32-bit index arithmetic as in decode_qk_item (launch checks that the items fit).
template <typename T>
__device__ __forceinline__ Work decode_work(const QuantizeArgs& qk, const QuantizeVArgs& v, int item) {
  Work w{};
  const int first_k_item = static_cast<int>(q_items(qk));
  w.is_v = false;
  if (item < first_k_item) {
    w.qk = decode_qk_item<T>(qk, item);
    return w;
  }
  if (qk.packing.cu_kv != nullptr) return decode_packed_work<T>(qk, v, item - first_k_item);
  const int k_items_per_head = (qk.k_blocks + 1) / 2;
  const int per_head = k_items_per_head + (v.v_tiles == nullptr ? 0 : v.tiles);
  const int heads = qk.batch * qk.heads_kv;
  const int block = item - first_k_item;
  const int head_index = heads - 1 - block / per_head;
  const int in_head = block % per_head;
  // One division for (batch, head) here: decode_qk_item would divide the K item's index twice more
  // (~25 uniform instructions each, ncu SASS, session 21).
  const int batch = head_index / qk.heads_kv, head = head_index - batch * qk.heads_kv;
  if (in_head < k_items_per_head) {
    w.qk = qk_item_at<T>(qk, false, in_head, batch, head, SequenceSide{0, qk.seqlen_kv});
  } else {
    w.is_v = true;
    w.v = decode_v_tile<T>(v, in_head - k_items_per_head, head, batch, SequenceSide{0, v.seqlen_kv});
  }
  return w;
}

// CTAs per SM the quantization grid is compiled for. fp16: 4 (32 warps, 64 registers; no spills
// since qk_item_at, 48 bytes before) measured +3-8 % end to end at 1K-2K tokens against the 3
// that 78 registers allow, -0.5 % at 4K-16K. bf16 unpacks with more registers: at head dim 128 it
// spills 192 / 648 bytes at 64 registers and 54 / 264 at 80 (3 CTAs), and both measured slower
// than unbounded (2 CTAs at ~120 registers): grid 2K 104 -> 111 (3) / 187 (4) us, 4K 191 -> 206 /
// 360 (H100, session 22); at head dim 64, 4 CTAs spill 10 / 60 bytes and the grid fell 68 -> 50 us
// at B16 H16 1K (+7 % end to end) and 490 -> 413 us at B4 H32 16K. Head dim 256 holds twice the
// rows' vectors: fp16 at 2 CTAs (128 registers, no spills; unbounded, ptxas took 254 and the SM ran
// one CTA of 8 warps): pre-pass at B4 H32 8K 1344 -> 976-999 us, 2K 330 -> 270-274 us (H100, docs/
// performance.md). bf16 spills 142 bytes at 128 registers and measured 2K 343 -> 356 us, 8K
// 1390 -> 1307-1328 us: left unbounded.
template <typename T, int kHeadDim>
constexpr int kQuantizeMinBlocks = std::is_same_v<T, __half> ? (kHeadDim <= 128 ? 4 : 2) : (kHeadDim == 64 ? 4 : 1);

// A CTA of 256 threads per item, rows in registers (quant/quantize_qk_item.cuh says why 256).
// kV16: 16-bit V tiles (a swizzled copy) instead of E4M3 ones; an instantiation each, so neither
// carries the other's V code.
template <typename T, bool kV16, int kHeadDim>
__global__ void __launch_bounds__(kQuantizeThreads, kQuantizeMinBlocks<T, kHeadDim>)
    quantize_kernel(const QuantizeArgs qk, const QuantizeVArgs v) {
  // 16-bit V tiles are copied through registers: their instantiation reserves no E4M3 tile (17.9 KB
  // of shared memory its CTAs never touch, which the L1 of the SM could use instead); `v` is then a
  // placeholder byte.
  __shared__ union Shared {
    QuantizeQkShared qk;
    std::conditional_t<kV16, unsigned char, VTileShared<kVChannelsOf<kHeadDim>>> v;
  } shared;
  ptx::grid_dependents_launch();  // the attention grid may start quantizing Q (it waits for us)
  if (blockIdx.x == 0 && threadIdx.x == 0 && v.work_counter != nullptr) *v.work_counter = 0u;
  const Work work = decode_work<T>(qk, v, static_cast<int>(blockIdx.x));
  if (!work.is_v && work.qk.active) {  // uniform over the CTA
    uint4 raw[QkThreadRows<kHeadDim>::kPasses];
    load_qk_rows<T, kHeadDim>(work.qk, qk.head_dim, raw);
    quantize_qk_rows<T, kHeadDim>(qk, work.qk, raw, shared.qk);
  } else if (work.is_v && work.v.active) {
    if constexpr (kV16) {
      uint4 raw[V16Copy<kQuantizeThreads, kHeadDim>::kPasses];
      load_v16_chunks<kQuantizeThreads, kHeadDim>(work.v, v.head_dim, raw);
      copy_v16_tile<kQuantizeThreads, kHeadDim>(v, work.v, raw);
    } else {
      uint4 raw[VTileThread<kHeadDim>::kVectors][2];
      load_v_tile_vectors<T, kHeadDim>(work.v, v.head_dim, raw);
      quantize_v_tile<T, kHeadDim>(v, work.v, raw, shared.v);
    }
  } else {
    // An item past its sequence's end still waits, as the active ones do before reading the
    // statistics: the attention grid launched after this one relies on this grid ending after the
    // statistics grid.
    ptx::grid_dependency_wait();
  }
}

template <typename T, int kHeadDim>
cudaError_t launch(const QuantizeArgs& qk, const QuantizeVArgs& v, cudaStream_t stream) {
  static_assert(kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256, "the sm90 kernel's head dims");
  // The K chunks must be the V chunks: one grid indexes both.
  if (qk.smooth_k && (qk.column_sum_chunks != v.stat_chunks || qk.column_sum_chunk_tokens != v.stat_chunk_tokens))
    return cudaErrorInvalidValue;
  const int stat_blocks = stats_units(v) * ((v.v16 ? 0 : 1) + (qk.smooth_k ? 1 : 0));
  if (stat_blocks > 0) {  // none for 16-bit V without K smoothing
    const dim3 grid(stat_blocks, v.heads_kv, v.packing.cu_kv == nullptr ? v.batch : 1);
    if (!v.v16) {
      stats_kernel<T, kHeadDim, true><<<grid, kStatsThreads, 0, stream>>>(qk, v);
    } else if constexpr (kHeadDim <= 128) {
      stats_kernel<T, kHeadDim, false><<<grid, kStatsThreads, 0, stream>>>(qk, v);
    } else {
      return cudaErrorInvalidValue;  // no 16-bit P.V at head dim 256 (api/plan.cpp)
    }
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  // quantize_kernel walks K items and V tiles per head: both tensors have the same heads and tiles.
  if (v.v_tiles != nullptr && (v.batch != qk.batch || v.heads_kv != qk.heads_kv || 2 * v.tiles != qk.k_blocks ||
                                v.packing.cu_kv != qk.packing.cu_kv || v.packing.slots_kv != qk.packing.slots_kv))
    return cudaErrorInvalidValue;
  const int64_t blocks = q_items(qk) + kv_work_items(qk, v);
  if (blocks > 2147483647) return cudaErrorInvalidValue;  // one CTA per item, int item indices
  auto kernel = quantize_kernel<T, false, kHeadDim>;
  if (v.v16) {
    if constexpr (kHeadDim <= 128) kernel = quantize_kernel<T, true, kHeadDim>;
    else return cudaErrorInvalidValue;  // no 16-bit P.V at head dim 256 (api/plan.cpp)
  }
  // Programmatically after the statistics grid, which every one of its CTAs starts by allowing:
  // its loads of K and V overlap that grid's tail (quantize_qk_rows and quantize_v_tile wait for it
  // before reading its sums). Without statistics the previous kernel is the caller's: a plain launch.
  return launch_kernel(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kQuantizeThreads), 0, stream, stat_blocks > 0,
                       qk, v);
}

}  // namespace

cudaError_t launch_prepass_sm90(const QuantizeArgs& qk, const QuantizeVArgs& v, sageattn_dtype dtype,
                                cudaStream_t stream) {
  const bool bf16 = dtype == SAGEATTN_DTYPE_BF16;
  if (qk.padded_head_dim == 64)
    return bf16 ? launch<__nv_bfloat16, 64>(qk, v, stream) : launch<__half, 64>(qk, v, stream);
  if (qk.padded_head_dim == 256)
    return bf16 ? launch<__nv_bfloat16, 256>(qk, v, stream) : launch<__half, 256>(qk, v, stream);
  if (qk.padded_head_dim != 128) return cudaErrorInvalidValue;
  return bf16 ? launch<__nv_bfloat16, 128>(qk, v, stream) : launch<__half, 128>(qk, v, stream);
}

}  // namespace sageattn
