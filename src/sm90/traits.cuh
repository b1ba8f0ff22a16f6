// Geometry and resource budget of the sm90 kernel: head dims 128, and 64 and 256 natively (without
// masks); other head dims are zero-padded to one of them.
#pragma once
#include "common/swizzled_rows.h"
#include "common/tiling.h"

namespace sageattn::sm90 {

constexpr int kQRows = kQBlockRows;          // 128: the pre-pass's Q blocks (work items: CtaShape::kRows)
constexpr int kKeyTile = kSm90KeyTileTokens; // 128 tokens per K/V tile
constexpr int kTileBytes = 128 * 128;        // at head dim 128: Q, K (int8 rows of 128) and E4M3 V tiles alike
static_assert(kTileBytes == kFp8VTileBytes, "an E4M3 V tile of head dim 128 is one 16 KB block");

// What the head dim kD (64, 128 or 256) sets. INT8 Q and K rows are kD bytes, stored with the
// kD-byte swizzle, or at 256 as two panels of 128-byte rows (common/swizzled_rows.h), which the
// wgmma descriptors name (ptx/wgmma.cuh). E4M3 V tiles are [kD channels][128 token slots], rows of
// 128 bytes with the 128-byte swizzle at every head dim; the P.V accumulator is m64nD: kD / 2 floats
// per thread. Head dim 64 halves the tensor work per key and keeps the softmax's; 256 doubles it
// (docs/design/sm90_kernel.md, "Head dim 64", "Head dim 256").
template <int kD>
struct HeadDim {
  static_assert(kD == 64 || kD == 128 || kD == 256, "instantiated head dims");
  static constexpr int kQkSteps = kD / 32;            // k32 steps of Q.K^T
  static constexpr int kKTileBytes = kKeyTile * kD;   // 128 INT8 K rows
  static constexpr int kFp8VTileBytes = kD * kKeyTile;
  static constexpr int kOutRegs = kD / 2;             // O accumulator values per thread
  static constexpr int kConsumerQBytes = 64 * kD;     // a consumer warpgroup's 64 INT8 Q rows
  // Channels of the pre-pass's V statistics, scales and means per K/V head (zeros past head_dim).
  static constexpr int kVChannels = fp8_v_channels(kD);
  using Rows = SwizzledRows<kD>;
  // Descriptor offset (16-byte units) of k32 step kk in a tile of `rows` rows: +32 bytes per step
  // within a row of a panel, the next panel after kRowBytes / 32 steps.
  __host__ __device__ static constexpr uint32_t step_offset(int rows, int kk) {
    constexpr int kStepsPerPanel = Rows::kRowBytes / 32;
    return static_cast<uint32_t>((kk / kStepsPerPanel) * (rows * Rows::kRowBytes / 16) + 2 * (kk % kStepsPerPanel));
  }
};
// Experiment switches, measured with scripts/bench_variants.sh (docs/performance.md); the
// defaults are the validated configuration.
#ifndef SAGEATTN_SM90_STAGES
#define SAGEATTN_SM90_STAGES 2
#endif
#ifndef SAGEATTN_SM90_PINGPONG
#define SAGEATTN_SM90_PINGPONG 1
#endif
// Scores (out of every 8) whose exp2 runs as a polynomial on the FMA pipe instead of MUFU.
#ifndef SAGEATTN_SM90_POLY_EXP2
#define SAGEATTN_SM90_POLY_EXP2 0
#endif
// 1: one CTA per SM, each taking work items from a queue (item_queue.cuh) as it finishes them; the
// next item's loads overlap the current item's tail. 0: one CTA per work item (the hardware's
// dispatch). H100, same-build A/B: +2 to +4 % non-causal at 1K-4K, equal at 16K, causal within
// +-1.5 %; packed sequences +2 % (docs/performance.md). The static round-robin tried before lost
// 9-32 % causal at 1K-4K.
#ifndef SAGEATTN_SM90_PERSISTENT
#define SAGEATTN_SM90_PERSISTENT 1
#endif
// 0: normal. Profiling-only variants that compute garbage: 1 = no softmax math (P constant),
// 2 = no wgmma (softmax on whatever the accumulators hold), 3 = no output stores, 4 = no Q
// quantization (the consumers use whatever their Q region holds), 5 = no row sums (outputs 0).
#ifndef SAGEATTN_SM90_EXPERIMENT
#define SAGEATTN_SM90_EXPERIMENT 0
#endif
// Consumer warpgroups of the FP8 kernel without masks (dense or packed): 3 (192 query rows per
// work item) or 2 (128). The other instantiations always have 2 (CtaShape).
#ifndef SAGEATTN_SM90_FP8_CONSUMERS
#define SAGEATTN_SM90_FP8_CONSUMERS 3
#endif
// Headroom h (base-2 units) of the softmax reference (softmax_to_p, kernel.cuh): 0 = the exact
// running maximum; h > 0 = the reference moves to (tile maximum + h) only when a tile exceeds it,
// and a tile that exceeds no reference of its warp skips the reference update and the o rescale.
// H100, same-build A/B against h = 0 (TOPS 4K / 16K non-causal, causal): h = 2 +2 % / +5 %, +3 %
// / +3 %; h = 4 +4 % / +6 %, +5 % / +4 % (and +1-2 % over h = 2 in a later call). The price is h
// bits of E4M3 range for P~ (largest P~ of a row in [448 / 2^h, 448]): Gaussian relative L1
// 3.83e-2 -> 3.89e-2 (h = 2) -> 3.91e-2 (h = 4) at 4K; the GPU suite passed on h = 4.
#ifndef SAGEATTN_SM90_HEADROOM
#define SAGEATTN_SM90_HEADROOM 4
#endif
// The same for the 16-bit P.V, whose P = 2^(x - ref) loses nothing to a larger headroom in fp16
// or bf16; 8 measured no faster than 4 there (H100, 2026-11-26), so it follows the FP8 value.
#ifndef SAGEATTN_SM90_HEADROOM_PV16
#define SAGEATTN_SM90_HEADROOM_PV16 SAGEATTN_SM90_HEADROOM
#endif
constexpr int kStages = SAGEATTN_SM90_STAGES;
// Stages of the head-dim-64 kernel (its tiles are half as large).
#ifndef SAGEATTN_SM90_STAGES_HD64
#define SAGEATTN_SM90_STAGES_HD64 2
#endif
// Stages of the head-dim-256 kernel: 64 KB each next to 32 KB of Q rows, so 3 would pass the 227 KB
// a CTA may have (with the 1 KB of static shared memory and the alignment slack) by 96 bytes.
#ifndef SAGEATTN_SM90_STAGES_HD256
#define SAGEATTN_SM90_STAGES_HD256 2
#endif
// 1: the two head-dim-256 consumers take turns on the tensor cores (named barriers) as the 16-bit
// P.V's do, with a serial turn each; 0: no turns. H100, same-call A/B, two rounds, B4 H32 (TOPS
// 0 / 1): non-causal 4K 686 / 746-750, 8K 849-859 / 935-939, 16K 960 / 1038-1045; causal 4K
// 497-502 / 528, 8K 601-608 / 689-738, 16K 828-847 / 854-878 (docs/performance.md).
#ifndef SAGEATTN_SM90_HD256_PINGPONG
#define SAGEATTN_SM90_HD256_PINGPONG 1
#endif
// 1: the head-dim-256 turn without masks issues Q.K^T and the previous tile's P.V together and runs
// the softmax while that P.V computes (kernel.cuh, kPvOverlap; causal: below the diagonal); 0: the
// serial turn everywhere. H100 B4 H32 fp16 (docs/performance.md, session 17): non-causal +2-4 %,
// causal +1-3 %.
#ifndef SAGEATTN_SM90_HD256_PV_OVERLAP
#define SAGEATTN_SM90_HD256_PV_OVERLAP 1
#endif
template <int kD>
constexpr int kStagesOf = kD == 64 ? SAGEATTN_SM90_STAGES_HD64 : kD == 256 ? SAGEATTN_SM90_STAGES_HD256 : kStages;
// Stages of each of the two rings of split items (kernel.cuh).
#ifndef SAGEATTN_SM90_SPLIT_STAGES
#define SAGEATTN_SM90_SPLIT_STAGES 2
#endif
constexpr int kSplitStages = SAGEATTN_SM90_SPLIT_STAGES;
constexpr int kAccRegs = 64;                 // m64n128 score accumulator: 64 values per thread
// K and V full/empty barriers per stage, kRingStages stages in all (every ring's).
template <int kRingStages>
constexpr int kBarriers = 4 * kRingStages;
// The consumers' Q quantization (q_quantize.cuh): kQExchangeFloats floats of shared memory each and
// named barrier kQBarrier0 + consumer (ids 1 and 2 are the ping-pong turns).
constexpr int kQExchangeFloats = 128;
constexpr int kQBarrier0 = 4;
constexpr int kAlignSlack = 1024;
// The epilogue's staging of a consumer's 64 output rows (kernel.cuh): 16-bit rows of 128 channels,
// 272 bytes apart, so that the 8 rows of each stmatrix phase fall on 8 different 16-byte bank
// groups (a 256-byte pitch would put them all on one: 8-way conflicts); every row start stays
// 16-byte aligned for the bulk copy.
constexpr int kOutRowPitch = 2 * 128 + 16;
constexpr int kOutStagingBytes = 64 * kOutRowPitch;

// The CTA of one instantiation: a producer warpgroup and 2 or 3 consumer warpgroups of 64 query rows.
// Why 3 for the FP8 kernel without masks: ncu (H100, 8K) found each consumer warp's softmax a long
// serial stream and the schedulers 55 % idle with two consumer warps each; a third warp per
// scheduler hides more of it (H100, same-build A/B: +4 % at 2K to +9 % at 8K non-causal, +4 %
// causal at 8K-16K, -1 to -3 % causal at 2K-4K, where AUTO runs the 16-bit P.V anyway; after
// later changes, 2 consumers measured 18-34 % slower, H100, session 19). It fits because its
// FP8 P.V accumulates into o on the tensor core (kDirectAcc, kernel.cuh): a consumer holds o, one
// score tile and P, 160 registers. The 16-bit P.V's 32 registers of P do not fit that. Masked
// FP8 calls run three consumers too, on split items (kernel.cuh: tile codes are per 128-row Q
// block); element masks on two consumers measured 14-22 % slower (H100, docs/performance.md).
// setmaxnreg moves registers within what the CTA holds at launch (65536 / threads, rounded down
// to a multiple of 8, per thread). The producer loops over work items (item decode, key range, two
// stream counters) and spilled at 24 registers; 32 does not.
template <bool kPv16, int kD = 128>
struct CtaShape {
  // Head dim 256: o alone is 128 registers; a third consumer's 160 would not hold it.
  static constexpr int kConsumers = !kPv16 && kD <= 128 ? SAGEATTN_SM90_FP8_CONSUMERS : 2;
  static_assert(kConsumers == 2 || kConsumers == 3, "2 or 3 consumer warpgroups");
  static constexpr int kRows = 64 * kConsumers;  // query rows per work item
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kConsumerWarps = 4 * kConsumers;
  static constexpr int kLaunchRegisters = 65536 / kThreads / 8 * 8;
  static constexpr int kProducerRegisters = 32;
  static constexpr int kConsumerRegisters = kConsumers == 3 ? 160 : 232;
  static_assert(128 * kProducerRegisters + 128 * kConsumers * kConsumerRegisters <= kLaunchRegisters * kThreads,
                "setmaxnreg cannot hand out more registers than the CTA was launched with");
  // Each consumer's turn completes P.V before Q.K^T claims the score registers (kernel.cuh, turn):
  // three consumers at head dim 128, and head dim 256 (o, P and a score tile at once, 208
  // registers, made ptxas serialize every wgmma at 232, C7512), whose two consumers still
  // alternate on the tensor cores (SAGEATTN_SM90_HD256_PINGPONG). Head-dim-256 calls without masks
  // take the overlapped turn at 240 registers instead, causal ones below the diagonal only
  // (kernel.cuh, kPvOverlap).
  static constexpr bool kSerialTurn = (kConsumers == 3 && kD == 128) || kD == 256;
  static constexpr bool kPingPong =
      SAGEATTN_SM90_PINGPONG && kConsumers == 2 && (!kSerialTurn || (kD == 256 && SAGEATTN_SM90_HD256_PINGPONG));
  // P.V accumulated by the tensor core across tiles (no FP32 o_tile; kernel.cuh). Head dim 256:
  // o (128) + o_tile (128) would not fit in 232 registers.
  static constexpr bool kDirectAcc = kPv16 || kConsumers == 3 || kD == 256;
  // The epilogue stages the output rows in shared memory and stores them with bulk copies
  // (kernel.cuh). H100, same-call A/B (docs/performance.md): two consumers (16-bit P.V) +4 % at 1K,
  // +2-4 % causal 1K-2K; three consumers equal non-causal and 4 % slower causal at 4K (ptxas
  // spilled 56 bytes more per consumer at 160 registers), so they keep the direct stores. Staged
  // there with the direct path's 4-byte stores into shared memory instead of stmatrix (session 22):
  // 2K -1.5 %, causal 4K-16K -3 to -5 % (docs/performance.md).
  // Head dim 64 (16-bit P.V) stores directly: staged measured equal to 3 % slower (H100, 2026-11-27).
  static constexpr bool kStagedOutput = kConsumers == 2 && kD == 128;
  static constexpr int kQBytes = kRows * kD;
};

// The two P.V precisions. E4M3 (kPv16 = false): P~ = 448 * 2^(x - m) and V quantized per channel,
// 16 KB K-major V tiles, k32 steps, accumulated as CtaShape::kDirectAcc says. 16-bit (the
// input dtype, the accurate mode): P = 2^(x - m) and V unchanged, MN-major V tiles (kD / 64 panels
// of 64 channels, 16 KB each, quant/v_tiles16.cuh) read by a transposed wgmma, k16 steps, FP32
// accumulation inside the tensor core.
template <bool kPv16, int kD = 128>
struct PvTraits {
  // 16-bit V: one 16 KB panel of 64 channels x 128 tokens per 64 channels of the head dim.
  static constexpr int kVPanels = kD / 64;
  static constexpr int kVTileBytes = kPv16 ? kVPanels * kTileBytes : HeadDim<kD>::kFp8VTileBytes;
  static constexpr int kVPanelBytes = kTileBytes;  // 16-bit tiles: channels 64..127 start here
  static constexpr int kSteps = kPv16 ? kKeyTile / 16 : kKeyTile / 32;  // wgmma k steps per tile
  static constexpr float kLog2PUnit = kPv16 ? 0.f : 8.807354922057604f;  // log2 of P's unit: 1 or 448
  // Softmax reference headroom (SAGEATTN_SM90_HEADROOM, SAGEATTN_SM90_HEADROOM_PV16).
  static constexpr float kHeadroom = kPv16 ? SAGEATTN_SM90_HEADROOM_PV16 : SAGEATTN_SM90_HEADROOM;
  template <int kQBytes, int kRingStages, bool kStagedOutput>
  static constexpr int kSharedBytes =
      kQBytes + kRingStages * (HeadDim<kD>::kKTileBytes + kVTileBytes) + 8 * kBarriers<kRingStages> +
      kQBytes / HeadDim<kD>::kConsumerQBytes * (kQExchangeFloats * 4 + (kStagedOutput ? kOutStagingBytes : 0)) +
      kAlignSlack;
};

}  // namespace sageattn::sm90
