// Work order of packed sequences: longest sequence first. The sm90 grid has one CTA per work item
// and CTAs start in index order, so the last items started are the ones that decide how long the
// grid's tail is. Numbered by position (packed_block_at), the last items belong to the batch's last
// sequence, whatever its length: with 8 random lengths in [1, 8K], the last 40 of 2864 items ran
// 59 key tiles each while the other SMs had nothing left. Numbered longest sequence first (a
// non-causal item costs its sequence's key count; a causal one at most that), the tail is made of
// the shortest sequences' items, as in longest-processing-time-first list scheduling. (Exact LPT
// for causal items, whose cost is their block's position, would interleave the sequences' blocks;
// a list-scheduling simulation of the 8 lengths gave 509 -> 482 tile units for this order and 475
// for exact LPT, against 474 for a perfect split.)
//
// The table is computed per CTA by one warp from cu_seqlens (the caller's tensors, so before the
// pre-pass ends), for up to 32 sequences (one lane each); larger batches keep the position order.
#pragma once
#include <cstdint>

#include "common/kernel_args.h"
#include "common/tiling.h"

namespace sageattn::sm90 {

constexpr int kLongestFirstMaxSequences = 32;

struct LongestFirst {
  int count;                                // sequences ranked (0: the table is not used)
  int sequence[kLongestFirstMaxSequences];  // sequence of rank r (longer keys first, then index)
  int start[kLongestFirstMaxSequences + 1]; // items per head before rank r
};

// Fills `order` (shared memory) for kRows-row items; every lane of the calling warp must call it.
template <int kRows>
__device__ __forceinline__ void rank_sequences(const AttentionArgs& a, LongestFirst& order) {
  const int lane = threadIdx.x % 32;
  if (a.batch > kLongestFirstMaxSequences) {
    if (lane == 0) order.count = 0;
    return;
  }
  const bool real = lane < a.batch;
  // Wrong boundaries (decreasing cu_seqlens) count as empty sequences, as in packed_block_at.
  const int keys = real ? max(a.packing.cu_kv[lane + 1] - a.packing.cu_kv[lane], 0) : -1;
  const int queries = real ? max(a.packing.cu_q[lane + 1] - a.packing.cu_q[lane], 0) : 0;
  const int items = static_cast<int>(ceil_div(queries, kRows));
  int rank = 0, before = 0;  // sequences ranked ahead of this one, and their items
  for (int j = 0; j < a.batch; ++j) {
    const int keys_j = __shfl_sync(0xffffffffu, keys, j);
    const int items_j = __shfl_sync(0xffffffffu, items, j);
    const bool ahead = keys_j > keys || (keys_j == keys && j < lane);
    rank += ahead ? 1 : 0;
    before += ahead ? items_j : 0;
  }
  if (real) {
    order.sequence[rank] = lane;
    order.start[rank] = before;
    if (rank == a.batch - 1) order.start[a.batch] = before + items;
  }
  if (lane == 0) order.count = a.batch;
}

}  // namespace sageattn::sm90
