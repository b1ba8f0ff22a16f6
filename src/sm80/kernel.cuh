// The sm80 attention kernel: one CTA per (128-row Q block, query head, batch or packed sequence).
//
// Mainloop per 64-token K/V tile (2-stage cp.async pipeline, K(j+1) and V(j+1) in flight while
// tile j is computed):  S = Q.K^T (int8)  ->  x = s * (q_scale * k_scale * tau * log2e)  ->
// online softmax in base 2  ->  O += P.V (16-bit)  ->  epilogue O / l, LSE.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/element.cuh"
#include "common/key_range.cuh"
#include "common/kernel_args.h"
#include "common/mask.cuh"
#include "common/sequences.cuh"
#include "ptx/cp_async.cuh"
#include "ptx/grid_dependency.cuh"
#include "ptx/ldmatrix.cuh"
#include "sm80/online_softmax.cuh"
#include "sm80/q_quantize.cuh"
#include "sm80/tile_loader.cuh"
#include "sm80/traits.cuh"
#include "sm80/warp_mma.cuh"

namespace sageattn::sm80 {

// kMasks: the call has tile codes (a block mask or an element mask); without, every mask test
// compiles away and the instantiation is the plain kernel. kPacked: packed sequences (varlen), whose
// offsets and lengths come from device memory; a separate instantiation because the per-sequence
// values held in registers made the plain kernel spill (228-252 bytes at head dim 128), while a
// dense call folds them to constants (docs/design/varlen.md).
template <class Tr, bool kCausal, bool kMasks, bool kPacked>
__global__ void __launch_bounds__(Tr::kThreads,
                                  kMasks || kPacked ? Tr::kMinBlocksPerSMWithMasks : Tr::kMinBlocksPerSM)
    attention_sm80_kernel(const AttentionArgs a) {
  static_assert(!(kMasks && kPacked), "masks are not supported with packed sequences");
  using T = typename Tr::T;
  extern __shared__ __align__(128) unsigned char shared[];
  const uint32_t smem = ptx::shared_address(shared);
  const uint32_t smem_q = smem + Tr::kQOffset;

  // Causal blocks near the end of the sequence do the most work: launch them first. Packed
  // sequences: blockIdx.x is a position (common/sequences.cuh: a grid of total / 128 + batch per
  // head, not batch x the longest sequence's blocks); positions between sequences are empty.
  const int head = blockIdx.y;
  int q_block, batch;
  if constexpr (kPacked) {
    const PackedBlock at =
        packed_block_at(a.packing.cu_q, a.packing.total_q, a.batch, kQBlockRows, static_cast<int>(blockIdx.x));
    const int blocks = static_cast<int>(ceil_div(query_side(a.packing, at.batch, a.seqlen_q).length, kQBlockRows));
    if (at.block < 0 || at.block >= blocks) return;
    batch = at.batch;
    q_block = kCausal ? blocks - 1 - at.block : at.block;
  } else {
    q_block = kCausal ? a.q_blocks - 1 - static_cast<int>(blockIdx.x) : static_cast<int>(blockIdx.x);
    batch = blockIdx.z;
  }
  const int kv_head = head / (a.heads_q / a.heads_kv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // Head dim 256: warps w and w + kRowWarps share rows and split the O columns (traits.cuh).
  // (Spelled out for one column part: the compiler cannot know that warp < kRowWarps.)
  const int row_warp = Tr::kColumnSplit == 1 ? warp : warp % Tr::kRowWarps;
  const int column_part = Tr::kColumnSplit == 1 ? 0 : warp / Tr::kRowWarps;
  const int q_start = q_block * kQBlockRows;

  const Packing packing = kPacked ? a.packing : Packing{};  // dense: everything below folds to constants
  const SequenceSide queries = query_side(packing, batch, a.seqlen_q);
  // Never taken: dense grids end with their last block, packed positions were checked above.
  if (q_start >= queries.length) return;
  const SequenceSide keys_side = key_side(packing, batch, a.seqlen_kv);
  const int seqlen_q = queries.length, seqlen_kv = keys_side.length;

  const int64_t q_row0 = workspace_row0(packing.cu_q, queries, batch, head, a.heads_q, packing.slots_q,
                                        static_cast<int64_t>(a.q_blocks) * kQBlockRows);
  const int64_t k_row0 = workspace_row0(packing.cu_kv, keys_side, batch, kv_head, a.heads_kv, packing.slots_kv,
                                        static_cast<int64_t>(a.k_blocks) * kKBlockTokens);
  const int8_t* k_head = a.k_int8 + k_row0 * Tr::kHeadDim;
  const float* k_scales = a.k_scale + k_row0 / kKBlockTokens * kKGroupsPerBlock;
  const T* v_head = static_cast<const T*>(a.v) +
                    token0_offset(keys_side, batch, kv_head, a.v_stride_batch, a.v_stride_head, a.v_stride_token);

  // Every score this lane holds has Q group (row_warp, lane / 4) and K group lane % 4: one Q factor
  // per CTA and one K scale per tile (docs/design/quantization.md). The Q rows are the caller's
  // (quantized here) and can be read before the pre-pass ends (launched programmatically after it on
  // sm90+, launch.cuh); everything after grid_dependency_wait is the pre-pass's output.
  float q_factor;
  if constexpr (Tr::kQuantizesQ) {
    const T* q_head = static_cast<const T*>(a.q) +
                      token0_offset(queries, batch, head, a.q_stride_batch, a.q_stride_head, a.q_stride_token);
    q_factor = a.sm_scale_log2 * quantize_q_warp<Tr>(q_head, a.q_stride_token, q_start + row_warp * kWarpRows,
                                                     seqlen_q, a.head_dim, a.q_rotate, a.q_per_warp,
                                                     shared + Tr::kQOffset, row_warp * kWarpRows);
    ptx::grid_dependency_wait();
  } else {
    ptx::grid_dependency_wait();
    q_factor = a.q_scale[(q_row0 / kQBlockRows + q_block) * kQGroupsPerBlock + row_warp * kQGroupsPerWarp + lane / 4] *
               a.sm_scale_log2;
  }

  const KeyRange keys = key_range<kCausal, kQBlockRows, kKBlockTokens>(
      seqlen_q, seqlen_kv, static_cast<int>(ceil_div(seqlen_kv, kKBlockTokens)), q_start);
  using Loader = TileLoader<Tr>;
  auto smem_k = [&](int slot) { return smem + Tr::kKOffset + (slot % Tr::kStages) * Tr::kKTileBytes; };
  auto smem_v = [&](int slot) { return smem + Tr::kVOffset + (slot % Tr::kStages) * Tr::kVTileBytes; };

  // Tiles a mask removes entirely are never loaded; `slot` counts the tiles visited (it picks the
  // stage), `tile` is the key tile's index.
  const TileCodeRow codes = kMasks ? tile_code_row(a, batch, head, q_block) : TileCodeRow{nullptr, 0};
  // One commit group per tile (K and V together): a tile's data is waited for once and one barrier
  // per tile suffices. The group of the next visited tile is issued right after the barrier of the
  // current one, into the stage that the previous one used, which every warp has finished reading.
  auto load_tile = [&](int slot, int tile) {
    if (tile < keys.tiles) {
      Loader::load_k(smem_k(slot), k_head, tile);
      Loader::load_v(smem_v(slot), v_head, a.v_stride_token, tile, seqlen_kv, a.head_dim);
    }
    ptx::cp_async_commit();
  };
  if constexpr (!Tr::kQuantizesQ) Loader::load_q(smem_q, a.q_int8 + (q_row0 + q_start) * Tr::kHeadDim);
  int tile = codes.next_visited<kKBlockTokens>(0, keys.tiles);
  load_tile(0, tile);

  float o[Tr::kMTiles][Tr::kDTiles][4];
#pragma unroll
  for (int mt = 0; mt < Tr::kMTiles; ++mt)
#pragma unroll
    for (int dt = 0; dt < Tr::kDTiles; ++dt)
#pragma unroll
      for (int i = 0; i < 4; ++i) o[mt][dt][i] = 0.f;
  OnlineSoftmax<Tr> softmax;
  softmax.init();

  const int64_t diagonal_shift = static_cast<int64_t>(seqlen_kv) - seqlen_q;
  // One K/V tile. kMasked is a compile-time tag so that the unmasked path, where nearly all the
  // time goes, carries no masking code; `element` (masked path only) applies the element mask.
  auto process_tile = [&](int slot, int tile, int next, auto masked_tag, bool element) {
    constexpr bool kMasked = decltype(masked_tag)::value;
    ptx::cp_async_wait<0>();  // this tile's K and V have landed
    __syncthreads();
    load_tile(slot + 1, next);

    int32_t s[Tr::kMTiles][Tr::kNTiles][4];
    WarpMma<Tr>::qk(s, smem_q, smem_k(slot), row_warp, lane);

    const float c = q_factor * k_scales[tile * kKGroupsPerBlock + lane % 4];
    float p[Tr::kMTiles][Tr::kNTiles][4];
    float rescale[OnlineSoftmax<Tr>::kRows];
    if constexpr (!kMasked) {
      softmax.update_unmasked(s, c, p, rescale);
    } else {
#pragma unroll
      for (int mt = 0; mt < Tr::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < Tr::kNTiles; ++nt)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int row = q_start + row_warp * kWarpRows + mt * 16 + lane / 4 + 8 * (i / 2);
            const int key = tile * kKBlockTokens + nt * 8 + 2 * (lane % 4) + i % 2;
            const bool allowed = key < seqlen_kv && (!kCausal || key <= row + diagonal_shift);
            float x = allowed ? static_cast<float>(s[mt][nt][i]) * c : -INFINITY;
            if (kMasks && element && allowed && row < seqlen_q) x += mask_term_log2<T>(a, mask_row<T>(a, batch, head, row), key);
            p[mt][nt][i] = x;
          }
      softmax.update(p, rescale);
    }
    // Once the row maxima settle (most tiles of a long sequence) the rescale is exactly 1 for the
    // whole warp: skip the kDTiles * 8 multiplies per lane then.
    bool unchanged = true;
#pragma unroll
    for (int r = 0; r < OnlineSoftmax<Tr>::kRows; ++r) unchanged &= rescale[r] == 1.f;
    if (!__all_sync(0xffffffffu, unchanged)) {
#pragma unroll
      for (int mt = 0; mt < Tr::kMTiles; ++mt)
#pragma unroll
        for (int dt = 0; dt < Tr::kDTiles; ++dt)
#pragma unroll
          for (int i = 0; i < 4; ++i) o[mt][dt][i] *= rescale[mt * 2 + i / 2];
    }

    uint32_t p_packed[Tr::kMTiles][Tr::kPVSteps][4];
    WarpMma<Tr>::pack_p(p_packed, p);
    WarpMma<Tr>::pv(o, p_packed, smem_v(slot), column_part, lane);
  };
  if constexpr (!kMasks) {
    for (; tile < keys.unmasked_tiles; ++tile) process_tile(tile, tile, tile + 1, std::false_type{}, false);
    for (; tile < keys.tiles; ++tile) process_tile(tile, tile, tile + 1, std::true_type{}, false);
  } else {
    for (int slot = 0; tile < keys.tiles; ++slot) {
      const int next = codes.next_visited<kKBlockTokens>(tile + 1, keys.tiles);
      const bool element = a.mask.data != nullptr && codes.code<kKBlockTokens>(tile) == kTileElementMask;
      if (tile < keys.unmasked_tiles && !element)
        process_tile(slot, tile, next, std::false_type{}, false);
      else
        process_tile(slot, tile, next, std::true_type{}, element);
      tile = next;
    }
  }
  ptx::cp_async_wait<0>();

  // Epilogue: normalize, convert, store the valid rows and channels; LSE in natural log.
  T* out_head = static_cast<T*>(a.out) +
                token0_offset(queries, batch, head, a.out_stride_batch, a.out_stride_head, a.out_stride_token);
  const int64_t lse_row = lse_row0(packing, queries, batch, head, a.heads_q, a.seqlen_q);
#pragma unroll
  for (int mt = 0; mt < Tr::kMTiles; ++mt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = mt * 2 + half;
      const float sum = quad_sum(softmax.row_sum[r]);
      const float inv_sum = sum > 0.f ? 1.f / sum : 0.f;  // no allowed key: output zeros
      const int row = q_start + row_warp * kWarpRows + mt * 16 + lane / 4 + 8 * half;
      if (row >= seqlen_q) continue;
      T* out_row = out_head + row * a.out_stride_token;
#pragma unroll
      for (int dt = 0; dt < Tr::kDTiles; ++dt) {
        const int col = (column_part * Tr::kDTiles + dt) * 8 + 2 * (lane % 4);
        if (col < a.head_dim)
          *reinterpret_cast<uint32_t*>(out_row + col) =
              Element<T>::from_float2(o[mt][dt][2 * half] * inv_sum, o[mt][dt][2 * half + 1] * inv_sum);
      }
      if (a.lse != nullptr && lane % 4 == 0 && column_part == 0) {
        float lse = -INFINITY;
        if (sum > 0.f) {
          lse = (softmax.row_max[r] + log2f(sum)) * static_cast<float>(kLn2);
          if (a.lse_correction != nullptr)
            lse += a.sm_scale * a.lse_correction[q_row0 + row];
        }
        a.lse[lse_row + row] = lse;
      }
    }
}

}  // namespace sageattn::sm80
