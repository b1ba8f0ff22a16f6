// Plain argument structs passed by value to the kernels. Strides are in elements.
#pragma once
#include <cstdint>

namespace sageattn {

// A [batch, head, row, column] view with strides in elements (0 broadcasts): the element mask,
// the block mask and the tile codes. data == NULL: absent.
struct MaskView {
  const void* data;
  int64_t stride_batch, stride_head, stride_row, stride_column;
};

// Packed sequences (varlen, docs/design/varlen.md): sequence b is packed rows cu[b] .. cu[b + 1] - 1
// (common/sequences.cuh reads them). cu_q == NULL: dense batches, the other fields unused.
struct Packing {
  const int* cu_q;
  const int* cu_kv;
  int total_q, total_kv;  // packed rows of q / of k and v
  // Per-token workspace buffers hold each head's sequences in slots of 128 rows: sequence b starts
  // at slot cu[b] / 128 + b, which leaves room for ceil(length / 128) slots without a prefix sum
  // over the lengths (packed_slots() per head in all).
  int slots_q, slots_kv;
};

struct QuantizeArgs {
  const void* q;
  int64_t q_stride_batch, q_stride_head, q_stride_token;
  const void* k;
  int64_t k_stride_batch, k_stride_head, k_stride_token;
  int batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim;
  int padded_head_dim;  // 64, 128 or 256: the INT8 row length
  int q_blocks;  // ceil(seqlen_q / kQBlockRows)
  int k_blocks;  // ceil(seqlen_kv / kKBlockTokens), rounded up to even for the sm90 kernel's 128-token tiles
  bool per_warp;
  bool smooth_k;
  bool rotate;  // rotate Q and K rows before quantizing (common/rotation.h)
  int column_sum_chunks, column_sum_chunk_tokens;

  // The sm90 kernel copies whole tiles with the bulk-copy engine, so its rows are stored already in
  // the 128-byte swizzled order of shared memory (16-byte chunk c of row r at chunk c ^ (r % 8)).
  bool swizzle_rows;

  // Per-token buffers are [B, H, rows, ...] for dense batches and [H, slots * 128, ...] for packed
  // sequences (Packing); the pre-pass rows are rotated (common/rotation.h) before quantization.
  // Q is quantized inside the attention kernels (sm90; sm80 up to head dim 128): q_int8 and q_scale
  // are NULL there, and the Q items only compute lse_correction (when not NULL; qk_items).
  int8_t* q_int8;        // [B, Hq, q_blocks * 128, padded_head_dim]
  int8_t* k_int8;        // [B, Hkv, k_blocks * 64, padded_head_dim]
  float* q_scale;        // [B, Hq, q_blocks, kQGroupsPerBlock]
  float* k_scale;        // [B, Hkv, k_blocks, kKGroupsPerBlock]
  float* k_column_sums;  // [B, Hkv, column_sum_chunks, padded_head_dim]; used when smooth_k
  float* lse_correction; // [B, Hq, q_blocks * 128] = dot(q, mean(K)); NULL when not needed
  Packing packing;
};

// V for the sm90 kernel. FP8 P.V (docs/design/quantization.md, "FP8 P.V"): per-channel statistics
// over token chunks, then E4M3 tiles of [128 channels][128 token slots], K-major (tokens
// contiguous), token order permuted inside every 16 tokens to match the P register fragment,
// 128-byte swizzled. 16-bit P.V (v16): V unchanged, copied into 32 KB MN-major tiles
// (quant/v_tiles16.cuh); no statistics, scale or mean.
struct QuantizeVArgs {
  const void* v;
  int64_t v_stride_batch, v_stride_head, v_stride_token;
  int batch, heads_kv, seqlen_kv, head_dim;
  int tiles;  // ceil(seqlen_kv / 128)
  bool smooth_v;
  int stat_chunks, stat_chunk_tokens;

  bool v16;          // 16-bit tiles instead of E4M3 ones (and no V statistics)
  float* stats;      // [B, Hkv, stat_chunks, 3 (sum, max, min), 128]; FP8 only
  // [B, Hkv, tiles, 128 * 128] E4M3, or [B, Hkv, tiles, 2 panels, 128 * 64] 16-bit; NULL: no V
  // work at all (16-bit P.V reading V with a tensor map)
  uint8_t* v_tiles;
  float* v_scale;    // [B, Hkv, 128]: delta_v = max|V - vbar| / 448 (0 for zero channels)
  float* v_mean;     // [B, Hkv, 128]: vbar (0 without smooth_v)
  Packing packing;
  // The attention grid's work counter (AttentionArgs::work_counter), zeroed here: this grid runs
  // after the previous call's attention grid ended and before this call's reads it. NULL: none.
  unsigned int* work_counter;
  // FP8 V: [B, Hkv][2] V tiles finished and "an element beyond the sample's scale" per (sequence,
  // kv head) (quant/v_fp8.cuh, settle_v_head), zeroed by the statistics grid.
  unsigned int* v_fixup;
};

// The bytes of a CUtensorMap (TMA descriptor, 128 bytes, aligned as cuda.h declares it), opaque so that
// kernel code needs no driver header; src/api/tensor_map.cpp fills it.
struct alignas(128) TensorMap {
  unsigned long long opaque[16];
};

struct AttentionArgs {
  const int8_t* q_int8;   // sm80 at head dim 256: the pre-pass's INT8 Q and its scales
  const float* q_scale;
  // The caller's Q (the kernel quantizes it, sm90/q_quantize.cuh, sm80/q_quantize.cuh) and how: rotated
  // (common/rotation.h), per-warp groups instead of per-thread ones.
  const void* q;
  int64_t q_stride_batch, q_stride_head, q_stride_token;
  bool q_rotate, q_per_warp;
  const int8_t* k_int8;
  const float* k_scale;
  const void* v;
  int64_t v_stride_batch, v_stride_head, v_stride_token;
  void* out;
  int64_t out_stride_batch, out_stride_head, out_stride_token;
  // sm90 only: the V tiles (E4M3 or 16-bit, QuantizeVArgs) and, for E4M3, the per-channel scale
  // and mean. 16-bit P.V of a dense call without v_tiles: V is read with v_map instead.
  const uint8_t* v_tiles;
  TensorMap v_map;  // p.v as [head_dim, seqlen_kv, heads_kv, batch], box 64 x 128 (tensor_map.h)
  const float* v_scale;
  const float* v_mean;
  float* lse;                   // NULL when not wanted
  const float* lse_correction;  // NULL when no smoothing correction applies
  int batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim;
  int q_blocks, k_blocks;
  float sm_scale;         // tau
  float sm_scale_log2;    // tau * log2(e)
  // Masks (docs/design/masks.md). One TileCode byte per (128-row Q block, 128-key block); absent
  // when every tile is kTilePlain.
  MaskView tile_codes;
  // The element mask (a sageattn_mask_type, [B, Hq, Nq, Nkv]), read only on tiles coded
  // kTileElementMask; absent without one.
  MaskView mask;
  int mask_type;
  // A boolean mask as rows of 128 keep bits per tile (MaskTileArgs::bits; strides in 16-byte
  // entries), read instead of `mask` by kernels that use it; absent otherwise.
  MaskView mask_bits;
  Packing packing;
  // sm90 persistent CTAs (sm90/item_queue.cuh): items handed out past the first gridDim.x, zeroed
  // by the pre-pass's quantization grid. NULL: one CTA per item.
  unsigned int* work_counter;
};

// The pass that classifies the tiles of an element mask (and folds in a block mask), writing the
// TileCode of every (batch, head, Q block, key block) of the codes' broadcast shape.
struct MaskTileArgs {
  MaskView mask;
  int mask_type;
  MaskView block_mask;  // may be absent
  int seqlen_q, seqlen_kv;
  int q_blocks, kv_blocks;     // 128-row / 128-key blocks
  int code_batch, code_heads;  // 1 where both masks broadcast, else batch / heads_q
  uint8_t* codes;              // [code_batch, code_heads, q_blocks, kv_blocks]
  // Boolean masks for the sm90 kernel (else NULL): bit k of word k / 32 = keep of key k of the
  // tile, per row: [code_batch, code_heads, q_blocks * 128 rows, kv_blocks, 4 words].
  uint32_t* bits;
};

}  // namespace sageattn
