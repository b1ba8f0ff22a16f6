// CPU reference: exact attention in double and the emulated INT8 pipeline with 16-bit or FP8 P.V
// (docs/design/quantization.md).
//
// Floating-point discipline: every float32 step of the quantization (mean, subtraction, amax, scale,
// inverse scale, x * inverse, q_factor, dequantization) is a single operation whose result is stored
// before the next one, and none of them is a multiply followed by an add, so there is nothing a compiler
// could contract into an FMA. (GCC's default in GNU mode is -ffp-contract=fast, which would matter only
// for a*b+c patterns and only with -mfma or -march=native; the double accumulations are not bit-critical.)
// x86-64 evaluates float in SSE registers, so there is no excess precision either.
#include "reference/reference.h"

#include "common/rotation.h"
#include "common/tiling.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace sageattn::reference {
namespace {

template <class To, class From>
To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

// Runs body(i) for i in [0, count) on up to hardware_concurrency() threads, the caller's included.
// The first exception from any worker stops the remaining work and is rethrown here, so nothing escapes a
// std::thread (that would be std::terminate).
template <class Body>
void parallel_for(int64_t count, const Body& body) {
  if (count <= 0) return;
  const int64_t hardware = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t thread_count = std::min(count, hardware);
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    try {
      for (int64_t i = next++; i < count; i = next++) body(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next = count;
    }
  };
  std::vector<std::thread> helpers;
  for (int64_t t = 1; t < thread_count; ++t) {
    try {
      helpers.emplace_back(worker);
    } catch (const std::exception&) {
      break;  // could not start another thread: the ones we have still finish the work
    }
  }
  worker();
  for (std::thread& helper : helpers) helper.join();
  if (error) std::rethrow_exception(error);
}

// Offsets of one head's [tokens, head_dim] slice in a [batch, heads, tokens, head_dim] array.
int64_t head_offset(int64_t b, int64_t h, int64_t heads, int64_t tokens, int64_t head_dim) {
  return ((b * heads + h) * tokens) * head_dim;
}

// A lane holds accumulator rows lane/4 and lane/4 + 8 of each 16-row tile: within a 32-row warp slice,
// rows with equal row % 8 share a lane, 8 groups per slice.
int q_group_per_thread(int row) { return (row / kWarpRows) * kQGroupsPerWarp + row % kQGroupsPerWarp; }
int q_group_per_warp(int row) { return row / kWarpRows; }
// A lane holds columns 2*(lane%4) and +1 of each 8-column tile: tokens with equal (t % 8) / 2.
int k_group_per_thread(int token) { return (token % 8) / 2; }
int k_group_per_warp(int) { return 0; }

// Row-major [rows, cols] -> [cols, rows], so that the score loops below are contiguous axpys over keys
// (vectorizable without reassociating any sum).
template <class T>
std::vector<T> transpose(const T* x, int64_t rows, int cols) {
  std::vector<T> t(static_cast<size_t>(rows) * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) t[static_cast<size_t>(c) * rows + r] = x[r * cols + c];
  return t;
}

void write_empty_row(double* out_row, double* lse_row, int head_dim) {
  std::fill(out_row, out_row + head_dim, 0.0);
  if (lse_row) *lse_row = -std::numeric_limits<double>::infinity();
}

// The rows of one query block (or the tail) of one (batch, query head): the unit of parallel work.
struct RowBlock {
  int64_t b, h, kv_head, row_begin, row_end;
};

RowBlock row_block_of(const sageattn_reference_problem& p, int64_t item) {
  const int64_t blocks = (p.seqlen_q + kQBlockRows - 1) / kQBlockRows;
  RowBlock block;
  block.row_begin = (item % blocks) * kQBlockRows;
  block.row_end = std::min<int64_t>(block.row_begin + kQBlockRows, p.seqlen_q);
  const int64_t bh = item / blocks;
  block.h = bh % p.heads_q;
  block.b = bh / p.heads_q;
  block.kv_head = block.h / (p.heads_q / p.heads_kv);
  return block;
}

int64_t row_block_count(const sageattn_reference_problem& p) {
  return static_cast<int64_t>(p.batch) * p.heads_q * ((p.seqlen_q + kQBlockRows - 1) / kQBlockRows);
}

}  // namespace

// ---- Groups ----------------------------------------------------------------------------------------

GroupLayout q_group_layout(sageattn_qk_granularity granularity) {
  if (granularity == SAGEATTN_QK_GRANULARITY_PER_WARP)
    return {kQBlockRows, kQBlockRows / kWarpRows, q_group_per_warp};
  return {kQBlockRows, kQGroupsPerBlock, q_group_per_thread};
}

GroupLayout k_group_layout(sageattn_qk_granularity granularity) {
  if (granularity == SAGEATTN_QK_GRANULARITY_PER_WARP) return {kKBlockTokens, 1, k_group_per_warp};
  return {kKBlockTokens, kKGroupsPerBlock, k_group_per_thread};
}

// ---- INT8 ------------------------------------------------------------------------------------------

// Groups below kMinQuantizableAmax are zero groups (docs/design/quantization.md): 127 / amax
// would overflow to inf near 3.7e-37 and turn the group's zeros into NaN.
float int8_scale(float amax) { return amax >= kMinQuantizableAmax ? amax / 127.0f : 0.0f; }

float int8_inverse_scale(float amax) { return amax >= kMinQuantizableAmax ? 127.0f / amax : 0.0f; }

int8_t quantize_int8(float x, float inverse_scale) {
  // The exact product (48 significant bits fit a double), rounded once to an integer, as the
  // GPU's fma(x, inv, 1.5 * 2^23) does (common/int8_round.cuh).
  const double scaled = static_cast<double>(x) * static_cast<double>(inverse_scale);
  if (std::isnan(scaled)) return 0;
  // rint rounds half to even in the default rounding mode, as the GPU's addition does.
  const float rounded = static_cast<float>(std::rint(scaled));
  const float clamped = std::min(std::max(rounded, -static_cast<float>(kInt8Max)), static_cast<float>(kInt8Max));
  return static_cast<int8_t>(clamped);
}

QuantizedMatrix quantize_rows(const float* x, int64_t rows, int head_dim, const GroupLayout& layout) {
  QuantizedMatrix result;
  result.layout = layout;
  result.rows = rows;
  result.head_dim = head_dim;
  result.values.resize(static_cast<size_t>(rows) * head_dim);
  const size_t groups = static_cast<size_t>(num_groups(layout, rows));
  std::vector<float> amax(groups, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float& group_amax = amax[static_cast<size_t>(group_of_row(layout, r))];
    for (int c = 0; c < head_dim; ++c) group_amax = std::max(group_amax, std::fabs(x[r * head_dim + c]));
  }
  result.scales.resize(groups);
  std::vector<float> inverse(groups);
  for (size_t g = 0; g < groups; ++g) {
    result.scales[g] = int8_scale(amax[g]);
    inverse[g] = int8_inverse_scale(amax[g]);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float inv = inverse[static_cast<size_t>(group_of_row(layout, r))];
    for (int c = 0; c < head_dim; ++c) result.values[r * head_dim + c] = quantize_int8(x[r * head_dim + c], inv);
  }
  return result;
}

std::vector<float> scales_in_kernel_layout(const QuantizedMatrix& m, const GroupLayout& kernel_layout) {
  // Both granularities cut the rows into the same blocks and every per-thread group lies inside one
  // per-warp group, so any row of a kernel group (padding rows included) names its scale.
  std::vector<float> out(static_cast<size_t>(num_groups(kernel_layout, m.rows)), 0.0f);
  const int64_t block = kernel_layout.block_rows;
  const int64_t padded_rows = (m.rows + block - 1) / block * block;
  for (int64_t r = 0; r < padded_rows; ++r) {
    const size_t kernel_group = static_cast<size_t>(group_of_row(kernel_layout, r));
    out[kernel_group] = m.scales[static_cast<size_t>(group_of_row(m.layout, r))];
  }
  return out;
}

QuantizedMatrix quantize_q(const float* q, int64_t rows, int head_dim, sageattn_qk_granularity granularity) {
  return quantize_rows(q, rows, head_dim, q_group_layout(granularity));
}

QuantizedMatrix quantize_k(const float* k, int64_t tokens, int head_dim, sageattn_qk_granularity granularity) {
  return quantize_rows(k, tokens, head_dim, k_group_layout(granularity));
}

// ---- Smoothing -------------------------------------------------------------------------------------

std::vector<float> k_channel_mean(const float* k, int64_t tokens, int head_dim) {
  std::vector<float> sum(head_dim, 0.0f);
  for (int64_t j = 0; j < tokens; ++j)
    for (int c = 0; c < head_dim; ++c) sum[c] += k[j * head_dim + c];
  const float count = static_cast<float>(tokens);
  for (float& s : sum) s = s / count;
  return sum;
}

std::vector<float> k_smoothing_mean(const float* k, int64_t tokens, int head_dim) {
  const int keys = static_cast<int>(tokens);
  std::vector<float> sum(head_dim, 0.0f);
  for (int j = 0; j < keys; ++j) {
    if (!k_mean_sampled(j, keys)) continue;
    for (int c = 0; c < head_dim; ++c) sum[c] += k[static_cast<int64_t>(j) * head_dim + c];
  }
  const float count = static_cast<float>(k_mean_sample_count(keys));
  for (float& s : sum) s = keys > 0 ? s / count : 0.0f;
  return sum;
}

std::vector<float> subtract_channel_mean(const float* k, int64_t tokens, int head_dim,
                                         const std::vector<float>& mean) {
  std::vector<float> smoothed(static_cast<size_t>(tokens) * head_dim);
  for (int64_t j = 0; j < tokens; ++j)
    for (int c = 0; c < head_dim; ++c) smoothed[j * head_dim + c] = k[j * head_dim + c] - mean[c];
  return smoothed;
}

// ---- 16-bit floats ---------------------------------------------------------------------------------

uint16_t float_to_fp16_bits(float x) {
  const uint32_t bits = bit_cast<uint32_t>(x);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  constexpr uint32_t kFloatInf = 0x7F800000u;
  // 65520 = 65504 (largest fp16) + half an ulp: the tie rounds to the even neighbour, which is infinity.
  constexpr uint32_t kFp16RoundsToInf = 0x477FF000u;
  constexpr uint32_t kFp16MinNormal = 0x38800000u;  // 2^-14
  constexpr int kMantissaDrop = 23 - 10;
  if (magnitude > kFloatInf)  // NaN: keep it quiet and keep the top of the payload
    return static_cast<uint16_t>(sign | 0x7E00u | ((magnitude >> kMantissaDrop) & 0x3FFu));
  if (magnitude >= kFp16RoundsToInf) return static_cast<uint16_t>(sign | 0x7C00u);
  if (magnitude >= kFp16MinNormal) {
    // Rebias the exponent (127 -> 15) and round the dropped 13 mantissa bits to nearest even; a carry
    // out of the mantissa correctly bumps the exponent.
    const uint32_t rebiased = magnitude - ((127u - 15u) << 23);
    const uint32_t round_bias = ((1u << (kMantissaDrop - 1)) - 1u) + ((rebiased >> kMantissaDrop) & 1u);
    return static_cast<uint16_t>(sign | ((rebiased + round_bias) >> kMantissaDrop));
  }
  // Subnormal fp16: the result is an integer count of 2^-24. Float value = mantissa * 2^(exponent - 150),
  // i.e. mantissa * 2^(exponent - 126) units; a count of 1024 is the smallest normal, whose bits are 0x400.
  const int exponent = static_cast<int>(magnitude >> 23);
  const int shift = 126 - exponent;  // >= 14 here
  if (shift > 24) return sign;      // below 2^-25: rounds to zero (float subnormals included)
  const uint32_t mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
  uint32_t units = mantissa >> shift;
  const uint32_t remainder = mantissa & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (remainder > half || (remainder == half && (units & 1u))) ++units;
  return static_cast<uint16_t>(sign | units);
}

float fp16_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1Fu) return bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // exact
    return sign ? -magnitude : magnitude;
  }
  return bit_cast<float>(sign | ((exponent + 127u - 15u) << 23) | (mantissa << 13));
}

uint16_t float_to_bf16_bits(float x) {
  const uint32_t bits = bit_cast<uint32_t>(x);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  // bf16 is the top half of a float: round the low 16 bits to nearest even (overflow reaches inf).
  const uint32_t round_bias = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + round_bias) >> 16);
}

float bf16_bits_to_float(uint16_t bits) { return bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

// ---- E4M3 --------------------------------------------------------------------------------------------

namespace {
constexpr int kE4m3MantissaBits = 3;
constexpr int kE4m3Bias = 7;
constexpr int kE4m3MinNormalExponent = 1 - kE4m3Bias;                            // 2^-6
constexpr int kE4m3SubnormalExponent = kE4m3MinNormalExponent - kE4m3MantissaBits;  // 2^-9, one subnormal step
constexpr uint8_t kE4m3MaxFiniteBits = 0x7E;  // S.1111.110 = 448
constexpr uint8_t kE4m3NanBits = 0x7F;        // S.1111.111
}  // namespace

uint8_t float_to_e4m3_bits(float x) {
  const uint32_t bits = bit_cast<uint32_t>(x);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return static_cast<uint8_t>(sign | kE4m3NanBits);
  const float a = bit_cast<float>(magnitude);
  // satfinite: every magnitude >= 448 rounds to 448 or would overflow (464, the tie with the missing
  // 480, goes to 448 as the even neighbour anyway), and overflow saturates; infinity included.
  if (a >= kE4m3Max) return static_cast<uint8_t>(sign | kE4m3MaxFiniteBits);
  if (a >= std::ldexp(1.0f, kE4m3MinNormalExponent)) {
    // Rebias the exponent (127 -> 7) and round the dropped 20 mantissa bits to nearest even; a carry
    // out of the mantissa correctly bumps the exponent (at most to 0x7E, since a < 448).
    constexpr int kDrop = 23 - kE4m3MantissaBits;
    const uint32_t rebiased = magnitude - (static_cast<uint32_t>(127 - kE4m3Bias) << 23);
    const uint32_t round_bias = ((1u << (kDrop - 1)) - 1u) + ((rebiased >> kDrop) & 1u);
    return static_cast<uint8_t>(sign | ((rebiased + round_bias) >> kDrop));
  }
  // Subnormal E4M3: an integer count of 2^-9 in [0, 8]; the scaling is exact and rint rounds half to
  // even. A count of 8 is the smallest normal, whose bits are 0x08.
  const float units = std::rint(std::ldexp(a, -kE4m3SubnormalExponent));
  return static_cast<uint8_t>(sign | static_cast<uint8_t>(units));
}

float e4m3_bits_to_float(uint8_t bits) {
  const int exponent = (bits >> kE4m3MantissaBits) & 0xF;
  const int mantissa = bits & 0x7;
  if ((bits & 0x7Fu) == kE4m3NanBits) return std::numeric_limits<float>::quiet_NaN();
  // Subnormal: mantissa * 2^-9. Normal: (8 + mantissa) * 2^(exponent - bias - 3), i.e. 1.mmm * 2^(e - 7).
  const float magnitude =
      exponent == 0 ? std::ldexp(static_cast<float>(mantissa), kE4m3SubnormalExponent)
                    : std::ldexp(static_cast<float>(8 + mantissa), exponent - kE4m3Bias - kE4m3MantissaBits);
  return (bits & 0x80u) ? -magnitude : magnitude;
}

float round_to_dtype(float x, sageattn_dtype dtype) {
  if (dtype == SAGEATTN_DTYPE_E4M3) return e4m3_bits_to_float(float_to_e4m3_bits(x));
  if (dtype == SAGEATTN_DTYPE_BF16) return bf16_bits_to_float(float_to_bf16_bits(x));
  return fp16_bits_to_float(float_to_fp16_bits(x));
}

// ---- FP8 V -----------------------------------------------------------------------------------------

Fp8Values quantize_v_fp8(const float* v, int64_t tokens, int head_dim, bool smooth_v) {
  Fp8Values result;
  result.tokens = tokens;
  result.head_dim = head_dim;
  // The mean and the scale come from the keys the K mean samples (tiling.h): the same positions.
  result.mean = smooth_v ? k_smoothing_mean(v, tokens, head_dim) : std::vector<float>(head_dim, 0.0f);
  // The smoothed value is one float subtraction, recomputed wherever it is used (it is deterministic).
  auto centered = [&](int64_t j, int c) {
    const float x = v[j * head_dim + c];
    return smooth_v ? x - result.mean[c] : x;
  };
  const int keys = static_cast<int>(tokens);
  std::vector<float> amax(head_dim, 0.0f);
  for (int j = 0; j < keys; ++j) {
    if (!k_mean_sampled(j, keys)) continue;
    for (int c = 0; c < head_dim; ++c) amax[c] = std::max(amax[c], std::fabs(centered(j, c)));
  }
  const float margin = v_scale_margin(keys);  // exact: a power of two
  for (float& a : amax) a = std::min(a * margin, std::numeric_limits<float>::max());
  // Channels below kMinQuantizableAmax are zero channels (scale 0, values 0), as INT8 zero groups.
  std::vector<float> inverse(head_dim);
  auto set_inverse = [&] {
    for (int c = 0; c < head_dim; ++c) inverse[c] = amax[c] >= kMinQuantizableAmax ? kE4m3Max / amax[c] : 0.0f;
  };
  set_inverse();
  // An element the sample's scale does not cover (beyond its amax, or nonzero in a channel the
  // sample found zero): the head takes the exact maxima over every token.
  bool exceeds = false;
  for (int64_t j = 0; j < tokens && !exceeds; ++j)
    for (int c = 0; c < head_dim; ++c) {
      const float limit = amax[c] >= kMinQuantizableAmax ? amax[c] : 0.0f;
      exceeds = exceeds || std::fabs(centered(j, c)) > limit;
    }
  if (exceeds) {
    std::fill(amax.begin(), amax.end(), 0.0f);
    for (int64_t j = 0; j < tokens; ++j)
      for (int c = 0; c < head_dim; ++c) amax[c] = std::max(amax[c], std::fabs(centered(j, c)));
    set_inverse();
  }
  result.scales.resize(head_dim);
  for (int c = 0; c < head_dim; ++c) result.scales[c] = amax[c] >= kMinQuantizableAmax ? amax[c] / kE4m3Max : 0.0f;
  result.values.resize(static_cast<size_t>(tokens) * head_dim);
  for (int64_t j = 0; j < tokens; ++j)
    for (int c = 0; c < head_dim; ++c) {
      const float scaled = centered(j, c) * inverse[c];
      result.values[j * head_dim + c] = round_to_dtype(scaled, SAGEATTN_DTYPE_E4M3);
    }
  return result;
}

// ---- Exact attention -------------------------------------------------------------------------------

void attention_exact(const sageattn_reference_problem& p, const float* q, const float* k, const float* v,
                     double* out, double* lse) {
  const int d = p.head_dim;
  const int64_t nq = p.seqlen_q, nk = p.seqlen_kv;

  // K^T of every (batch, kv head), shared by the query heads of its group.
  std::vector<std::vector<float>> k_transposed(static_cast<size_t>(p.batch) * p.heads_kv);
  parallel_for(static_cast<int64_t>(k_transposed.size()), [&](int64_t item) {
    const int64_t b = item / p.heads_kv, h = item % p.heads_kv;
    k_transposed[item] = transpose(k + head_offset(b, h, p.heads_kv, nk, d), nk, d);
  });

  parallel_for(row_block_count(p), [&](int64_t item) {
    const RowBlock block = row_block_of(p, item);
    const float* kt = k_transposed[block.b * p.heads_kv + block.kv_head].data();
    const float* v_head = v + head_offset(block.b, block.kv_head, p.heads_kv, nk, d);
    std::vector<double> scores(static_cast<size_t>(nk));
    std::vector<double> acc(d);
    for (int64_t i = block.row_begin; i < block.row_end; ++i) {
      const float* q_row = q + head_offset(block.b, block.h, p.heads_q, nq, d) + i * d;
      double* out_row = out + head_offset(block.b, block.h, p.heads_q, nq, d) + i * d;
      double* lse_row = lse ? lse + (block.b * p.heads_q + block.h) * nq + i : nullptr;
      const int64_t keys = allowed_keys(p, i);
      if (keys <= 0) {
        write_empty_row(out_row, lse_row, d);
        continue;
      }
      std::fill(scores.begin(), scores.begin() + keys, 0.0);
      for (int c = 0; c < d; ++c) {
        const double qc = q_row[c];
        const float* kt_row = kt + static_cast<int64_t>(c) * nk;
        for (int64_t j = 0; j < keys; ++j) scores[j] += qc * static_cast<double>(kt_row[j]);
      }
      double row_max = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < keys; ++j) {
        scores[j] *= p.sm_scale;
        row_max = std::max(row_max, scores[j]);
      }
      double row_sum = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < keys; ++j) {
        const double weight = std::exp(scores[j] - row_max);
        row_sum += weight;
        const float* v_row = v_head + j * d;
        for (int c = 0; c < d; ++c) acc[c] += weight * static_cast<double>(v_row[c]);
      }
      for (int c = 0; c < d; ++c) out_row[c] = acc[c] / row_sum;
      if (lse_row) *lse_row = row_max + std::log(row_sum);
    }
  });
}

// ---- Emulated pipeline -----------------------------------------------------------------------------

namespace {

// The rows the pre-pass quantizes: zero-padded to whole rotation blocks (the kernels' rows are
// padded to a multiple of 8 channels, whose padding stays zero until the blocks are rotated) and,
// with qk_rotation, rotated block by block (common/rotation.h).
int rotated_width(int head_dim) { return (head_dim + kRotationBlock - 1) / kRotationBlock * kRotationBlock; }

std::vector<float> rotated_rows(const float* x, int64_t rows, int head_dim, bool rotate) {
  const int width = rotated_width(head_dim);
  std::vector<float> out(static_cast<size_t>(rows) * width, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = out.data() + r * width;
    std::memcpy(row, x + r * head_dim, sizeof(float) * static_cast<size_t>(head_dim));
    for (int c = 0; rotate && c < width; c += kRotationBlock) {
      float block[kRotationBlock];
      std::memcpy(block, row + c, sizeof block);
      rotate_block8(block);
      std::memcpy(row + c, block, sizeof block);
    }
  }
  return out;
}

// Everything the emulation needs from one (batch, kv head), computed once and shared by its query heads.
struct EmulatedKv {
  std::vector<float> mean;          // [head_dim]; empty without smoothing
  std::vector<int8_t> k_transposed;  // [rotated_width, tokens] quantized rotated K'
  std::vector<float> k_scale;       // [tokens] scale of each token's group
  Fp8Values v_fp8;                  // FP8 P.V only: quantized V, its channel scales and mean
};

EmulatedKv prepare_kv(const float* k_head, const float* v_head, int64_t tokens, int head_dim,
                      sageattn_qk_granularity granularity, bool smooth_k, bool smooth_v, bool fp8_pv, bool rotate) {
  EmulatedKv kv;
  if (fp8_pv) kv.v_fp8 = quantize_v_fp8(v_head, tokens, head_dim, smooth_v);
  std::vector<float> rotated;
  if (smooth_k) {
    kv.mean = k_smoothing_mean(k_head, tokens, head_dim);
    const std::vector<float> smoothed = subtract_channel_mean(k_head, tokens, head_dim, kv.mean);
    rotated = rotated_rows(smoothed.data(), tokens, head_dim, rotate);
  } else {
    rotated = rotated_rows(k_head, tokens, head_dim, rotate);
  }
  const int width = rotated_width(head_dim);
  const QuantizedMatrix quantized = quantize_k(rotated.data(), tokens, width, granularity);
  kv.k_transposed = transpose(quantized.values.data(), tokens, width);
  kv.k_scale.resize(static_cast<size_t>(tokens));
  for (int64_t j = 0; j < tokens; ++j) kv.k_scale[j] = quantized.scale_of(j);
  return kv;
}

}  // namespace

void attention_emulated(const sageattn_reference_problem& p, sageattn_qk_granularity granularity, bool smooth_k,
                        bool smooth_v, sageattn_dtype pv_dtype, const float* q, const float* k, const float* v,
                        double* out, double* lse, const float* mask) {
  const bool fp8_pv = pv_dtype == SAGEATTN_DTYPE_E4M3;
  const bool rotate = p.qk_rotation != 0;
  if (smooth_v && !fp8_pv) throw std::invalid_argument("smooth_v is defined only for the E4M3 P.V");
  const int d = p.head_dim;
  const int64_t nq = p.seqlen_q, nk = p.seqlen_kv;
  // The kernel receives tau * log2(e) as one float constant (computed in double, then rounded).
  const float tau_log2e = static_cast<float>(p.sm_scale * kLog2e);

  std::vector<EmulatedKv> kv_heads(static_cast<size_t>(p.batch) * p.heads_kv);
  parallel_for(static_cast<int64_t>(kv_heads.size()), [&](int64_t item) {
    const int64_t b = item / p.heads_kv, h = item % p.heads_kv;
    const int64_t offset = head_offset(b, h, p.heads_kv, nk, d);
    kv_heads[item] = prepare_kv(k + offset, v + offset, nk, d, granularity, smooth_k, smooth_v, fp8_pv, rotate);
  });

  parallel_for(row_block_count(p), [&](int64_t item) {
    const RowBlock block = row_block_of(p, item);
    const EmulatedKv& kv = kv_heads[block.b * p.heads_kv + block.kv_head];
    const float* v_head = v + head_offset(block.b, block.kv_head, p.heads_kv, nk, d);
    const float* q_head = q + head_offset(block.b, block.h, p.heads_q, nq, d);
    // A Q block is exactly one 128-row quantization block, so quantizing it alone gives the same groups.
    const int64_t block_rows = block.row_end - block.row_begin;
    const int width = rotated_width(d);
    const std::vector<float> q_rotated = rotated_rows(q_head + block.row_begin * d, block_rows, d, rotate);
    const QuantizedMatrix q_block = quantize_q(q_rotated.data(), block_rows, width, granularity);

    std::vector<int32_t> dots(static_cast<size_t>(nk));
    std::vector<float> scores(static_cast<size_t>(nk));
    std::vector<double> acc(d);
    for (int64_t i = block.row_begin; i < block.row_end; ++i) {
      const int64_t local = i - block.row_begin;
      double* out_row = out + head_offset(block.b, block.h, p.heads_q, nq, d) + i * d;
      double* lse_row = lse ? lse + (block.b * p.heads_q + block.h) * nq + i : nullptr;
      const int64_t keys = allowed_keys(p, i);
      if (keys <= 0) {
        write_empty_row(out_row, lse_row, d);
        continue;
      }
      // Exact integer Q.K^T (|dot| <= 127^2 * head_dim fits int32 for any head_dim < 133000).
      std::fill(dots.begin(), dots.begin() + keys, 0);
      const int8_t* q_row = q_block.values.data() + local * width;
      for (int c = 0; c < width; ++c) {
        const int32_t qc = q_row[c];
        const int8_t* kt_row = kv.k_transposed.data() + static_cast<int64_t>(c) * nk;
        for (int64_t j = 0; j < keys; ++j) dots[j] += qc * static_cast<int32_t>(kt_row[j]);
      }
      // Dequantize exactly as the kernel does: q_factor once per row, q_factor * scale_k once per tile,
      // then one float multiply per score; the row max is taken over those float scores.
      // With the rotation the kernel stores Q's scale times kRotationScale (its factor 8).
      const float q_factor = rotate ? q_block.scale_of(local) * kRotationScale * tau_log2e
                                    : q_block.scale_of(local) * tau_log2e;
      const float* mask_row = mask ? mask + ((block.b * p.heads_q + block.h) * nq + i) * nk : nullptr;
      float row_max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < keys; ++j) {
        const float dequant = q_factor * kv.k_scale[j];
        scores[j] = static_cast<float>(dots[j]) * dequant;
        if (mask_row) scores[j] += mask_row[j] * static_cast<float>(kLog2e);
        row_max = std::max(row_max, scores[j]);
      }
      if (row_max == -std::numeric_limits<float>::infinity()) {  // the mask removed every key
        write_empty_row(out_row, lse_row, d);
        continue;
      }
      // Base-2 softmax in double; only P is rounded, to the dtype the tensor core consumes. The row sum
      // uses the unrounded P, as the kernel sums its float P before converting it. The FP8 path works
      // in P tilde = 448 * P (the E4M3 range), with l in the same units, and multiplies quantized V.
      const double p_unit = fp8_pv ? static_cast<double>(kE4m3Max) : 1.0;
      const float* pv_values = fp8_pv ? kv.v_fp8.values.data() : v_head;
      double row_sum = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < keys; ++j) {
        const double weight =
            std::exp2(static_cast<double>(scores[j]) - static_cast<double>(row_max)) * p_unit;
        row_sum += weight;
        const double rounded = round_to_dtype(static_cast<float>(weight), pv_dtype);
        const float* v_row = pv_values + j * d;
        for (int c = 0; c < d; ++c) acc[c] += rounded * static_cast<double>(v_row[c]);
      }
      if (fp8_pv) {
        const Fp8Values& vq = kv.v_fp8;
        for (int c = 0; c < d; ++c)
          out_row[c] = acc[c] / row_sum * static_cast<double>(vq.scales[c]) + static_cast<double>(vq.mean[c]);
      } else {
        for (int c = 0; c < d; ++c) out_row[c] = acc[c] / row_sum;
      }
      if (lse_row) {
        // Softmax is invariant to the per-row constant tau * q.mean that smoothing removed from the
        // scores, but the LSE is not: add it back using the unquantized q.
        double correction = 0.0;
        if (smooth_k) {
          const float* q_float = q_head + i * d;
          double dot = 0.0;
          for (int c = 0; c < d; ++c) dot += static_cast<double>(q_float[c]) * static_cast<double>(kv.mean[c]);
          correction = p.sm_scale * dot;
        }
        *lse_row = (static_cast<double>(row_max) + std::log2(row_sum / p_unit)) * kLn2 + correction;
      }
    }
  });
}

}  // namespace sageattn::reference
