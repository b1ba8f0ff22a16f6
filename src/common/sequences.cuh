// Dense batches and packed (varlen) sequences, as every kernel addresses them: where sequence b's
// tokens are in the caller's tensors, how many there are, and where its rows are in the workspace.
// Dense calls take the same paths with cu == NULL (first token 0, the call's length), so one
// kernel serves both; docs/design/varlen.md has the layout.
#pragma once
#include <cstdint>

#include "common/kernel_args.h"
#include "common/tiling.h"

namespace sageattn {

// One side (the queries, or the keys and values) of one sequence.
struct SequenceSide {
  int first_token;  // packed row of its token 0 (0 for dense batches)
  int length;       // its tokens, at most the call's seqlen (the grids are sized from that bound)
};

// Boundaries are clamped to [0, total] and lengths to the bound: a wrong cu_seqlens gives wrong
// output, never an access outside the tensors or the workspace. A sequence's first token is its
// boundary in [0, total], its end the next boundary in [first, total].
__device__ __forceinline__ int clamped_boundary(int boundary, int low, int total) {
  return min(max(boundary, low), total);
}
__device__ __forceinline__ SequenceSide sequence_side(const int* cu, int total, int batch, int bound) {
  if (cu == nullptr) return {0, bound};
  const int first = clamped_boundary(__ldg(cu + batch), 0, total);
  const int end = clamped_boundary(__ldg(cu + batch + 1), first, total);
  return {first, min(end - first, bound)};
}

__device__ __forceinline__ SequenceSide query_side(const Packing& p, int batch, int seqlen_q) {
  return sequence_side(p.cu_q, p.total_q, batch, seqlen_q);
}
__device__ __forceinline__ SequenceSide key_side(const Packing& p, int batch, int seqlen_kv) {
  return sequence_side(p.cu_kv, p.total_kv, batch, seqlen_kv);
}

// Work items of packed sequences without a grid sized batch x longest: with `rows` rows per item,
// sequence b's items take positions [start(b), start(b) + ceil(length_b / rows)) of each head,
// start(b) = first_token_b / rows + b. That is tiling.h's slot rule with `rows`-row slots:
// floor(c / r) + ceil(n / r) <= floor((c + n) / r) + 1, so sequences never overlap, at most one
// position stays empty between two of them, and total / rows + batch positions hold them all.
__host__ __device__ __forceinline__ int packed_positions(int total, int batch, int rows) {
  return total / rows + batch;
}
// The sequence at `position`: the last b with start(b) <= position, by binary search over the
// boundaries (log2(batch) reads, L1-resident after a CTA's first). Clamped like sequence_side, so
// that wrong boundaries give a wrong (in-range) sequence, never an out-of-range one.
__device__ __forceinline__ int sequence_at(const int* cu, int total, int batch, int rows, int position) {
  int lo = 0, hi = batch - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    const int first = clamped_boundary(__ldg(cu + mid), 0, total);
    if (first / rows + mid <= position) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// The sequence at `position` and the index of its `rows`-row block there: negative only for wrong
// boundaries; at or past the sequence's blocks for a position between two sequences. Callers test
// the block against the sequence's length.
struct PackedBlock {
  int batch, block;
};
__device__ __forceinline__ PackedBlock packed_block_at(const int* cu, int total, int batch_count, int rows,
                                                       int position) {
  const int batch = sequence_at(cu, total, batch_count, rows, position);
  const int first = clamped_boundary(__ldg(cu + batch), 0, total);  // sequence_side's first token
  return {batch, position - (first / rows + batch)};
}

// A packed block and its sequence's side (sequence_side's values), found by the 32 lanes of a warp
// together: one coalesced read of the boundaries and a ballot, where packed_block_at and
// sequence_side take log2(batch) + 2 dependent reads. The pre-pass grids decode one block per CTA
// and issue their data loads only after it; streaming K and V through L1 evicts the boundaries, so
// each dependent read is an L2 round trip: the decode held ~8 % of the quantization grid's stall
// samples on a packed call of 8 sequences (ncu, H100, docs/design/varlen.md). Batches of 32
// sequences or more take those reads. For boundaries that do not increase the sequence may differ
// from packed_block_at's, in range all the same. Every lane of the warp must call it with the same
// arguments.
struct PackedLookup {
  PackedBlock at;
  SequenceSide side;
};
__device__ __forceinline__ PackedLookup packed_block_at_warp(const int* cu, int total, int batch_count, int rows,
                                                             int position, int bound) {
  if (batch_count >= 32) {
    const PackedBlock at = packed_block_at(cu, total, batch_count, rows, position);
    return {at, sequence_side(cu, total, at.batch, bound)};
  }
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int raw = lane <= batch_count ? __ldg(cu + lane) : 0;
  const int lane_first = clamped_boundary(raw, 0, total);
  const unsigned started = __ballot_sync(0xffffffffu, lane < batch_count && lane_first / rows + lane <= position);
  const int batch = started != 0u ? 31 - __clz(started) : 0;
  const int first = __shfl_sync(0xffffffffu, lane_first, batch);
  const int end = clamped_boundary(__shfl_sync(0xffffffffu, raw, batch + 1), first, total);
  return {{batch, position - (first / rows + batch)}, {first, min(end - first, bound)}};
}

// Statistics chunks (K column sums, V sums / maxima / minima) of packed sequences, numbered the
// same way with `chunk_tokens`-token positions: the sequence and chunk of a statistics CTA, chunk
// -1 for a position no chunk of a sequence holds (that CTA writes nothing; consumers never read
// past their sequence's own chunks, packed_chunks).
__device__ __forceinline__ int packed_chunks(int length, int chunks, int chunk_tokens) {
  return min(chunks, (length + chunk_tokens - 1) / chunk_tokens);
}
// The statistics chunks a sequence of `length` keys reads: all of a dense call's, a packed
// sequence's own only (the statistics grids write no others).
__device__ __forceinline__ int sequence_chunks(const Packing& p, int length, int chunks, int chunk_tokens) {
  return p.cu_kv == nullptr ? chunks : packed_chunks(length, chunks, chunk_tokens);
}
// Every lane of the warp must call it (packed_block_at_warp).
__device__ __forceinline__ PackedLookup packed_chunk_at(const Packing& p, int batch_count, int seqlen_kv, int chunks,
                                                        int chunk_tokens, int position) {
  PackedLookup found = packed_block_at_warp(p.cu_kv, p.total_kv, batch_count, chunk_tokens, position, seqlen_kv);
  if (found.at.block < 0 || found.at.block >= packed_chunks(found.side.length, chunks, chunk_tokens)) found.at.block = -1;
  return found;
}

// Element offset of (sequence, head, token 0) in a caller's tensor: packed tensors have
// stride_batch 0 (checked), dense ones first_token 0, so one expression serves both.
__device__ __forceinline__ int64_t token0_offset(const SequenceSide& s, int batch, int head, int64_t stride_batch,
                                                 int64_t stride_head, int64_t stride_token) {
  return static_cast<int64_t>(batch) * stride_batch + static_cast<int64_t>(head) * stride_head +
         static_cast<int64_t>(s.first_token) * stride_token;
}

// Workspace row of (sequence, head, token 0) in a per-token buffer: dense [B, H, rows_per_head],
// packed [H, slots * 128] (tiling.h, packed_slots).
__device__ __forceinline__ int64_t workspace_row0(const int* cu, const SequenceSide& s, int batch, int head,
                                                  int heads, int slots, int64_t rows_per_head) {
  if (cu == nullptr) return (static_cast<int64_t>(batch) * heads + head) * rows_per_head;
  return (static_cast<int64_t>(head) * slots + s.first_token / kPackedSlotRows + batch) * kPackedSlotRows;
}

// Index of (sequence, head, row 0) in the caller's LSE: dense [B, Hq, seqlen_q], packed
// [Hq, total_q] (flash-attn's varlen layout).
__device__ __forceinline__ int64_t lse_row0(const Packing& p, const SequenceSide& s, int batch, int head,
                                            int heads_q, int seqlen_q) {
  if (p.cu_q == nullptr) return (static_cast<int64_t>(batch) * heads_q + head) * seqlen_q;
  return static_cast<int64_t>(head) * p.total_q + s.first_token;
}

}  // namespace sageattn
