#include "api/plan.h"

#include "api/tensor_map.h"
#include "common/tile_codes.h"
#include "common/tiling.h"

namespace sageattn {

bool has_sm90_kernels() {
#if defined(SAGEATTN_HAS_SM90)
  return true;
#else
  return false;
#endif
}

namespace {

// AUTO's 16-bit P.V on sm90 up to this many query rows (dense calls whose V a tensor map can read):
// where it is the faster of the two, or within 3 % (its error is 3.5x smaller on Gaussian inputs).
// H100, hd128, B4 H32, two runs (2026-11-26, persistent CTAs and the sampled K mean of session 9),
// TOPS 16-bit / FP8 P.V: non-causal 1K 366.0/342.5, 1.5K 445.7/459.5, 2K 513.4/560.1, 3K
// 565.0/654.2, 4K 599.4/711.6; causal 1K 216.0/181.4, 1.5K 298.0/269.0, 2K 378.2/356.1, 3K
// 451.5/462.8, 4K 491.6/527.8 (second run within 1 %). Until then 2048 and 4096.
constexpr int kAutoPv16MaxSeqlenQ = 1536;
constexpr int kAutoPv16MaxSeqlenQCausal = 3072;
// Head dims <= 64 with a mask (padded to 128 on the sm90 kernel), or under AUTO_PV16 (the native
// 16-bit P.V): the sm90 kernel from this many query rows and keys on (measured on self-attention
// only, so both must be long). Native 16-bit P.V at head dim 64, H100 (2026-11-27), TOPS sm80 /
// sm90: non-causal 1K 248.6 / 238.5, 2K 300.1 / 302.2, 4K 327.5 / 341.2; causal 2K 230.1 / 223.5,
// 4K 281.2 / 280.1; B16 H16 577 and 1024, either: sm80 by 5-20 %. Padded FP8 P.V (masked calls),
// H100, hd64, B4 H32, two runs (2026-11-26, session 9: persistent CTAs, sampled K mean), TOPS
// sm80 / sm90: non-causal 2K 299.6 / 300.3, 3K 315.3 / 347.5, 4K 326.5 / 375.3, 6K 341.4 / 417.1;
// causal 2K 235.5 / 199.6, 3K 267.0 / 255.3, 4K 289.7 / 288.4, 6K 302.1 / 330.5 (second run within
// 2 %). Until then 4096 non-causal (sm80 / sm90 at 2K 290.2 / 281.1, 4K 321.2 / 357.2 after the
// sm80 loader change).
constexpr int kAutoSm90MinSeqlenHd64Slow = 3072;
constexpr int kAutoSm90MinSeqlenHd64SlowCausal = 6144;
// Head dims <= 64 without a mask under AUTO: the native head-dim-64 FP8 kernel (HeadDim,
// sm90/traits.cuh) from this many query rows and keys on, else the sm80 kernel's 64. H100
// (2026-11-27, three calls), TOPS sm80 / sm90: B4 H32 non-causal 1K 247.6 / 249.3-253.7, 2K 301.7 / 369.4-373.7;
// causal 2K 224.6 / 232.2-240.8; B16 H16 non-causal 577 173.2-173.5 / 154.1-172.4, 1K 262.8-263.3
// / 272.1-274.4, causal 1K 175.6 / 144.1. Causal 1K at B4 H32 varied between calls (sm90 112.3,
// 124.2 and 153-156 against sm80's 137.1): sm80 there.
constexpr int kAutoSm90MinSeqlenHd64 = 1024;
constexpr int kAutoSm90MinSeqlenHd64Causal = 2048;

bool has_masks(const sageattn_params& p) { return p.mask_type != SAGEATTN_MASK_NONE || p.block_mask.data != nullptr; }

// Compute capabilities whose blocks may use at least 128 KB of shared memory (A100, Orin, H100/H200,
// B200/B300: 163-227 KB); sm86, sm89, sm120 and sm121 allow 99-101 KB.
bool has_128kb_shared_memory(int sm_arch) {
  return sm_arch == 80 || sm_arch == 87 || sm_arch == 90 || sm_arch == 100 || sm_arch == 103;
}

}  // namespace

sageattn_status make_plan(const sageattn_params& p, int sm_arch, Plan& plan, std::string& reason) {
  // sm_90a code runs on compute capability 9.0 only ('a' features are not forward compatible).
  const bool sm90_possible = sm_arch == 90 && has_sm90_kernels();
  sageattn_kernel kernel = static_cast<sageattn_kernel>(p.kernel);
  if (is_sm90_kernel(kernel)) {
    const std::string name = kernel == SAGEATTN_KERNEL_SM90_WGMMA ? "SM90_WGMMA" : "SM90_WGMMA_PV16";
    if (!sm90_possible) {
      reason = has_sm90_kernels() ? "kernel " + name + " needs a compute capability 9.0 GPU (Hopper), this one is " +
                                        std::to_string(sm_arch / 10) + "." + std::to_string(sm_arch % 10)
                                  : "kernel " + name + " is not in this build (rebuild with 90a in SAGEATTN_CUDA_ARCHS)";
      return SAGEATTN_STATUS_UNSUPPORTED;
    }
    // Above 128: the native head dim 256 with the E4M3 P.V only (HeadDim, sm90/traits.cuh).
    if (p.head_dim > kSm90MaxHeadDim && kernel == SAGEATTN_KERNEL_SM90_WGMMA_PV16) {
      reason = "kernel " + name + " supports head dims up to " + std::to_string(kSm90MaxHeadDim) + " (got " +
               std::to_string(p.head_dim) + "); SM90_WGMMA, AUTO, AUTO_PV16 or SM80_MMA run head dims up to " +
               std::to_string(kMaxHeadDim);
      return SAGEATTN_STATUS_UNSUPPORTED;
    }
  }
  // Head dims above 128 run the sm80 kernel's 128 KB shared-memory variant (sm80/traits.cuh).
  if (padded_head_dim(p.head_dim) > 128 && !has_128kb_shared_memory(sm_arch)) {
    reason = "head_dim " + std::to_string(p.head_dim) + " needs 128 KB of shared memory per block, more than compute capability " +
             std::to_string(sm_arch / 10) + "." + std::to_string(sm_arch % 10) +
             " allows (head dims up to 128 run everywhere; above, sm80, sm87, sm90 and sm100)";
    return SAGEATTN_STATUS_UNSUPPORTED;
  }
  // Head dims <= 64 run the sm90 kernel natively without masks, and 129-256 natively with E4M3 P.V
  // (HeadDim, sm90/traits.cuh).
  const int padded = padded_head_dim(p.head_dim);
  const bool native_hd64 = padded == 64 && !has_masks(p);
  const bool native_hd256 = padded == 256;
  if (kernel == SAGEATTN_KERNEL_AUTO || kernel == SAGEATTN_KERNEL_AUTO_PV16) {
    // Head dims <= 64 run the sm90 kernel's native 64 (no masks) or, with a mask, its 128
    // zero-padded (twice the tensor work); either only where queries and keys are long enough for it
    // to beat the sm80 kernel's native 64. On sm90, AUTO takes the 16-bit P.V where it is the
    // faster of the two: it needs no V pass when a tensor map reads V, which outweighs its slower
    // P.V while each V token serves few query blocks (docs/performance.md).
    const bool fp8_hd64 = native_hd64 && kernel == SAGEATTN_KERNEL_AUTO;
    const int fp8_min = p.is_causal ? kAutoSm90MinSeqlenHd64Causal : kAutoSm90MinSeqlenHd64;
    const int slow_min = p.is_causal ? kAutoSm90MinSeqlenHd64SlowCausal : kAutoSm90MinSeqlenHd64Slow;
    const int hd64_min = fp8_hd64 ? fp8_min : slow_min;
    const bool long_hd64 = padded == 64 && p.seqlen_q >= hd64_min && p.seqlen_kv >= hd64_min;
    // Head dims 129-256: the sm90 kernel's native 256 (E4M3 P.V) under AUTO at every length: H100,
    // B4 H32, TOPS sm80 variant / sm90: 1K 218.7 / 305.0, 8K 317.6 / 905.7, causal 1K 144.5 / 159.1
    // (2026-11-27). AUTO_PV16, the accurate mode, keeps the sm80 kernel's 16-bit P.V.
    const bool fp8_hd256 = native_hd256 && kernel == SAGEATTN_KERNEL_AUTO;
    const bool sm90 = sm90_possible && (padded == 128 || long_hd64 || fp8_hd256);
    const int pv16_max = p.is_causal ? kAutoPv16MaxSeqlenQCausal : kAutoPv16MaxSeqlenQ;
    const bool pv16 = kernel == SAGEATTN_KERNEL_AUTO_PV16 ||
                      (!native_hd64 && padded <= 128 && p.seqlen_q <= pv16_max && v_tensor_map_possible(p));
    kernel = !sm90  ? SAGEATTN_KERNEL_SM80_MMA
             : pv16 ? SAGEATTN_KERNEL_SM90_WGMMA_PV16
                    : SAGEATTN_KERNEL_SM90_WGMMA;
  }
  plan = Plan{};
  plan.kernel = kernel;
  plan.q_blocks = static_cast<int>(ceil_div(p.seqlen_q, kQBlockRows));
  if (is_sm90_kernel(kernel)) {
    plan.padded_head_dim = native_hd64 ? 64 : native_hd256 ? 256 : 128;
    plan.v_tiles = static_cast<int>(ceil_div(p.seqlen_kv, kSm90KeyTileTokens));
    plan.k_blocks = 2 * plan.v_tiles;
    plan.fp8_v = kernel == SAGEATTN_KERNEL_SM90_WGMMA;
    plan.v_tma = !plan.fp8_v && v_tensor_map_possible(p);
    plan.v16_tiles = !plan.fp8_v && !plan.v_tma;
  } else {
    plan.padded_head_dim = padded_head_dim(p.head_dim);
    plan.k_blocks = static_cast<int>(ceil_div(p.seqlen_kv, kKBlockTokens));
  }
  plan.kernel_quantizes_q = is_sm90_kernel(kernel) || plan.padded_head_dim <= 128;
  plan.dependent_launch = sm_arch >= 90;
  plan.mask_kv_blocks = static_cast<int>(ceil_div(p.seqlen_kv, kMaskBlock));
  plan.mask_pass = p.mask_type != SAGEATTN_MASK_NONE;
  if (plan.mask_pass) {
    const bool block = p.block_mask.data != nullptr;
    plan.code_batch = p.mask.stride_batch == 0 && (!block || p.block_mask.stride_batch == 0) ? 1 : p.batch;
    plan.code_heads = p.mask.stride_head == 0 && (!block || p.block_mask.stride_head == 0) ? 1 : p.heads_q;
    // The sm90 kernel reads a boolean mask as 128-bit rows per tile (two loads per thread and tile
    // instead of 64 byte loads, docs/design/masks.md); the sm80 kernel reads the bytes.
    plan.mask_bits = p.mask_type == SAGEATTN_MASK_BOOL && is_sm90_kernel(kernel);
  }
  return SAGEATTN_STATUS_OK;
}

}  // namespace sageattn
