// Which kernel runs a validated call, and the tile geometry that follows from that choice. The
// workspace layout, the pre-pass arguments and the launch all derive from one Plan so they cannot
// disagree.
#pragma once
#include <string>

#include "sageattn/sageattn.h"

namespace sageattn {

struct Plan {
  sageattn_kernel kernel = SAGEATTN_KERNEL_SM80_MMA;  // never AUTO or AUTO_PV16
  int padded_head_dim = 128;  // head dim of the INT8 rows (and of the FP8 V tiles on sm90)
  int q_blocks = 0;           // 128-row Q blocks
  int k_blocks = 0;           // 64-token K quantization blocks (even on sm90: 128-token tiles)
  bool fp8_v = false;         // V is quantized to FP8 tiles (sm90)
  bool v16_tiles = false;     // V is copied into 16-bit tiles (sm90 with 16-bit P.V, packed or
                              // with strides a tensor map cannot describe)
  bool v_tma = false;         // sm90 with 16-bit P.V: the kernel reads V itself (tensor_map.h)
  int v_tiles = 0;            // 128-token V tiles (either kind)
  // The attention kernel quantizes Q itself (sm90, and sm80 up to head dim 128): no INT8 Q in the
  // workspace, the pre-pass's Q items only compute LSE corrections.
  bool kernel_quantizes_q = false;
  // The attention kernel is a programmatic dependent launch of the pre-pass (compute capability 9.0+).
  bool dependent_launch = false;
  // Masks (docs/design/masks.md): the mask pass runs when an element mask is given and writes one
  // code per (code_batch, code_heads, q_blocks, mask_kv_blocks); a dimension both masks broadcast
  // over has extent 1.
  bool mask_pass = false;
  bool mask_bits = false;     // the pass also writes a boolean mask as bit rows (sm90 kernel)
  int mask_kv_blocks = 0;     // 128-key blocks
  int code_batch = 0, code_heads = 0;
};

// True when this build contains the sm_90a kernels.
bool has_sm90_kernels();

// SM90_WGMMA or SM90_WGMMA_PV16 (the same kernel, FP8 or 16-bit P.V).
inline bool is_sm90_kernel(sageattn_kernel kernel) {
  return kernel == SAGEATTN_KERNEL_SM90_WGMMA || kernel == SAGEATTN_KERNEL_SM90_WGMMA_PV16;
}


// Resolves AUTO and checks that an explicitly requested kernel can run on `sm_arch`. Returns OK
// with `plan` filled, or UNSUPPORTED with the reason. Params must have passed check_params.
sageattn_status make_plan(const sageattn_params& params, int sm_arch, Plan& plan, std::string& reason);

}  // namespace sageattn
