// CPU reference for sageattn: exact attention in double, and a bit-faithful emulation of the INT8
// quantization and of the 16-bit or FP8 (E4M3) P.V defined in docs/design/quantization.md.
// Host-only C++17, no CUDA.
//
// Everything here is the ground truth the GPU kernels are tested against, so the quantization pieces
// are exposed one by one: tests check group membership, rounding and saturation directly instead of
// trusting the end-to-end numbers.
//
// Inputs are float32 in [batch, heads, tokens, head_dim] contiguous layout; a single head is a
// row-major [rows, head_dim] matrix.
#ifndef SAGEATTN_REFERENCE_REFERENCE_H
#define SAGEATTN_REFERENCE_REFERENCE_H

#include <cstdint>
#include <vector>

#include "common/tiling.h"
#include "sageattn/sageattn.h"

// The library is built with hidden visibility; the C++ unit tests link against the shared library and
// call these functions directly, so they are exported like the C entry points.
#define SAGEATTN_REFERENCE_EXPORT SAGEATTN_API

namespace sageattn::reference {

// The group geometry (kQBlockRows, kWarpRows, kQGroupsPerWarp, kKBlockTokens, kKGroupsPerBlock) and
// kLog2e come from common/tiling.h, shared with the kernels; the tests restate the numbers of
// quantization.md independently, so a change there cannot silently move both sides at once.
constexpr int kInt8Max = 127;
// Largest finite E4M3 value: P tilde and the quantized V of the FP8 P.V path are scaled to [-448, 448].
constexpr float kE4m3Max = 448.0f;

// ---- Quantization groups -------------------------------------------------------------------------

// Which rows of one block share a scale. group_in_block maps a row index inside its block
// (0 <= row < block_rows) to a group index in [0, groups_per_block).
struct GroupLayout {
  int block_rows;
  int groups_per_block;
  int (*group_in_block)(int row_in_block);
};

SAGEATTN_REFERENCE_EXPORT GroupLayout q_group_layout(sageattn_qk_granularity granularity);
SAGEATTN_REFERENCE_EXPORT GroupLayout k_group_layout(sageattn_qk_granularity granularity);

// Global group index of `row` in a tensor cut into blocks of layout.block_rows.
inline int64_t group_of_row(const GroupLayout& layout, int64_t row) {
  return (row / layout.block_rows) * layout.groups_per_block +
         layout.group_in_block(static_cast<int>(row % layout.block_rows));
}

inline int64_t num_groups(const GroupLayout& layout, int64_t rows) {
  return (rows + layout.block_rows - 1) / layout.block_rows * layout.groups_per_block;
}

// ---- INT8 quantization of one group --------------------------------------------------------------

SAGEATTN_REFERENCE_EXPORT float int8_scale(float amax);          // amax / 127.0f
SAGEATTN_REFERENCE_EXPORT float int8_inverse_scale(float amax);  // amax > 0 ? 127.0f / amax : 0
// clamp(rint(x * inverse_scale), -127, 127) of the exact product (not rounded to float first),
// round half to even. A NaN product (only possible when
// 127/amax overflowed to inf and x == 0, see the .cpp) gives 0, as cvt.rni.sat does on the GPU.
SAGEATTN_REFERENCE_EXPORT int8_t quantize_int8(float x, float inverse_scale);

// A [rows, head_dim] matrix quantized with one float scale per group. Padding rows of the tail block
// are not stored (they are zero, do not raise any amax, and quantize to zero).
struct QuantizedMatrix {
  GroupLayout layout{};
  int64_t rows = 0;
  int head_dim = 0;
  std::vector<int8_t> values;  // [rows, head_dim]
  std::vector<float> scales;   // [num_groups(layout, rows)]; a group without valid rows has scale 0

  int64_t group_of(int64_t row) const { return group_of_row(layout, row); }
  float scale_of(int64_t row) const { return scales[static_cast<size_t>(group_of(row))]; }
};

// Scales in the layout the kernels read: quantization.md stores them per per-thread group index in
// both granularities, a per-warp scale repeated over the per-thread groups it contains. `kernel_layout`
// is q_group_layout(PER_THREAD) or k_group_layout(PER_THREAD), matching the operand of `m`. For comparing
// against the GPU pre-pass output.
SAGEATTN_REFERENCE_EXPORT std::vector<float> scales_in_kernel_layout(const QuantizedMatrix& m,
                                                                     const GroupLayout& kernel_layout);

SAGEATTN_REFERENCE_EXPORT QuantizedMatrix quantize_rows(const float* x, int64_t rows, int head_dim,
                                                        const GroupLayout& layout);
SAGEATTN_REFERENCE_EXPORT QuantizedMatrix quantize_q(const float* q, int64_t rows, int head_dim,
                                                     sageattn_qk_granularity granularity);
// `k` is K after smoothing (K') when smoothing is on.
SAGEATTN_REFERENCE_EXPORT QuantizedMatrix quantize_k(const float* k, int64_t tokens, int head_dim,
                                                     sageattn_qk_granularity granularity);

// ---- K smoothing ---------------------------------------------------------------------------------

// mean[c] = (float32 sum over tokens in token order) / tokens, in float32.
SAGEATTN_REFERENCE_EXPORT std::vector<float> k_channel_mean(const float* k, int64_t tokens, int head_dim);
// K smoothing's mean: the same over the keys k_mean_sampled picks (common/tiling.h: one key in each
// aligned group of 1, 2, 4 or 8 keys, at least 256 keys), divided by their count.
SAGEATTN_REFERENCE_EXPORT std::vector<float> k_smoothing_mean(const float* k, int64_t tokens, int head_dim);
// K'[j][c] = K[j][c] - mean[c] in float32.
SAGEATTN_REFERENCE_EXPORT std::vector<float> subtract_channel_mean(const float* k, int64_t tokens,
                                                                   int head_dim,
                                                                   const std::vector<float>& mean);

// ---- 16-bit float conversions (round to nearest even) --------------------------------------------

SAGEATTN_REFERENCE_EXPORT uint16_t float_to_fp16_bits(float x);  // subnormals, overflow to inf, NaN kept
SAGEATTN_REFERENCE_EXPORT float fp16_bits_to_float(uint16_t bits);
SAGEATTN_REFERENCE_EXPORT uint16_t float_to_bf16_bits(float x);
SAGEATTN_REFERENCE_EXPORT float bf16_bits_to_float(uint16_t bits);

// ---- FP8 E4M3 (OCP "e4m3fn") conversions ---------------------------------------------------------
//
// 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinities; S.1111.111 is NaN, so the largest
// finite value is S.1111.110 = 448; subnormals are m * 2^-9 (m = 1..7), the smallest normal is 2^-6.

// What cvt.rn.satfinite.e4m3x2.f32 does: round to nearest even; every finite value or infinity whose
// rounding would exceed 448 in magnitude gives +-448 (so does the tie 464); NaN gives NaN (0x7F with the
// input's sign); the sign of zero is kept.
SAGEATTN_REFERENCE_EXPORT uint8_t float_to_e4m3_bits(float x);
SAGEATTN_REFERENCE_EXPORT float e4m3_bits_to_float(uint8_t bits);  // exact; NaN patterns give NaN

// x rounded to the nearest value representable in `dtype`, returned as float (exact). For E4M3 with
// the saturation of float_to_e4m3_bits.
SAGEATTN_REFERENCE_EXPORT float round_to_dtype(float x, sageattn_dtype dtype);

// ---- Attention -----------------------------------------------------------------------------------

// Keys [0, allowed_keys) may be attended by query `row` (bottom-right causal alignment); may be <= 0.
inline int64_t allowed_keys(const sageattn_reference_problem& problem, int64_t row) {
  if (!problem.is_causal) return problem.seqlen_kv;
  const int64_t end = row + 1 + (static_cast<int64_t>(problem.seqlen_kv) - problem.seqlen_q);
  return end < problem.seqlen_kv ? end : problem.seqlen_kv;
}

// The problem must be valid (see c_api_reference.cpp); `lse` may be null. Both use up to
// std::thread::hardware_concurrency() threads over (batch, head). Throw std::bad_alloc when out of memory.
SAGEATTN_REFERENCE_EXPORT void attention_exact(const sageattn_reference_problem& problem, const float* q,
                                               const float* k, const float* v, double* out, double* lse);

// `mask` (optional, float32 [batch, heads_q, seqlen_q, seqlen_kv] contiguous) is added to the scores
// as the kernels add an additive mask: x = float(s * dequant) + float(mask * log2(e)); -inf masks.
// The quantized pipeline. pv_dtype FP16/BF16: P rounded to it, V used as given (the sm80 kernel).
// pv_dtype E4M3: the FP8 P.V of quantization.md ("FP8 P.V"): per-channel V scales, optional V
// smoothing, P tilde = e4m3(448 * exp2(x - m)). smooth_v is only defined for E4M3; with a 16-bit
// pv_dtype it throws std::invalid_argument (no kernel smooths V before a 16-bit P.V).
SAGEATTN_REFERENCE_EXPORT void attention_emulated(const sageattn_reference_problem& problem,
                                                  sageattn_qk_granularity granularity, bool smooth_k,
                                                  bool smooth_v, sageattn_dtype pv_dtype, const float* q,
                                                  const float* k, const float* v, double* out, double* lse,
                                                  const float* mask = nullptr);

// ---- FP8 V quantization (per channel of one (batch, kv head)) ---------------------------------------

// V of one head quantized for the FP8 P.V: values[j][c] = e4m3((V[j][c] - mean[c]) * inverse[c]) as
// floats in [-448, 448], with scale[c] = amax[c] / 448, inverse[c] = 448 / amax[c] (0 and 0 for a
// channel with amax < kMinQuantizableAmax), mean[c] = 0 without smoothing. mean and amax come from
// the K mean's sample (amax times v_scale_margin), or amax from every token when the sample's does
// not cover an element (docs/design/quantization.md, "FP8 P.V").
struct Fp8Values {
  int64_t tokens = 0;
  int head_dim = 0;
  std::vector<float> values;  // [tokens, head_dim], each exactly an E4M3 value
  std::vector<float> scales;  // [head_dim]
  std::vector<float> mean;    // [head_dim]
};

SAGEATTN_REFERENCE_EXPORT Fp8Values quantize_v_fp8(const float* v, int64_t tokens, int head_dim, bool smooth_v);

}  // namespace sageattn::reference

#endif  // SAGEATTN_REFERENCE_REFERENCE_H
