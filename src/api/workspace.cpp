#include "api/workspace.h"

#include <cstdint>

#include "common/tile_codes.h"
#include "common/tiling.h"

namespace sageattn {
namespace {

constexpr size_t kRegionAlignment = 256;

class RegionAllocator {
 public:
  size_t take(size_t bytes) {
    const size_t offset = end_;
    end_ += (bytes + kRegionAlignment - 1) / kRegionAlignment * kRegionAlignment;
    return offset;
  }
  size_t end() const { return end_; }

 private:
  size_t end_ = 0;
};

}  // namespace

WorkspaceLayout workspace_layout(const sageattn_params& p, const Plan& plan) {
  const size_t head_dim = static_cast<size_t>(plan.padded_head_dim);
  const size_t q_heads = static_cast<size_t>(p.batch) * p.heads_q;
  const size_t kv_heads = static_cast<size_t>(p.batch) * p.heads_kv;
  const size_t chunks = static_cast<size_t>(column_sum_chunks(p.seqlen_kv, p.cu_seqlens_kv != nullptr).count);
  // Rows of the per-token buffers: dense [B, H, blocks], packed sequences [H, slots] (tiling.h).
  const bool packed = p.cu_seqlens_q != nullptr;
  const size_t q_rows = packed ? static_cast<size_t>(p.heads_q) * packed_slots(p.total_q, p.batch) * kPackedSlotRows
                               : q_heads * plan.q_blocks * kQBlockRows;
  const size_t k_rows = packed ? static_cast<size_t>(p.heads_kv) * packed_slots(p.total_kv, p.batch) * kPackedSlotRows
                               : kv_heads * plan.k_blocks * kKBlockTokens;

  WorkspaceLayout layout;
  RegionAllocator regions;
  // The kernels quantize Q themselves (sm90/q_quantize.cuh, sm80/q_quantize.cuh), but for sm80 at
  // head dim 256.
  layout.has_q_int8 = !plan.kernel_quantizes_q;
  if (layout.has_q_int8) {
    layout.q_int8 = regions.take(q_rows * head_dim);
    layout.q_scale = regions.take(q_rows / kQBlockRows * kQGroupsPerBlock * sizeof(float));
  }
  layout.k_int8 = regions.take(k_rows * head_dim);
  layout.k_scale = regions.take(k_rows / kKBlockTokens * kKGroupsPerBlock * sizeof(float));
  layout.has_k_column_sums = p.smooth_k != 0;
  if (layout.has_k_column_sums) layout.k_column_sums = regions.take(kv_heads * chunks * head_dim * sizeof(float));
  layout.has_lse_correction = p.smooth_k != 0 && p.lse != nullptr;
  if (layout.has_lse_correction) layout.lse_correction = regions.take(q_rows * sizeof(float));
  if (plan.fp8_v) {
    constexpr size_t kStats = 3;  // sum, max, min per channel and chunk
    // Tiles of [padded head dim][128 token slots]; statistics, scales and means of fp8_v_channels.
    const size_t channels = static_cast<size_t>(fp8_v_channels(plan.padded_head_dim));
    layout.v_stats = regions.take(kv_heads * chunks * kStats * channels * sizeof(float));
    layout.v_tiles = regions.take(k_rows / kSm90KeyTileTokens * head_dim * kSm90KeyTileTokens);
    layout.v_scale = regions.take(kv_heads * channels * sizeof(float));
    layout.v_mean = regions.take(kv_heads * channels * sizeof(float));
    layout.v_fixup = regions.take(kv_heads * 2 * sizeof(uint32_t));  // quant/v_fp8.cuh, kVFixupWords
  }
  if (plan.v16_tiles) layout.v_tiles = regions.take(k_rows * head_dim * 2);  // 128 or 256 bytes per token
  if (plan.mask_pass) {
    const size_t codes = static_cast<size_t>(plan.code_batch) * plan.code_heads * plan.q_blocks * plan.mask_kv_blocks;
    layout.tile_codes = regions.take(codes);
    constexpr size_t kBitRowBytes = kMaskBlock / 8;  // 128 keep bits per row and tile
    if (plan.mask_bits) layout.mask_bits = regions.take(codes * kMaskBlock * kBitRowBytes);
  }
  if (is_sm90_kernel(plan.kernel)) layout.work_counter = regions.take(sizeof(uint32_t));
  layout.total_bytes = regions.end();
  return layout;
}

}  // namespace sageattn
