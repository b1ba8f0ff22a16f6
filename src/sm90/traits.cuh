// Geometry and resource budget of the sm90 kernel (head dim 128; smaller head dims are zero-padded).
#pragma once
#include "common/tiling.h"

namespace sageattn::sm90 {

constexpr int kHeadDim = 128;
constexpr int kQRows = kQBlockRows;          // 128: two consumer warpgroups of 64 rows
constexpr int kKeyTile = kSm90KeyTileTokens; // 128 tokens per K/V tile
constexpr int kTileBytes = 128 * 128;        // Q, K (int8 rows of 128) and E4M3 V tiles alike
static_assert(kTileBytes == kFp8VTileBytes && kQRows * kHeadDim == kTileBytes && kKeyTile * kHeadDim == kTileBytes,
              "every 8-bit tile is one 16 KB block");
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
// 1: unmasked tiles skip the int -> float conversion (softmax_to_fp8_raw in kernel.cuh).
#ifndef SAGEATTN_SM90_MAGIC_FFMA
#define SAGEATTN_SM90_MAGIC_FFMA 0
#endif
// 1: one CTA per SM, each looping over work items in static round-robin (the next item's loads
// overlap the current item's tail); 0: one CTA per work item. Measured equal non-causal and 4 %
// slower causal at 16K (static round-robin balances causal items worse than the hardware's
// dispatch), so it stays off until a dynamic scheduler replaces the round-robin.
#ifndef SAGEATTN_SM90_PERSISTENT
#define SAGEATTN_SM90_PERSISTENT 0
#endif
// 0: normal. Profiling-only variants that compute garbage: 1 = no softmax math (P constant),
// 2 = no wgmma (softmax on whatever the accumulators hold).
#ifndef SAGEATTN_SM90_EXPERIMENT
#define SAGEATTN_SM90_EXPERIMENT 0
#endif
constexpr int kStages = SAGEATTN_SM90_STAGES;
constexpr int kThreads = 3 * 128;            // producer warpgroup + 2 consumer warpgroups
constexpr int kLaunchRegisters = 65536 / kThreads / 8 * 8;
constexpr int kConsumerWarps = 8;
constexpr int kAccRegs = 64;                 // m64n128 accumulator: 64 values per thread
constexpr int kQkSteps = kHeadDim / 32;      // k32 steps of Q.K^T
// setmaxnreg moves registers within what the CTA holds at launch: with __launch_bounds__(384, 1)
// that is 168 per thread (65536 / 384 rounded down to a multiple of 8), 64512 in all;
// 128 * 32 + 256 * 232 = 63488 fits. The producer loops over work items (item decode, key range,
// two stream counters) and spilled at 24; the consumers need no more than 232.
constexpr int kProducerRegisters = 32;
constexpr int kConsumerRegisters = 232;
static_assert(128 * kProducerRegisters + 256 * kConsumerRegisters <= kLaunchRegisters * kThreads,
              "setmaxnreg cannot hand out more registers than the CTA was launched with");
constexpr int kBarriers = 2 + 4 * kStages;  // Q full/empty, K and V full/empty per stage
constexpr int kAlignSlack = 1024;

// The two P.V precisions. E4M3 (kPv16 = false): P~ = 448 * 2^(x - m) and V quantized per channel,
// 16 KB K-major V tiles, k32 steps, the FP8 accumulator promoted to FP32 every tile. 16-bit (the
// input dtype, the accurate mode): P = 2^(x - m) and V unchanged, 32 KB MN-major V tiles (two 16 KB
// panels of 64 channels, quant/v_tiles16.cuh) read by a transposed wgmma, k16 steps, FP32
// accumulation inside the tensor core.
template <bool kPv16>
struct PvTraits {
  static constexpr int kVTileBytes = kPv16 ? 2 * kTileBytes : kTileBytes;
  static constexpr int kVPanelBytes = kTileBytes;  // 16-bit tiles: channels 64..127 start here
  static constexpr int kSteps = kPv16 ? kKeyTile / 16 : kKeyTile / 32;  // wgmma k steps per tile
  static constexpr float kLog2PUnit = kPv16 ? 0.f : 8.807354922057604f;  // log2 of P's unit: 1 or 448
  static constexpr int kSharedBytes = (1 + kStages) * kTileBytes + kStages * kVTileBytes + 8 * kBarriers + kAlignSlack;
};

}  // namespace sageattn::sm90
