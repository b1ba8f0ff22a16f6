#include "api/workspace.h"

#include <cstdint>

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

WorkspaceLayout workspace_layout(const sageattn_params& p) {
  const size_t head_dim = static_cast<size_t>(padded_head_dim(p.head_dim));
  const size_t q_heads = static_cast<size_t>(p.batch) * p.heads_q;
  const size_t kv_heads = static_cast<size_t>(p.batch) * p.heads_kv;
  const size_t q_blocks = static_cast<size_t>(ceil_div(p.seqlen_q, kQBlockRows));
  const size_t k_blocks = static_cast<size_t>(ceil_div(p.seqlen_kv, kKBlockTokens));

  WorkspaceLayout layout;
  RegionAllocator regions;
  layout.q_int8 = regions.take(q_heads * q_blocks * kQBlockRows * head_dim);
  layout.k_int8 = regions.take(kv_heads * k_blocks * kKBlockTokens * head_dim);
  layout.q_scale = regions.take(q_heads * q_blocks * kQGroupsPerBlock * sizeof(float));
  layout.k_scale = regions.take(kv_heads * k_blocks * kKGroupsPerBlock * sizeof(float));
  layout.has_k_column_sums = p.smooth_k != 0;
  if (layout.has_k_column_sums) {
    const size_t chunks = static_cast<size_t>(column_sum_chunks(p.seqlen_kv).count);
    layout.k_column_sums = regions.take(kv_heads * chunks * head_dim * sizeof(float));
  }
  layout.has_lse_correction = p.smooth_k != 0 && p.lse != nullptr;
  if (layout.has_lse_correction) {
    layout.lse_correction = regions.take(q_heads * static_cast<size_t>(p.seqlen_q) * sizeof(float));
  }
  layout.total_bytes = regions.end();
  return layout;
}

}  // namespace sageattn
