// The sm90a attention kernel: INT8 Q.K^T and FP8 (or, kPv16, 16-bit) P.V on wgmma, warp-specialized.
// docs/design/sm90_kernel.md explains the structure; in short, a CTA of three or four warpgroups
// (CtaShape) runs work items (a block of 128 or 192 query rows, head, batch): one CTA per SM
// taking items from a queue (item_queue.cuh; one CTA per item with SAGEATTN_SM90_PERSISTENT=0):
//  - warpgroup 0, the producer: two threads stream the K and V tiles through a kStages-deep ring
//    of shared-memory stages with the bulk-copy engine (the pre-pass stored every tile contiguous
//    and already swizzled, so one copy instruction moves a whole 16 KB tile); masks on three
//    consumers: four threads, two rings ("split items" below);
//  - the consumers (2 or 3): 64 query rows each, which they quantize to INT8 in shared memory at
//    the item's start (q_quantize.cuh); per 128-token tile
//    S = Q.K^T (kD / 32 x m64n128k32 s8; kD the head dim, 64, 128 or 256: HeadDim) -> x = s * c ->
//    online softmax in base 2 against a per-row reference m >= every score (moved to max + headroom
//    when exceeded) -> P~ = e4m3(448 * 2^(x - m)) packed straight into the register A fragment ->
//    O_tile = P~.V~ (4 x m64nDk32 e4m3) -> O = O * rescale + O_tile on the FMA pipe (the
//    two-level accumulation), or, with 3 consumers, O *= rescale and O += P~.V~ on the tensor core.
// kPv16 (the accurate mode, PvTraits): P = 2^(x - m) in the input dtype, 8 x m64n128k16 with V
// MN-major, accumulated straight into O; V of dense calls comes by TMA from the caller's tensor.
// Tiles a mask removes entirely (common/mask.cuh) are neither loaded nor computed.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/element.cuh"
#include "common/fast_exp2.cuh"
#include "common/kernel_args.h"
#include "common/mask.cuh"
#include "common/key_range.cuh"
#include "common/quad_reduce.cuh"
#include "common/sequences.cuh"
#include "common/tiling.h"
#include "ptx/convert.cuh"
#include "ptx/cp_async.cuh"
#include "ptx/grid_dependency.cuh"
#include "ptx/ldmatrix.cuh"
#include "ptx/math.cuh"
#include "ptx/mbarrier.cuh"
#include "ptx/wgmma.cuh"
#include "sm90/item_queue.cuh"
#include "sm90/longest_first.cuh"
#include "sm90/q_quantize.cuh"
#include "sm90/traits.cuh"

namespace sageattn::sm90 {

// Shared memory: [Q rows][K stages][V stages][barriers][Q maximum exchange][output staging], tiles
// 1024-byte aligned (swizzle atoms), the staging 16-byte aligned (stmatrix, bulk copies).
// kRingStages stages: one ring of kStages, or for split items (below) two rings of kSplitStages,
// ring r's stages from r * kSplitStages.
template <int kD, int kVTileBytes, int kQBytes, int kRingStages>
struct SharedLayout {
  static constexpr int kKTileBytes = HeadDim<kD>::kKTileBytes;
  static constexpr int kConsumers = kQBytes / HeadDim<kD>::kConsumerQBytes;
  static_assert((8 * kBarriers<kRingStages>) % 16 == 0 && (kQExchangeFloats * 4) % 16 == 0,
                "the output staging must start 16-byte aligned");
  uint32_t base;
  __device__ uint32_t q() const { return base; }
  __device__ uint32_t k(int stage) const { return base + kQBytes + stage * kKTileBytes; }
  __device__ uint32_t v(int stage) const { return base + kQBytes + kRingStages * kKTileBytes + stage * kVTileBytes; }
  __device__ uint32_t barrier(int index) const {
    return base + kQBytes + kRingStages * (kKTileBytes + kVTileBytes) + 8 * index;
  }
  __device__ uint32_t k_full(int s) const { return barrier(s); }
  __device__ uint32_t v_full(int s) const { return barrier(kRingStages + s); }
  __device__ uint32_t k_empty(int s) const { return barrier(2 * kRingStages + s); }
  __device__ uint32_t v_empty(int s) const { return barrier(3 * kRingStages + s); }
  // kQExchangeFloats per consumer warpgroup (q_quantize.cuh).
  __device__ uint32_t q_exchange() const { return barrier(kBarriers<kRingStages>); }
  // kOutStagingBytes per consumer warpgroup (the epilogue's output rows).
  __device__ uint32_t out_staging(int consumer) const {
    return q_exchange() + kConsumers * kQExchangeFloats * 4 + consumer * kOutStagingBytes;
  }
};

// The K/V tiles a ring of kDepth stages streams are numbered across its work items; tile `tile` uses
// stage tile % kDepth of the ring for the (tile / kDepth)-th time, so barrier phases alternate. The
// counter is unsigned; it would wrap after 2^32 tiles of one CTA (about an hour of one SM's work),
// which only a depth that is not a power of two would notice.
template <int kDepth>
__device__ __forceinline__ int stage_of(uint32_t tile) { return static_cast<int>(tile % kDepth); }
template <int kDepth>
__device__ __forceinline__ uint32_t phase_of(uint32_t tile) { return (tile / kDepth) & 1u; }

// Split items: masks on the three-consumer kernel. A 192-row item of contiguous rows
// spans two 128-row Q blocks whose masks differ, so its consumers computed different subsets of the
// tiles the CTA streamed (the union: 75 % of the tiles for a random 50 % mask), and a consumer
// whose block skipped a tile idled or waited on a ring held by the others: 1.58x of the dense call
// at 16K against 1.78x for a mask whose blocks agree (docs/design/masks.md). A split item instead
// pairs the whole Q block 3m + h (consumers 0 and 1: group 0) with half h of block 3m + 2 (consumer
// 2: group 1), items 2m + h for h = 0, 1; each group streams only the tiles its own block keeps
// through its own ring of stages, so neither waits for the other's tiles: random 50 % block mask
// 1.57x -> 1.75x of the dense call at 16K (H100, docs/performance.md). A tile both blocks keep is
// loaded twice (an all-True block mask: 0.99x -> 0.94x). Rings of 3 stages measured no faster.
// Element masks run split items too (they ran on two consumers before, 128-row items): a boolean
// causal mask at 16K 1.26x -> 1.61x of the dense call, key padding 0.77x -> 0.94x.
template <bool kMasks, int kConsumers>
constexpr bool kSplitItems = kMasks && kConsumers == 3;
template <bool kMasks, int kConsumers, int kD = 128>
constexpr int kRingDepth = kSplitItems<kMasks, kConsumers> ? kSplitStages : kStagesOf<kD>;
template <bool kMasks, int kConsumers, int kD = 128>
constexpr int kRingStagesOf = (kSplitItems<kMasks, kConsumers> ? 2 : 1) * kRingDepth<kMasks, kConsumers, kD>;
// The first query row of group `group` of split item `item` (the item's index within its head).
__host__ __device__ __forceinline__ int split_group_row0(int item, int group) {
  const int triple = item / 2, half = item % 2;
  return group == 0 ? (3 * triple + half) * kQRows : (3 * triple + 2) * kQRows + 64 * half;
}

// One work item: a block of kRows query rows (128 or 192, CtaShape) of one (batch, head). Items
// are numbered with the row block fastest, so the CTAs running at the same time share K/V heads in
// L2; causal items run longest (last row block) first.
struct WorkItem {
  int q_block, head, batch;
};
// Row blocks per (batch, head) of a dense call: the plan's 128-row Q blocks, or for 192-row items
// ceil(seqlen_q / 192).
// Split items: two per three Q blocks (and per last one or two).
template <int kRows, bool kSplit = false>
__host__ __device__ __forceinline__ int row_blocks(const AttentionArgs& a) {
  if (kSplit) return 2 * static_cast<int>(ceil_div(a.q_blocks, 3));
  return kRows == kQRows ? a.q_blocks : static_cast<int>(ceil_div(a.seqlen_q, kRows));
}
// Packed sequences are numbered by position (common/sequences.cuh, packed_positions), head by head:
// a grid of batch x ceil(longest / kRows) items per head left every shorter sequence's tail
// empty (a CTA each): 1.9x the items needed for 8 lengths spread over [1, 8K], 18x for one 8K
// sequence among 63 short ones. Positions between two sequences stay empty (q_block past the
// sequence).
// Packed calls of at most kLongestFirstMaxSequences sequences are numbered longest sequence first
// instead (`order`, longest_first.cuh): rank by rank, head by head, the rank's sequence's row blocks
// (causal: last block first, as above); indices past the last item are empty.
template <bool kCausal, int kRows, bool kPacked = false, bool kSplit = false>
__device__ __forceinline__ WorkItem work_item(const AttentionArgs& a, int64_t index,
                                              const LongestFirst* order = nullptr) {
  if constexpr (kPacked) {
    if (order != nullptr && order->count > 0) {
      int rank = 0;
      while (rank < order->count && static_cast<int64_t>(order->start[rank + 1]) * a.heads_q <= index) ++rank;
      if (rank == order->count) return {1 << 22, 0, 0};  // empty: q_block * kRows past any sequence
      const int64_t local = index - static_cast<int64_t>(order->start[rank]) * a.heads_q;
      const int items = order->start[rank + 1] - order->start[rank];
      const int block = static_cast<int>(local % items);
      return {kCausal ? items - 1 - block : block, static_cast<int>(local / items), order->sequence[rank]};
    }
    const int positions = packed_positions(a.packing.total_q, a.batch, kRows);
    const int head = static_cast<int>(index / positions);
    const int position = static_cast<int>(index % positions);
    const PackedBlock at = packed_block_at(a.packing.cu_q, a.packing.total_q, a.batch, kRows, position);
    const int blocks = static_cast<int>(ceil_div(query_side(a.packing, at.batch, a.seqlen_q).length, kRows));
    if (at.block < 0 || at.block >= blocks) return {blocks, head, at.batch};  // empty: q_block * kRows >= length
    return {kCausal ? blocks - 1 - at.block : at.block, head, at.batch};
  } else {
    const int blocks = row_blocks<kRows, kSplit>(a);
    const int block = static_cast<int>(index % blocks);
    const int64_t head_index = index / blocks;
    return {kCausal ? blocks - 1 - block : block, static_cast<int>(head_index % a.heads_q),
            static_cast<int>(head_index / a.heads_q)};
  }
}
template <int kRows, bool kPacked = false, bool kSplit = false>
__host__ __device__ __forceinline__ int64_t work_items(const AttentionArgs& a) {
  if (kPacked) return static_cast<int64_t>(packed_positions(a.packing.total_q, a.batch, kRows)) * a.heads_q;
  return static_cast<int64_t>(row_blocks<kRows, kSplit>(a)) * a.heads_q * a.batch;
}

// Where one item's rows are: its sequence's lengths (packed sequences leave the positions between
// two sequences empty; dense batches none), the key tiles it visits, and the
// workspace rows of its Q head and of its K/V head (tiles are 128 rows of 128 bytes).
struct ItemRows {
  bool empty;
  int kv_head;  // the K/V head of the item's query head (GQA / MQA)
  SequenceSide queries, keys_side;
  KeyRange keys;
  int64_t q_row0, k_row0;
};
template <bool kCausal, bool kPacked, int kRows>
__device__ __forceinline__ ItemRows item_rows(const AttentionArgs& a, const WorkItem& w) {
  const Packing packing = kPacked ? a.packing : Packing{};  // dense: everything below folds to constants
  ItemRows r;
  r.queries = query_side(packing, w.batch, a.seqlen_q);
  r.keys_side = key_side(packing, w.batch, a.seqlen_kv);
  const int q_start = w.q_block * kRows;
  r.empty = kPacked && q_start >= r.queries.length;  // dense grids end with their last Q block
  const int all_tiles = kPacked ? static_cast<int>(ceil_div(r.keys_side.length, kKeyTile)) : a.k_blocks / 2;
  r.keys = key_range<kCausal, kRows, kKeyTile>(r.queries.length, r.keys_side.length, all_tiles, q_start);
  r.kv_head = w.head / (a.heads_q / a.heads_kv);
  r.q_row0 = workspace_row0(packing.cu_q, r.queries, w.batch, w.head, a.heads_q, packing.slots_q,
                            static_cast<int64_t>(a.q_blocks) * kQRows);
  r.k_row0 = workspace_row0(packing.cu_kv, r.keys_side, w.batch, r.kv_head, a.heads_kv, packing.slots_kv,
                            static_cast<int64_t>(a.k_blocks / 2) * kKeyTile);
  return r;
}

// The key tiles group `group` (128 rows from row0, or 64) of a split item visits: none past the
// sequence's last row, so that the group's producer thread and consumers agree on an empty group.
template <bool kCausal>
__device__ __forceinline__ KeyRange split_group_keys(int seqlen_q, int seqlen_kv, int all_tiles, int row0, int group) {
  if (row0 >= seqlen_q) return {0, 0};
  return group == 0 ? key_range<kCausal, kQRows, kKeyTile>(seqlen_q, seqlen_kv, all_tiles, row0)
                    : key_range<kCausal, 64, kKeyTile>(seqlen_q, seqlen_kv, all_tiles, row0);
}

// Two producer threads per ring, one per stream, so that a K tile never waits behind the V tile of
// the previous iteration (V stages are freed later than K stages: after P.V, not after Q.K^T). Q is
// not theirs: the consumers quantize their own rows (q_quantize.cuh). Split items (kSplit): ring
// `ring` streams the tiles of group `ring`'s block.
template <bool kCausal, bool kMasks, bool kPacked, bool kSplit, int kDepth, int kRows, bool kPv16, int kD,
          int kVTileBytes, int kQBytes, int kRingStages>
__device__ __forceinline__ void produce(const AttentionArgs& a,
                                        const SharedLayout<kD, kVTileBytes, kQBytes, kRingStages>& sh, bool is_v,
                                        int ring, const LongestFirst* order, const ItemQueue& queue) {
  ptx::grid_dependency_wait();  // the K and V tiles come from the pre-pass (launch.cuh)
  uint32_t tile_counter = 0;
  const int ring_stage0 = ring * kDepth;
  // Persistent CTAs: ring 0's K thread fetches the next item (item_queue.cuh), the others read it.
  uint32_t item = 0;
  for (int64_t index = blockIdx.x; index < work_items<kRows, kPacked, kSplit>(a);
       index = !SAGEATTN_SM90_PERSISTENT ? index + gridDim.x
               : is_v || ring != 0       ? queue.take(item++, false)
                                         : queue.post(item++, a.work_counter)) {
    const WorkItem w = work_item<kCausal, kRows, kPacked, kSplit>(a, index, order);
    const ItemRows rows = item_rows<kCausal, kPacked, kRows>(a, w);
    if (rows.empty) continue;  // the consumers skip the same items
    // Masks: the tiles of the item's Q block (128-row items), or of the group's (split items).
    KeyRange keys = rows.keys;
    TileCodeRow codes{nullptr, 0};
    if constexpr (kSplit) {
      const int row0 = split_group_row0(w.q_block, ring);
      keys = split_group_keys<kCausal>(rows.queries.length, rows.keys_side.length, a.k_blocks / 2, row0, ring);
      if (keys.tiles > 0) codes = tile_code_row(a, w.batch, w.head, row0 / kQRows);
    } else if constexpr (kMasks) {
      static_assert(kRows == kQRows, "masked items are one Q block unless split");
      codes = tile_code_row(a, w.batch, w.head, w.q_block);
    }
    const int tiles = keys.tiles;
    // 16-bit V of a dense call without tiles: two TMA loads per tile from the caller's tensor (its
    // two 64-channel panels, swizzled by the TMA unit exactly as the bulk-copied tiles are).
    const bool v_map = kPv16 && is_v && a.v_tiles == nullptr;
    const char* base = is_v ? reinterpret_cast<const char*>(a.v_tiles) : reinterpret_cast<const char*>(a.k_int8);
    const int tile_bytes = is_v ? kVTileBytes : HeadDim<kD>::kKTileBytes;
    // K rows: kD bytes per token; V tiles: kD, or 2 kD for 16-bit V (unused, and base NULL, with v_map).
    const int64_t item_offset = rows.k_row0 * (tile_bytes / kKeyTile);
    // The consumers visit the same tiles (the ones no mask removes entirely), in order.
    for (int tile = codes.next_visited<kKeyTile>(0, tiles); tile < tiles;
         tile = codes.next_visited<kKeyTile>(tile + 1, tiles), ++tile_counter) {
      const int s = ring_stage0 + stage_of<kDepth>(tile_counter);
      const uint32_t full = is_v ? sh.v_full(s) : sh.k_full(s);
      ptx::mbarrier_wait(is_v ? sh.v_empty(s) : sh.k_empty(s), phase_of<kDepth>(tile_counter) ^ 1u);
      ptx::mbarrier_arrive_expect_tx(full, tile_bytes);
      if constexpr (kPv16) {  // 16-bit V: kD / 64 panels of 64 channels x 128 tokens
        if (v_map) {
#pragma unroll
          for (int panel = 0; panel < kD / 64; ++panel)
            ptx::tma_load_4d(sh.v(s) + panel * kTileBytes, &a.v_map, 64 * panel, tile * kKeyTile, rows.kv_head,
                             w.batch, full);
          continue;
        }
      }
      ptx::bulk_copy_global_to_shared(is_v ? sh.v(s) : sh.k(s),
                                      base + item_offset + static_cast<int64_t>(tile) * tile_bytes, tile_bytes, full);
    }
  }
}

// Persistent CTAs of the non-split kernels: producer warp 2 reads each next item's index when the
// fetcher posts it (item_queue.cuh: the consumers are then still kStages tiles from the current
// item's end) and prefetches that item's Q rows into L2, so that the consumers' Q loads at the
// item's start (q_quantize.cuh) hit L2 instead of DRAM. The CTA's first item is loaded directly
// (its loads overlap the pre-pass). 32 lanes split the rows; every line of a row is fetched.
template <bool kCausal, int kRows, bool kPacked>
__device__ __forceinline__ void prefetch_next_q_rows(const AttentionArgs& a, const LongestFirst* order,
                                                     const ItemQueue& queue, int element_bytes) {
  const int lane = threadIdx.x % 32;
  const int64_t items = work_items<kRows, kPacked, false>(a);
  uint32_t item = 0;
  for (int64_t index = blockIdx.x; index < items;) {
    index = queue.take(item++, true);  // one take per item, as every reader
    if (index >= items) break;
    const WorkItem w = work_item<kCausal, kRows, kPacked, false>(a, index, order);
    const ItemRows rows = item_rows<kCausal, kPacked, kRows>(a, w);
    if (rows.empty) continue;
    const char* head_rows = static_cast<const char*>(a.q) + token0_offset(rows.queries, w.batch, w.head, a.q_stride_batch,
                                                                          a.q_stride_head, a.q_stride_token) *
                                                                element_bytes;
    const int64_t stride_bytes = a.q_stride_token * element_bytes;
    const int row_bytes = a.head_dim * element_bytes;
    const int last_row = min(w.q_block * kRows + kRows, rows.queries.length);
    for (int r = w.q_block * kRows + lane; r < last_row; r += 32)
      ptx::prefetch_l2_bytes(head_rows + r * stride_bytes, row_bytes);
  }
}

// The 16-bit P.V step of the input dtype T and the accumulator's width (N / 2 floats: N = 128 or 64).
template <typename T, int kRegs>
__device__ __forceinline__ void wgmma_pv_16bit(float (&o)[kRegs], const uint32_t (&p)[4], uint64_t desc, bool acc) {
  static_assert(kRegs == 64 || kRegs == 32, "head dims 128 and 64");
  constexpr bool kHalf = std::is_same_v<T, __half>;
  if constexpr (kRegs == 64) {
    if constexpr (kHalf) ptx::wgmma_m64n128k16_f16(o, p, desc, acc);
    else ptx::wgmma_m64n128k16_bf16(o, p, desc, acc);
  } else {
    if constexpr (kHalf) ptx::wgmma_m64n64k16_f16(o, p, desc, acc);
    else ptx::wgmma_m64n64k16_bf16(o, p, desc, acc);
  }
}

// Row statistics of the two rows (g and g + 8 of the warp's 16) a consumer thread holds.
struct RowState {
  float max[2];  // reference of the base-2 scores: >= every score seen, at most the headroom above
                 // the largest (-inf until a key is seen); P~ = unit * 2^(x - max) <= unit
  float sum[2];  // this thread's share of sum unit * 2^(x - max) (unit: 448 for E4M3 P~, else 1)
};


// Scores of one tile, as the consumer holds them: exact integer sums (as floats) and the two
// dequantization factors (K group of the first and second 64 tokens).
struct TileScores {
  float s[kAccRegs];
  float c[2];
  __device__ float scale(int i) const { return c[i < kAccRegs / 2 ? 0 : 1]; }
};

// Below |max| = 2^10 the rounding of a folded offset costs < 2^-13 in the exponent.
constexpr float kFusedMaxLimit = 1024.f;
// A row that has seen no key yet (max -inf, offset 0) is fine on the fused paths too: its scores
// are all -inf. Without this, one such row would send its whole warp down the exact path.
__device__ __forceinline__ bool fused_ok(float m) { return m == -INFINITY || fabsf(m) < kFusedMaxLimit; }

// Per row of this thread: max over the quad of `tile_max` and the current reference.
__device__ __forceinline__ void new_maxima(const float (&tile_max)[2], const RowState& st, float (&m)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) m[r] = fmaxf(quad_max(tile_max[r]), st.max[r]);
}

// Moves each reference that `m` (the new maximum) exceeds to m + headroom: the factor for the O
// accumulated so far, the rescaled partial sums, and the ex2 offsets: unit * 2^(x - ref) =
// 2^(x - (ref - log2 unit)); a row without keys so far uses offset 0 so that -inf - (-inf) never
// appears. The reference never falls below a score: P~ must never exceed 448, or E4M3 would
// saturate.
template <bool kPv16>
__device__ __forceinline__ void commit_maxima(const float (&m)[2], RowState& st, float (&rescale)[2],
                                              float (&offset)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const bool moved = m[r] > st.max[r];  // m >= st.max
    const float reference = moved ? m[r] + PvTraits<kPv16>::kHeadroom : st.max[r];
    rescale[r] = moved ? ptx::exp2_approx(st.max[r] - reference) : 1.f;  // old max -inf -> 0
    st.max[r] = reference;
    st.sum[r] *= rescale[r];
    offset[r] = reference == -INFINITY ? 0.f : reference - PvTraits<kPv16>::kLog2PUnit;
  }
}

template <bool kPv16>
using PFragments = uint32_t[PvTraits<kPv16>::kSteps][4];

// Row sums of the tile's probabilities into the state (4 independent partial sums per row: a
// serial chain of 32 adds otherwise); pack_p: P packed into the A fragments. E4M3: k32 step kk takes
// accumulator column blocks 4kk..4kk+3; bytes of a0 are row g's values of blocks 4kk and 4kk + 1,
// a1 the same for row g + 8, a2 and a3 blocks 4kk + 2 and 4kk + 3. 16-bit (T): k16 step kk takes
// blocks 2kk and 2kk + 1, register r = accumulator pair r (ptx/wgmma.cuh), no reordering.
__device__ __forceinline__ void add_row_sums(const float (&x)[kAccRegs], RowState& st) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float part[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int j = 0; j < kAccRegs / 4; ++j) part[j % 4] += x[4 * j + 2 * r] + x[4 * j + 2 * r + 1];
    st.sum[r] += (part[0] + part[1]) + (part[2] + part[3]);
  }
}
template <typename T, bool kPv16>
__device__ __forceinline__ void pack_p(const float (&x)[kAccRegs], PFragments<kPv16>& p) {
  if constexpr (kPv16) {
#pragma unroll
    for (int kk = 0; kk < PvTraits<kPv16>::kSteps; ++kk)
#pragma unroll
      for (int reg = 0; reg < 4; ++reg) p[kk][reg] = Element<T>::from_float2(x[8 * kk + 2 * reg], x[8 * kk + 2 * reg + 1]);
  } else {
#pragma unroll
    for (int kk = 0; kk < PvTraits<kPv16>::kSteps; ++kk) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int j = 4 * kk + 2 * half;
#pragma unroll
        for (int r = 0; r < 2; ++r)
          p[kk][2 * half + r] = ptx::e4m3x4(x[4 * j + 2 * r], x[4 * j + 2 * r + 1], x[4 * (j + 1) + 2 * r],
                                            x[4 * (j + 1) + 2 * r + 1]);
      }
    }
  }
}

// Per row r, the maximum of `values` (int32 or float) in each 64-key half: column blocks 0..7
// (scale c[0]) and 8..15 (c[1]), reduced as balanced trees (a serial chain over 32 scores is 32
// dependent instructions on the softmax's critical path).
template <typename V>
__device__ __forceinline__ void half_maxima(const V (&values)[kAccRegs], int r, V& first, V& second) {
  constexpr int kBlocksPerHalf = kAccRegs / 8;
  V v[kAccRegs / 4];
#pragma unroll
  for (int j = 0; j < kAccRegs / 4; ++j) v[j] = max(values[4 * j + 2 * r], values[4 * j + 2 * r + 1]);
#pragma unroll
  for (int width = kBlocksPerHalf / 2; width >= 1; width /= 2)
#pragma unroll
    for (int j = 0; j < width; ++j) {
      v[j] = max(v[j], v[j + width]);
      v[kBlocksPerHalf + j] = max(v[kBlocksPerHalf + j], v[kBlocksPerHalf + j + width]);
    }
  first = v[0];
  second = v[kBlocksPerHalf];
}

// Per row of this thread, the largest score of the tile: max(s) * c per 64-key half (c >= 0), from
// the int32 sums (exact, so the same value as from their float conversions) or from final scores.
template <typename V>
__device__ __forceinline__ void row_maxima(const V (&values)[kAccRegs], const float (&c)[2], float (&tile_max)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    V first, second;
    half_maxima(values, r, first, second);
    tile_max[r] = fmaxf(static_cast<float>(first) * c[0], static_cast<float>(second) * c[1]);
  }
}

// Updates the row state with one tile and turns its scores into packed P fragments; `rescale`
// is what the previously accumulated O of each row must be multiplied by. Masked tiles arrive as
// final base-2 scores with -inf where masked and c = {1, 1} (see the caller); unmasked tiles as
// exact integer sums and their two scales: c > 0 (or 0 for an all-zero group), so
// max(s * c) = max(s) * c per half (tile_max, row_maxima), and one FFMA (s * c - offset) and one ex2
// per score.
// Headroom > 0: when no score of the warp's rows exceeds its reference (a vote over each lane's
// own maxima; the quad needs no shuffles), the reference stays, the exponentials go against it and
// the function returns true: nothing to rescale, so the shuffles, the reference update and the o
// rescale leave the chain from the scores to P. A row without a reference yet (-inf) or on the
// exact path takes the update below.
// given_max: the row maxima if the caller has them (row_maxima), else null.
// softmax_exponents leaves the tile's P unpacked in t.s (the caller packs it once the P fragments
// are free); softmax_to_p packs it at once.
template <typename T, bool kPv16>
__device__ __forceinline__ bool softmax_exponents(TileScores& t, RowState& st, float (&rescale)[2],
                                                  const float* given_max = nullptr) {
  float tile_max[2];
  if (given_max != nullptr) {
    tile_max[0] = given_max[0];
    tile_max[1] = given_max[1];
  } else {
    row_maxima(t.s, t.c, tile_max);
  }
  float offset[2];
  bool unmoved = false;
  if (PvTraits<kPv16>::kHeadroom > 0.f) {
    bool fits = true;
#pragma unroll
    for (int r = 0; r < 2; ++r)
      fits = fits && st.max[r] != -INFINITY && fabsf(st.max[r]) < kFusedMaxLimit && tile_max[r] <= st.max[r];
    unmoved = __all_sync(0xffffffffu, fits);
  }
  if (unmoved) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      rescale[r] = 1.f;
      offset[r] = st.max[r] - PvTraits<kPv16>::kLog2PUnit;
    }
  } else {
    float m[2];
    new_maxima(tile_max, st, m);
    commit_maxima<kPv16>(m, st, rescale, offset);
  }
  // Huge logits (inputs near fp16's range) would lose whole units of the exponent to the folded
  // offset (ex2(+512) = inf); they take the exact path: round s * c first, so that x - max is exact
  // and <= 0, then add log2 of P's unit. The choice is per warp (a vote), so the branch never diverges.
  if (__all_sync(0xffffffffu, fused_ok(st.max[0]) && fused_ok(st.max[1]))) {
#pragma unroll
    for (int i = 0; i < kAccRegs; ++i) {
      // Masked tiles arrive already scaled (c = 1) with -inf where masked: -inf * 1 - offset = -inf.
      const float arg = fmaf(t.s[i], t.scale(i), -offset[(i / 2) % 2]);
      t.s[i] = i % 8 < SAGEATTN_SM90_POLY_EXP2 ? exp2_poly(arg) : ptx::exp2_approx(arg);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kAccRegs; ++i) {
      const int r = (i / 2) % 2;
      const float reference = st.max[r] == -INFINITY ? 0.f : st.max[r];
      t.s[i] = ptx::exp2_approx(
          __fadd_rn(__fsub_rn(__fmul_rn(t.s[i], t.scale(i)), reference), PvTraits<kPv16>::kLog2PUnit));
    }
  }
  if (SAGEATTN_SM90_EXPERIMENT != 5) add_row_sums(t.s, st);
  return unmoved;
}
template <typename T, bool kPv16>
__device__ __forceinline__ bool softmax_to_p(TileScores& t, RowState& st, PFragments<kPv16>& p, float (&rescale)[2],
                                             const float* given_max = nullptr) {
  const bool unmoved = softmax_exponents<T, kPv16>(t, st, rescale, given_max);
  pack_p<T, kPv16>(t.s, p);
  return unmoved;
}

// The natural-log LSE of a row from its softmax reference and sum of P (-inf for a row without any
// allowed key), with the pre-pass's correction for K smoothing where there is one.
template <typename Pv>
__device__ __forceinline__ float row_lse(const AttentionArgs& a, float reference, float sum, int64_t workspace_row) {
  if (!(sum > 0.f)) return -INFINITY;
  float lse = (reference + log2f(sum) - Pv::kLog2PUnit) * static_cast<float>(kLn2);
  if (a.lse_correction != nullptr) lse += a.sm_scale * a.lse_correction[workspace_row];
  return lse;
}

// How an element mask reaches the softmax of a kTileElementMask tile.
enum ElementMask : int {
  kNoElementMask = 0,  // none (no mask, or a block mask alone)
  kElementBits = 1,    // a boolean mask as 128 keep bits per row and tile (two 16-byte loads)
  kElementValues = 2,  // an additive mask: one load per score
};

// kMasks: the call has tile codes (a block mask or an element mask); without, every mask test
// compiles away and the instantiation is the plain kernel. kElement: how the element mask is
// applied. Each is its own instantiation because an element path in the softmax costs even where
// it does not run: those instantiations run plain tiles 16-20 % slower than the skip-only one
// (H200, 16K; docs/design/masks.md), which a block mask alone therefore does not pay. kPacked:
// packed sequences (varlen), whose offsets and lengths come from device memory; apart because the
// per-item values held in registers cost the dense causal kernel 1-2.5 % (H200, 4K and 16K).
// kPv16: the P.V precision (PvTraits).
// The arguments are a __grid_constant__ parameter: the V tensor map is read by the TMA unit from
// its parameter-space address.
// kD: the head dim (HeadDim, traits.cuh); 64 only without masks.
template <typename T, bool kCausal, bool kMasks, int kElement, bool kPacked, bool kPv16, int kD>
__global__ void __launch_bounds__(CtaShape<kPv16, kD>::kThreads, 1)
    attention_sm90_kernel(const __grid_constant__ AttentionArgs a) {
  using Pv = PvTraits<kPv16, kD>;
  using Shape = CtaShape<kPv16, kD>;
  using Hd = HeadDim<kD>;
  constexpr int kRows = Shape::kRows;
  constexpr int kOutRegs = Hd::kOutRegs;
  static_assert(!(kMasks && kPacked), "masks are not supported with packed sequences");
  static_assert(kD != 64 || !kMasks, "head dim 64 runs without masks (api/plan.cpp pads masked calls to 128)");
  constexpr bool kSplit = kSplitItems<kMasks, Shape::kConsumers>;
  // Head dim 256 without masks: the turn overlaps the softmax with the previous tile's P.V (causal:
  // below the diagonal only; the diagonal tiles' masked softmax in the overlapped turn spilled
  // inside the loop, ptxas at 240 registers, and measured 1-5 % slower, H100, docs/performance.md).
  constexpr bool kPvOverlap = kD == 256 && !kMasks && !kPv16 && SAGEATTN_SM90_HD256_PV_OVERLAP;
  constexpr int kDepth = kRingDepth<kMasks, Shape::kConsumers, kD>;  // stages per ring
  constexpr int kRingStages = kRingStagesOf<kMasks, Shape::kConsumers, kD>;
  extern __shared__ __align__(1024) unsigned char shared_raw[];
  // The dynamic shared window is not guaranteed to start on a 1024-byte boundary: round up (the
  // launch reserves the extra kAlignSlack bytes).
  const uint32_t raw = ptx::shared_address(shared_raw);
  const SharedLayout<kD, Pv::kVTileBytes, Shape::kQBytes, kRingStages> sh{(raw + 1023u) & ~1023u};

  // Broadcast through a shuffle so the compiler knows the value is warp-uniform: wgmma issued under
  // a branch it considers divergent gets serialized (ptxas C7520).
  const int warpgroup = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x / 128), 0);

  // Persistent CTAs: the next item's index (item_queue.cuh).
  __shared__ __align__(8) uint64_t queue_barriers[4];
  __shared__ int64_t queue_slots[2];
  const ItemQueue queue{ptx::shared_address(queue_barriers), queue_slots};
  if (threadIdx.x == 0) {
    // Readers: the consumer warps, the producer threads but the fetcher and, without split items,
    // the Q prefetch warp (prefetch_next_q_rows).
    if (SAGEATTN_SM90_PERSISTENT) queue.init(Shape::kConsumerWarps + (kSplit ? 3 : 2));
    for (int s = 0; s < kRingStages; ++s) {
      // Split items: ring 0 serves consumers 0 and 1, ring 1 consumer 2.
      const int readers = !kSplit ? Shape::kConsumerWarps : s < kDepth ? 8 : 4;
      ptx::mbarrier_init(sh.k_full(s), 1);
      ptx::mbarrier_init(sh.v_full(s), 1);
      ptx::mbarrier_init(sh.k_empty(s), readers);
      ptx::mbarrier_init(sh.v_empty(s), readers);
    }
    ptx::mbarrier_init_fence();
  }
  // Packed calls: the work order, from the caller's cu_seqlens (longest_first.cuh).
  __shared__ LongestFirst order_table;
  const LongestFirst* order = nullptr;
  if constexpr (kPacked) {
    if (threadIdx.x / 32 == 1) rank_sequences<kRows>(a, order_table);
    order = &order_table;
  }
  __syncthreads();

  // The overlapped turn holds P.V's operands (o, P) in flight beside the score tile: at 232 registers
  // ptxas serialized every wgmma (C7512); the producer threads give up 8 more (24: they spill a few
  // bytes of item state, once per item).
  constexpr int kProducerRegisters = kPvOverlap ? 24 : Shape::kProducerRegisters;
  constexpr int kConsumerRegisters = kPvOverlap ? 240 : Shape::kConsumerRegisters;
  static_assert(128 * kProducerRegisters + Shape::kConsumers * 128 * kConsumerRegisters <=
                    Shape::kLaunchRegisters * Shape::kThreads,
                "setmaxnreg cannot hand out more registers than the CTA was launched with");
  if (warpgroup == 0) {
    ptx::warpgroup_release_registers<kProducerRegisters>();
    // Lane 0 of warps 0 (K) and 1 (V) for ring 0, of warps 2 (K) and 3 (V) for ring 1.
    const bool is_v = threadIdx.x == 32 || (kSplit && threadIdx.x == 96);
    if (threadIdx.x == 0 || threadIdx.x == 32 || (kSplit && (threadIdx.x == 64 || threadIdx.x == 96)))
      produce<kCausal, kMasks, kPacked, kSplit, kDepth, kRows, kPv16>(
          a, sh, is_v, kSplit && threadIdx.x >= 64 ? 1 : 0, order, queue);
    else if (SAGEATTN_SM90_PERSISTENT && !kSplit && threadIdx.x / 32 == 2)
      prefetch_next_q_rows<kCausal, kRows, kPacked>(a, order, queue, static_cast<int>(sizeof(T)));
    return;
  }
  ptx::warpgroup_claim_registers<kConsumerRegisters>();

  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int row_in_block = consumer * 64 + warp * 16 + lane / 4;  // and row_in_block + 8
  const uint64_t q_desc = ptx::smem_descriptor_k_major<Hd::Rows::kRowBytes>(sh.q() + consumer * Hd::kConsumerQBytes);
  const int my_turn = 1 + consumer, other_turn = 2 - consumer;  // ping-pong (2 consumers)
  constexpr int kTurnThreads = 256;
  uint32_t first_tile = 0;  // the ring-wide number of this item's tile 0 (see stage_of)
  // This consumer's ring: split items give consumer 2 (group 1) the second.
  const int group = kSplit && consumer == 2 ? 1 : 0;
  const int ring_stage0 = group * kDepth;
  // Generic pointers to this consumer's Q rows and maximum exchange (quantize_q_rows).
  unsigned char* const q_rows = shared_raw + (sh.q() - raw) + consumer * Hd::kConsumerQBytes;
  float* const q_exchange = reinterpret_cast<float*>(shared_raw + (sh.q_exchange() - raw)) + consumer * kQExchangeFloats;

  // The stage and barrier phase of tile `slot` of the current item in this consumer's ring.
  auto stage = [&](int slot) { return ring_stage0 + stage_of<kDepth>(first_tile + slot); };
  auto phase = [&](int slot) { return phase_of<kDepth>(first_tile + slot); };
  // Frees a tile of this consumer's ring that it does not compute, once the tile has arrived (never
  // earlier: an arrival must count toward that tile's phase).
  auto pass_tile = [&](uint32_t tile) {
    const int s = ring_stage0 + stage_of<kDepth>(tile);
    ptx::mbarrier_wait(sh.k_full(s), phase_of<kDepth>(tile));
    ptx::mbarrier_wait(sh.v_full(s), phase_of<kDepth>(tile));
    __syncwarp();
    if (lane == 0) {
      ptx::mbarrier_arrive(sh.k_empty(s));
      ptx::mbarrier_arrive(sh.v_empty(s));
    }
  };

  // A persistent CTA (fewer CTAs than items) runs several items; the producer loads the next
  // item's first K/V tiles while this one finishes its last P.V and its epilogue.
  uint32_t item = 0;
  for (int64_t index = blockIdx.x; index < work_items<kRows, kPacked, kSplit>(a);
       index = SAGEATTN_SM90_PERSISTENT ? queue.take(item++, true) : index + gridDim.x) {
    const WorkItem w = work_item<kCausal, kRows, kPacked, kSplit>(a, index, order);
    const ItemRows rows = item_rows<kCausal, kPacked, kRows>(a, w);
    if (rows.empty) continue;  // the producer skips the same items
    const int head = w.head, batch = w.batch, kv_head = rows.kv_head;
    const int seqlen_q = rows.queries.length, seqlen_kv = rows.keys_side.length;
    const int64_t diagonal_shift = static_cast<int64_t>(seqlen_kv) - seqlen_q;
    // This consumer's rows start at q_start + 64 * consumer (split items: its group's rows).
    const int group_row0 = kSplit ? split_group_row0(w.q_block, group) : 0;
    const int q_start = !kSplit ? w.q_block * kRows : group == 0 ? group_row0 : group_row0 - 2 * 64;
    const KeyRange keys =
        kSplit ? split_group_keys<kCausal>(seqlen_q, seqlen_kv, a.k_blocks / 2, group_row0, group) : rows.keys;
    if constexpr (kSplit) {
      // A consumer whose rows all lie past the sequence (consumer 1 in the last Q block, or a group
      // past the end: the ring then streams nothing) frees the tiles its group's block keeps as
      // they arrive, as in the dense kernel below.
      if (q_start + consumer * 64 >= seqlen_q) {
        const TileCodeRow own = tile_code_row(a, batch, head, group_row0 / kQRows);
        int walked = 0;
        for (int tile = own.next_visited<kKeyTile>(0, keys.tiles); tile < keys.tiles;
             tile = own.next_visited<kKeyTile>(tile + 1, keys.tiles), ++walked)
          pass_tile(first_tile + static_cast<uint32_t>(walked));
        first_tile += static_cast<uint32_t>(walked);
        continue;
      }
    }
    if constexpr (Shape::kConsumers == 3 && !kMasks) {  // every tile is visited, no turns
      // A consumer whose 64 rows all lie past the sequence (the last 192-row item of a length that
      // is not a multiple of 192: at 1K, 1 item in 6) computes nothing: it only frees each stage
      // after its tile arrived (never earlier: an arrival must count toward that tile's phase),
      // leaving the SM's issue slots and tensor cores to the consumers with rows.
      if (q_start + consumer * 64 >= seqlen_q) {
        for (int slot = 0; slot < keys.tiles; ++slot) pass_tile(first_tile + static_cast<uint32_t>(slot));
        first_tile += static_cast<uint32_t>(keys.tiles);
        continue;
      }
    }
    // Q rows of this consumer, quantized here (q_quantize.cuh): the groups of the pre-pass, and rows
    // past the sequence are zeros (a group of such rows only: factor 0, finite scores, never stored).
    const T* q_head = static_cast<const T*>(a.q) +
                      token0_offset(rows.queries, batch, head, a.q_stride_batch, a.q_stride_head, a.q_stride_token);
    const float q_factor =
        SAGEATTN_SM90_EXPERIMENT == 4
            ? a.sm_scale_log2 * 1e-3f
            : a.sm_scale_log2 * quantize_q_rows<T, kD>(q_head, a.q_stride_token, q_start + consumer * 64, seqlen_q,
                                                       a.head_dim, a.q_rotate, a.q_per_warp, q_rows, q_exchange,
                                                       kQBarrier0 + consumer);
    // Everything below reads the pre-pass's output (K scales, V scales and means, LSE corrections);
    // the Q rows above are the caller's. Returns at once after the first item.
    ptx::grid_dependency_wait();
    const int q_block = kRows == kQRows ? w.q_block : (q_start + row_in_block) / kQRows;
    const float* k_scales = a.k_scale + rows.k_row0 / kKBlockTokens * kKGroupsPerBlock;
    const TileCodeRow codes = kMasks ? tile_code_row(a, batch, head, q_block) : TileCodeRow{nullptr, 0};

    float o[kOutRegs];
#pragma unroll
    for (int i = 0; i < kOutRegs; ++i) o[i] = 0.f;
    RowState st{{-INFINITY, -INFINITY}, {0.f, 0.f}};

    // The wgmma issue helpers wait for nothing: callers wait for the stage barriers first, then
    // fence, then issue. Any instruction between the fence and the wgmmas that touches their
    // registers (or a wait loop, a divergent path for the compiler) makes ptxas serialize them.
    // `slot` numbers the tiles this item visits (tiles no mask removes; it picks stage and phase),
    // `tile` is a key tile's index.
    int32_t acc[kAccRegs];
    auto issue_qk = [&](int slot) {
      const uint64_t k_desc = ptx::smem_descriptor_k_major<Hd::Rows::kRowBytes>(sh.k(stage(slot)));
#if SAGEATTN_SM90_EXPERIMENT != 2
#pragma unroll
      for (int kk = 0; kk < Hd::kQkSteps; ++kk)  // Q: 64 rows, K: 128 rows (their panels' sizes)
        ptx::wgmma_m64n128k32_s8(acc, q_desc + Hd::step_offset(64, kk), k_desc + Hd::step_offset(kKeyTile, kk),
                                 kk > 0);
#endif
      ptx::wgmma_commit();
    };
    // kDirectAcc (16-bit P.V, and the 3-consumer FP8 kernel): P.V accumulates straight into o on
    // the tensor core, o rescaled first (after the softmax that changed the maxima). 16-bit P.V
    // accumulates in full FP32; the FP8 one in the tensor core's reduced-precision accumulator,
    // measured as accurate as the per-tile promotion up to 32K keys (docs/accuracy.md). Without
    // o_tile's 64 registers a consumer holds o, one score tile and P: room for 16-bit P, or for a
    // third FP8 consumer warpgroup. Otherwise (FP8, 2 consumers) each tile's P.V goes to o_tile,
    // promoted into o in FP32 (the two-level accumulation): with two consumers, direct
    // accumulation measured equal non-causal and 1-1.5 % slower causal (H100, same-build A/B; its
    // rescale sits between the softmax and the next P.V issue, the promotion overlaps the next
    // Q.K^T).
    constexpr bool kDirectAcc = Shape::kDirectAcc;
    float o_tile[kOutRegs];
    PFragments<kPv16> p;
    auto issue_pv = [&](int slot) {
      const uint32_t v_stage = sh.v(stage(slot));
      const uint64_t v_desc = kPv16 ? ptx::smem_descriptor_mn_major_sw128(v_stage, Pv::kVPanelBytes)
                                    : ptx::smem_descriptor_k_major_sw128(v_stage);
#if SAGEATTN_SM90_EXPERIMENT != 2
#pragma unroll
      for (int kk = 0; kk < Pv::kSteps; ++kk) {
        if constexpr (!kPv16 && kDirectAcc) {
          ptx::wgmma_pv_e4m3(o, p[kk], v_desc + 2 * kk, true);
        } else if constexpr (!kPv16) {
          ptx::wgmma_pv_e4m3(o_tile, p[kk], v_desc + 2 * kk, kk > 0);
        } else {
          // k16 step kk: tokens 16kk.. start 16 lines of 128 bytes further (descriptor units: 16 bytes).
          const uint64_t desc = v_desc + kk * (16 * 128 >> 4);
          wgmma_pv_16bit<T>(o, p[kk], desc, true);
        }
      }
#endif
      ptx::wgmma_commit();
    };
    auto wait_k = [&](int slot) {
      ptx::mbarrier_wait(sh.k_full(stage(slot)), phase(slot));
    };
    auto wait_v = [&](int slot) {
      ptx::mbarrier_wait(sh.v_full(stage(slot)), phase(slot));
    };
    auto release = [&](uint32_t empty_barrier) {
      __syncwarp();
      if (lane == 0) ptx::mbarrier_arrive(empty_barrier);
    };
    // Wait for the tile's S, free its K stage, dequantize, softmax, pack P.
    float rescale[2] = {1.f, 1.f};
    bool o_unmoved = false;  // the last softmax moved no reference of the warp (skip the o rescale)
    // Every score of this thread has its Q group and one of two K groups (one per 64-token half of
    // the tile), so dequantization is one factor per half. The K scales of the next tile are loaded
    // one tile ahead: a global load right before the softmax would stall it by its full latency.
    float k_scale_next[2] = {0.f, 0.f};
    auto load_k_scales = [&](int tile) {
      if (tile < keys.tiles) {
        k_scale_next[0] = k_scales[(2 * tile) * kKGroupsPerBlock + lane % 4];
        k_scale_next[1] = k_scales[(2 * tile + 1) * kKGroupsPerBlock + lane % 4];
      }
    };
    // With `pack`, P goes into the fragments p at once; without, it is left unpacked in `unpacked`
    // (softmax_exponents) for the caller to pack once p is free (the overlapped turn). The pack stays
    // inside each branch: hoisted after them, it changed ptxas's allocation of the hd128
    // additive-mask kernels (SASS compared, session 17); this way every other kernel is unchanged.
    auto softmax_scores = [&](int slot, int tile, int next, bool element, bool pack, float(&unpacked)[kAccRegs]) {
      ptx::fence_operands(acc);
      release(sh.k_empty(stage(slot)));
      TileScores t;
      t.c[0] = q_factor * k_scale_next[0];
      t.c[1] = q_factor * k_scale_next[1];
      load_k_scales(next);
      o_unmoved = false;
      // The row maxima of unmasked tiles from the int32 sums: sm_90 has a three-input integer max
      // (VIMNMX3), not a float one, so this is ~12 instructions fewer per tile than the maxima of
      // the float conversions (same values). H100, same-build A/B: +0-1 % non-causal, +1-2 %
      // causal (docs/performance.md).
      float int_max[2];
      if (tile < keys.unmasked_tiles && !element) row_maxima(acc, t.c, int_max);
      // One I2FP per score (exact: |s| < 127 * 127 * 128 < 2^24). IADD3 + FADD through the
      // 1.5 * 2^23 bit pattern, meant to spare a slow pipe, cost one more issue slot per score:
      // I2FP measured +7 % at 4K and 16K non-causal (H100, same-build A/B, docs/performance.md).
#pragma unroll
      for (int i = 0; i < kAccRegs; ++i) t.s[i] = __int2float_rn(acc[i]);
      if (SAGEATTN_SM90_EXPERIMENT == 1) {  // P = 1 or 1.125 (E4M3), still depending on the scores
#pragma unroll
        for (int i = 0; i < kAccRegs; ++i) t.s[i] = (acc[i] & 1) ? 1.125f : 1.f;
        if (pack) pack_p<T, kPv16>(t.s, p);
      } else if (tile < keys.unmasked_tiles && !element) {
        o_unmoved = softmax_exponents<T, kPv16>(t, st, rescale, int_max);
        if (pack) pack_p<T, kPv16>(t.s, p);
      } else {
        const char* mask_rows[2] = {nullptr, nullptr};
        // kElementBits: the keep bits of rows g and g + 8, shifted to this lane's keys; all ones on
        // tiles without an element mask, so that the loop below has no branch per score.
        uint4 keep[2] = {make_uint4(~0u, ~0u, ~0u, ~0u), make_uint4(~0u, ~0u, ~0u, ~0u)};
        if (kElement != kNoElementMask && element) {
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int row = q_start + row_in_block + 8 * r;
            if (kElement == kElementValues) {
              mask_rows[r] = mask_row<T>(a, batch, head, row);
            } else {
              keep[r] = row < seqlen_q ? mask_bits_of(a, batch, head, row, tile) : make_uint4(0, 0, 0, 0);
              const int shift = 2 * (lane % 4);
              keep[r] = make_uint4(keep[r].x >> shift, keep[r].y >> shift, keep[r].z >> shift, keep[r].w >> shift);
            }
          }
        }
#pragma unroll
        for (int i = 0; i < kAccRegs; ++i) {
          const int row = q_start + row_in_block + 8 * ((i / 2) % 2);
          const int key = tile * kKeyTile + 8 * (i / 4) + 2 * (lane % 4) + i % 2;
          bool allowed = key < seqlen_kv && (!kCausal || key <= row + diagonal_shift);
          if (kElement == kElementBits) {
            // Key 8 (i / 4) + 2 (lane % 4) + i % 2 of the tile: word i / 16, bit 8 ((i / 4) % 4) + i % 2
            // after the lane's shift.
            const uint4& k4 = keep[(i / 2) % 2];
            const uint32_t word = i / 16 == 0 ? k4.x : i / 16 == 1 ? k4.y : i / 16 == 2 ? k4.z : k4.w;
            allowed = allowed && ((word >> (8 * ((i / 4) % 4) + i % 2)) & 1u);
          }
          // Scaled here, masked after scaling: a padding K group has scale 0, and -inf * 0 = NaN.
          float x = allowed ? t.s[i] * t.scale(i) : -INFINITY;
          if (kElement == kElementValues && element && allowed && row < seqlen_q)
            x += mask_term_log2<T>(a, mask_rows[(i / 2) % 2], key);
          t.s[i] = x;
        }
        t.c[0] = t.c[1] = 1.f;
        o_unmoved = softmax_exponents<T, kPv16>(t, st, rescale);
        if (pack) pack_p<T, kPv16>(t.s, p);
      }
      if (!pack) {
#pragma unroll
        for (int i = 0; i < kAccRegs; ++i) unpacked[i] = t.s[i];
      }
    };
    auto softmax_tile = [&](int slot, int tile, int next, bool element) {
      float unused[kAccRegs];
      softmax_scores(slot, tile, next, element, true, unused);
    };
    auto finish_pv = [&](int slot) {
      if constexpr (kDirectAcc) {
        ptx::fence_operands(o);
        release(sh.v_empty(stage(slot)));
      } else {
        ptx::fence_operands(o_tile);
        release(sh.v_empty(stage(slot)));
#pragma unroll
        for (int i = 0; i < kOutRegs; ++i) o[i] = fmaf(o[i], rescale[(i / 2) % 2], o_tile[i]);
      }
    };
    // P.V of visited tile `slot` issued alone and waited for (its V stage freed).
    auto pv_and_wait = [&](int slot) {
      wait_v(slot);
      ptx::wgmma_fence();
      issue_pv(slot);
      ptx::wgmma_wait<0>();
      finish_pv(slot);
    };
    // kDirectAcc: o (complete: its last P.V was waited for) moves to the new maxima before the next
    // P.V accumulates into it.
    auto rescale_o = [&] {
      if constexpr (kDirectAcc) {
        if (o_unmoved) return;
#pragma unroll
        for (int i = 0; i < kOutRegs; ++i) o[i] *= rescale[(i / 2) % 2];
      }
    };

    // Ping-pong: the two consumer warpgroups take turns on the tensor cores. A turn issues P.V of the
    // previous tile and Q.K^T of the current one back to back; while one warpgroup's turn runs, the
    // other does its softmax (MUFU/FMA pipes). Named barrier (1 + c) opens consumer c's turn; it
    // needs the 128 threads of c (sync) and the 128 of the other consumer (arrive). Both consumers
    // visit the same tiles, so they run the same number of turns (visited - 1); consumer 1 opens
    // consumer 0's first turn, and nobody opens a turn after the last one, so every barrier phase
    // completes.
    // A turn: P.V of the previous visited tile (slot - 1) and Q.K^T of this one (slot), then the
    // softmax of this one; the first visited tile has no P.V before it.
    auto first_turn = [&](int tile, int next, bool element) {
      load_k_scales(tile);
      wait_k(0);
      ptx::wgmma_fence();
      issue_qk(0);
      ptx::wgmma_wait<0>();
      softmax_tile(0, tile, next, element);  // o is still 0: nothing to rescale
      if (Shape::kPingPong && consumer == 1 && next < keys.tiles) ptx::named_barrier_arrive(other_turn, kTurnThreads);
    };
    auto turn = [&](int slot, int tile, int next, bool element) {
      // Causal: the overlapped turn for the tiles below the diagonal; the diagonal's masked softmax
      // takes the serial turn (both leave P of their tile packed and its P.V not yet issued).
      if constexpr (kPvOverlap) {
        if (!kCausal || tile < keys.unmasked_tiles) {
          // Head dim 256: Q.K^T of this tile and P.V of the previous one issued together (two commit
          // groups, Q.K^T first), the softmax of this tile run while that P.V is still on the tensor
          // core, and its P packed only after it (the P fragments are that P.V's A operand). The
          // serial turn below instead waited for P.V before issuing Q.K^T and ran the softmax with
          // nothing of its own in flight.
          if (Shape::kPingPong) ptx::named_barrier_sync(my_turn, kTurnThreads);
          wait_k(slot);
          wait_v(slot - 1);
          ptx::wgmma_fence();
          issue_qk(slot);
          issue_pv(slot - 1);
          if (Shape::kPingPong && (consumer == 0 || next < keys.tiles))
            ptx::named_barrier_arrive(other_turn, kTurnThreads);
          ptx::wgmma_wait<1>();  // Q.K^T done, P.V of the previous tile may still run
          float x[kAccRegs];
          softmax_scores(slot, tile, next, element, false, x);
          ptx::wgmma_wait<0>();
          finish_pv(slot - 1);
          pack_p<T, kPv16>(x, p);
          rescale_o();
          return;
        }
      }
      if constexpr (Shape::kSerialTurn) {
        // 160 registers hold o, one score tile and P, but not P.V and Q.K^T in flight at once:
        // ptxas serialized every wgmma of the overlapped turn below (C7512). P.V completes (and
        // frees P) before Q.K^T claims the score registers; the other consumers keep the
        // tensor cores busy meanwhile. Head dim 64 (o 32 registers smaller) takes the overlapped
        // turn: H100, same-call A/B, +1-2 % non-causal, +1 % causal at 4K and +4.6 % at 16K.
        if (Shape::kPingPong) ptx::named_barrier_sync(my_turn, kTurnThreads);
        pv_and_wait(slot - 1);
        wait_k(slot);
        ptx::wgmma_fence();
        issue_qk(slot);
        if (Shape::kPingPong && (consumer == 0 || next < keys.tiles))
          ptx::named_barrier_arrive(other_turn, kTurnThreads);
        ptx::wgmma_wait<0>();
        softmax_tile(slot, tile, next, element);
        rescale_o();
        return;
      }
      if (Shape::kPingPong) ptx::named_barrier_sync(my_turn, kTurnThreads);
      wait_v(slot - 1);
      wait_k(slot);
      ptx::wgmma_fence();
      issue_pv(slot - 1);
      issue_qk(slot);
      if (Shape::kPingPong && (consumer == 0 || next < keys.tiles))
        ptx::named_barrier_arrive(other_turn, kTurnThreads);
      ptx::wgmma_wait<1>();  // P.V of the previous tile is done; Q.K^T of this one may still run
      finish_pv(slot - 1);
      ptx::wgmma_wait<0>();
      softmax_tile(slot, tile, next, element);
      rescale_o();
    };
    int visited = 0;
    if constexpr (kSplit) {
      // Split items: the group's ring streams exactly the tiles its block keeps, in order, and each
      // of the group's consumers computes them all (no turns with three consumers). The loop walks
      // each 32-tile window's bits (a warp-uniform ballot) instead of asking for the next visited
      // tile per tile: that bookkeeping, with its bounds tests and the rematerialized key range,
      // cost ~60 instructions per warp and tile, 8 % of the kernel (ncu source counters, H100,
      // all-True block mask against the dense call, 8K). K scales are loaded per tile, before the
      // P.V of the previous one.
      const TileCodeRow own = tile_code_row(a, batch, head, group_row0 / kQRows);
      const float* lane_k_scales = k_scales + lane % 4;
      for (int base = 0; base < keys.tiles; base += 32) {
        const int mine = base + lane;
        const uint32_t window = __ballot_sync(0xffffffffu, mine < keys.tiles && own.code<kKeyTile>(mine) != kTileSkip);
        uint32_t element_bits = 0u;
        if constexpr (kElement != kNoElementMask)
          element_bits = __ballot_sync(0xffffffffu, mine < keys.tiles && own.code<kKeyTile>(mine) == kTileElementMask);
        for (uint32_t bits = window; bits != 0; bits &= bits - 1, ++visited) {
          const int tile = base + __ffs(bits) - 1;
          const bool element = kElement != kNoElementMask && ((element_bits >> (tile - base)) & 1u);
          k_scale_next[0] = lane_k_scales[(2 * tile) * kKGroupsPerBlock];
          k_scale_next[1] = lane_k_scales[(2 * tile + 1) * kKGroupsPerBlock];
          if (visited > 0) pv_and_wait(visited - 1);
          wait_k(visited);
          ptx::wgmma_fence();
          issue_qk(visited);
          ptx::wgmma_wait<0>();
          softmax_tile(visited, tile, keys.tiles, element);
          rescale_o();
        }
      }
    } else if constexpr (!kMasks) {
      // Every tile is visited (slot = tile). Kept apart from the general loop below, which gives
      // the same result but measured 4-5 % slower causal on H200 (4K and 16K) in this instantiation.
      if (keys.tiles > 0) first_turn(0, 1, false);
      for (int tile = 1; tile < keys.tiles; ++tile) turn(tile, tile, tile + 1, false);
      visited = keys.tiles;
    } else {
      // Masks on two consumers (the 16-bit P.V), whose turns pair up: both own the item's Q block.
      // The codes come 32 tiles per coalesced load (a global load per tile in this loop would put
      // its latency between a turn's Q.K^T issue and the barrier that opens the other consumer's).
      TileCodeWindow window{codes, keys.tiles, lane};
      int tile = window.next_visited(0);
      if (tile < keys.tiles) {
        const bool element = kElement != kNoElementMask && window.element(tile);
        const int next = window.next_visited(tile + 1);
        first_turn(tile, next, element);
        tile = next;
        visited = 1;
      }
      for (; tile < keys.tiles; ++visited) {
        const bool element = kElement != kNoElementMask && window.element(tile);
        const int next = window.next_visited(tile + 1);
        turn(visited, tile, next, element);
        tile = next;
      }
    }
    // Epilogue: out = O / l * delta_v + vbar (E4M3) or O / l (16-bit); rows without any allowed key
    // give 0 and LSE -inf.
    T* out_head = static_cast<T*>(a.out) +
                  token0_offset(rows.queries, batch, head, a.out_stride_batch, a.out_stride_head, a.out_stride_token);
    const int64_t kv_head_index = static_cast<int64_t>(batch) * a.heads_kv + kv_head;
    const float* v_scale = a.v_scale + kv_head_index * Hd::kVChannels;
    const float* v_mean = a.v_mean + kv_head_index * Hd::kVChannels;
    const int64_t lse_row = lse_row0(kPacked ? a.packing : Packing{}, rows.queries, batch, head, a.heads_q, a.seqlen_q);
    // The channel scales and means of this thread's kD / 4 columns, loaded together and once for both
    // rows: loaded per column under the head-dim test, each load's latency was serialized with its
    // store (ncu, H100, 8K: these loads held 10 % of the kernel's stall samples). Both vectors
    // have Hd::kVChannels entries per K/V head, so columns past head_dim are readable. Issued
    // before the last P.V, whose wait hides their latency (the score registers are free by then).
    // Head dim 256: 128 more registers next to o's 128 would spill; each pair is loaded where it
    // is stored instead (the second row's loads hit L1).
    constexpr bool kPreloadChannels = kD <= 128;
    float channel_scale[kPreloadChannels ? kOutRegs / 2 : 1], channel_mean[kPreloadChannels ? kOutRegs / 2 : 1];
    if constexpr (!kPv16 && kPreloadChannels) {
#pragma unroll
      for (int j = 0; j < kOutRegs / 4; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          channel_scale[2 * j + e] = v_scale[8 * j + 2 * (lane % 4) + e];
          channel_mean[2 * j + e] = v_mean[8 * j + 2 * (lane % 4) + e];
        }
    }
    if (visited > 0) pv_and_wait(visited - 1);  // the last visited tile's P.V

    if constexpr (Shape::kStagedOutput) {
      // Through shared memory: stmatrix writes the warp's 16 rows (8 instructions of 512 bytes),
      // then lanes 0-15 each store one whole row with a bulk copy. Stored straight from the
      // accumulator layout, each store instruction writes 16 bytes to each of 8 rows (32 per
      // thread), and the next item's shared and global accesses queue behind that stream. The rows
      // this warp staged for its previous item must have been read first.
      const uint32_t staging = sh.out_staging(consumer) + warp * 16 * kOutRowPitch;
      if (lane < 16) ptx::bulk_wait_read<0>();
      __syncwarp();
      // One division per row (inside output_pair, ptxas kept all 32: its slow-path branch).
      float sum[2], inv_sum[2];
      bool any[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        sum[r] = quad_sum(st.sum[r]);
        any[r] = sum[r] > 0.f;
        inv_sum[r] = any[r] ? 1.f / sum[r] : 0.f;
      }
      // The two values of column block j, row g + 8r, as the direct path below computes them.
      auto output_pair = [&](int j, int r) {
        float y0 = o[4 * j + 2 * r] * inv_sum[r], y1 = o[4 * j + 2 * r + 1] * inv_sum[r];
        if constexpr (!kPv16) {
          y0 = y0 * channel_scale[2 * j] + (any[r] ? channel_mean[2 * j] : 0.f);
          y1 = y1 * channel_scale[2 * j + 1] + (any[r] ? channel_mean[2 * j + 1] : 0.f);
        }
        return Element<T>::from_float2(y0, y1);
      };
      // stmatrix x4 of column blocks j and j + 1: matrices (rows 0-7, j), (8-15, j), (0-7, j + 1),
      // (8-15, j + 1); lane i addresses row i % 8 of matrix i / 8.
      const uint32_t lane_row = staging + ((lane / 8) % 2 * 8 + lane % 8) * kOutRowPitch + (lane / 16) * 16;
#pragma unroll
      for (int j = 0; j < kOutRegs / 4; j += 2) {
        const uint32_t packed[4] = {output_pair(j, 0), output_pair(j, 1), output_pair(j + 1, 0), output_pair(j + 1, 1)};
        ptx::stmatrix_x4(lane_row + j * 16, packed);
      }
      ptx::fence_proxy_async_shared();  // the bulk copies read through the async proxy
      __syncwarp();
      if (lane < 16) {
        const int row = q_start + consumer * 64 + warp * 16 + lane;
        if (row < seqlen_q && SAGEATTN_SM90_EXPERIMENT != 3)
          ptx::bulk_copy_shared_to_global(out_head + row * a.out_stride_token, staging + lane * kOutRowPitch,
                                          static_cast<uint32_t>(a.head_dim) * sizeof(T));
        ptx::bulk_commit_group();
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = q_start + row_in_block + 8 * r;
        if (a.lse != nullptr && lane % 4 == 0 && row < seqlen_q)
          a.lse[lse_row + row] = row_lse<Pv>(a, st.max[r], sum[r], rows.q_row0 + row);
      }
    } else {
      // Three consumers (kStagedOutput, traits.cuh): straight from the accumulator layout. The
      // values are output_pair's, written out: sharing that lambda (or moving the LSE before the
      // stores) changed ptxas's allocation of this kernel, 52 -> 168-256 bytes of spills (compile
      // test, session 14); this form compiles to the SASS measured before the staged epilogue.
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float sum = quad_sum(st.sum[r]);
        const bool any = sum > 0.f;
        const float inv_sum = any ? 1.f / sum : 0.f;
        const int row = q_start + row_in_block + 8 * r;
        if (row >= seqlen_q) continue;
        T* out_row = out_head + row * a.out_stride_token;
#pragma unroll
        for (int j = 0; j < kOutRegs / 4; ++j) {
          const int col = 8 * j + 2 * (lane % 4);
          float y0 = o[4 * j + 2 * r] * inv_sum, y1 = o[4 * j + 2 * r + 1] * inv_sum;
          if constexpr (!kPv16 && kPreloadChannels) {
            y0 = y0 * channel_scale[2 * j] + (any ? channel_mean[2 * j] : 0.f);
            y1 = y1 * channel_scale[2 * j + 1] + (any ? channel_mean[2 * j + 1] : 0.f);
          } else if constexpr (!kPv16) {
            y0 = y0 * v_scale[col] + (any ? v_mean[col] : 0.f);
            y1 = y1 * v_scale[col + 1] + (any ? v_mean[col + 1] : 0.f);
          }
          if (SAGEATTN_SM90_EXPERIMENT == 3 ? a.head_dim == -7 : col < a.head_dim)
            *reinterpret_cast<uint32_t*>(out_row + col) = Element<T>::from_float2(y0, y1);
        }
        if (a.lse != nullptr && lane % 4 == 0) a.lse[lse_row + row] = row_lse<Pv>(a, st.max[r], sum, rows.q_row0 + row);
      }
    }
    first_tile += static_cast<uint32_t>(visited);
  }  // work items
  // The shared memory of the last bulk stores must stay until they have read it.
  if (Shape::kStagedOutput && lane < 16) ptx::bulk_wait_read<0>();
}

}  // namespace sageattn::sm90
