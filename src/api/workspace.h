// Where each intermediate lives inside the caller's workspace. Every region is 256-byte aligned.
#pragma once
#include <cstddef>

#include "api/plan.h"
#include "sageattn/sageattn.h"

namespace sageattn {

struct WorkspaceLayout {
  size_t q_int8 = 0, k_int8 = 0, q_scale = 0, k_scale = 0, k_column_sums = 0, lse_correction = 0;
  size_t v_stats = 0, v_scale = 0, v_mean = 0, v_fixup = 0;  // FP8 V (plan.fp8_v)
  size_t v_tiles = 0;                           // plan.fp8_v or plan.v16_tiles
  size_t tile_codes = 0;                                   // plan.mask_pass
  size_t mask_bits = 0;                                    // plan.mask_bits
  size_t work_counter = 0;  // sm90 kernels: the persistent CTAs' item counter (one uint32)
  bool has_q_int8 = false;  // q_int8 and q_scale (the sm80 kernel's pre-pass output)
  bool has_k_column_sums = false;
  bool has_lse_correction = false;
  size_t total_bytes = 0;
};

// Params must have passed check_params; plan comes from make_plan.
WorkspaceLayout workspace_layout(const sageattn_params& params, const Plan& plan);

}  // namespace sageattn
