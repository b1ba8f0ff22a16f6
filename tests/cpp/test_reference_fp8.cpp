// The FP8 (E4M3) P.V of the reference (docs/design/quantization.md, "FP8 P.V"): the E4M3 conversions
// against an independent table of the format (exhaustive round trips, every tie, saturation, NaN), the
// V quantization, a hand-computed case, the accuracy the FP8 path must show against exact attention
// (so that FP8 applied zero times or twice fails), V smoothing, masking, zero channels and extremes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <vector>

#include "common/tiling.h"
#include "reference/reference.h"
#include "test_reference_util.h"

namespace {

namespace ref = sageattn::reference;
using namespace sageattn_test;

constexpr sageattn_qk_granularity kPerThread = SAGEATTN_QK_GRANULARITY_PER_THREAD;
constexpr sageattn_qk_granularity kPerWarp = SAGEATTN_QK_GRANULARITY_PER_WARP;

// ---- An independent model of E4M3 -------------------------------------------------------------------

// The 127 finite non-negative E4M3 values in increasing order, built from the format's description
// (subnormals k * 2^-9, then (1 + m/8) * 2^(e - 7) for e = 1..15, without S.1111.111 which is NaN). The
// bit pattern of a non-negative value is its index here: the encoding is monotonic.
const std::vector<double>& e4m3_table() {
  static const std::vector<double> table = [] {
    std::vector<double> t;
    for (int k = 0; k < 8; ++k) t.push_back(k / 512.0);
    for (int e = 1; e <= 15; ++e)
      for (int m = 0; m < 8; ++m)
        if (!(e == 15 && m == 7)) t.push_back((1.0 + m / 8.0) * std::ldexp(1.0, e - 7));
    return t;
  }();
  return table;
}

bool e4m3_is_nan(uint8_t bits) { return (bits & 0x7Fu) == 0x7Fu; }

// Brute force: the nearest table entry, ties to the even bit pattern. Above 448 the nearest finite value
// is always 448, which is exactly what satfinite does (infinity included).
uint8_t nearest_e4m3(float x) {
  if (std::isnan(x)) return 0x7F;
  const std::vector<double>& t = e4m3_table();
  const double a = std::fabs(static_cast<double>(x));
  int best = 0;
  for (int i = 1; i < static_cast<int>(t.size()); ++i) {
    const double d = std::fabs(t[i] - a), best_d = std::fabs(t[best] - a);
    if (d < best_d || (d == best_d && i % 2 == 0)) best = i;
  }
  return static_cast<uint8_t>(best | (std::signbit(x) ? 0x80 : 0));
}

double e4m3_round(float x) {
  const uint8_t b = nearest_e4m3(x);
  const double mag = e4m3_table()[b & 0x7F];
  return (b & 0x80) ? -mag : mag;
}

// ---- Converters ----------------------------------------------------------------------------------------

TEST(E4m3, DecodesEveryBitPatternByTheFormula) {
  const std::vector<double>& t = e4m3_table();
  ASSERT_EQ(t.size(), 127u);
  EXPECT_EQ(t[0x38], 1.0);
  EXPECT_EQ(t[0x7E], 448.0);
  EXPECT_EQ(t[0x08], std::ldexp(1.0, -6));
  EXPECT_EQ(t[0x01], std::ldexp(1.0, -9));
  for (int b = 0; b < 256; ++b) {
    const float f = ref::e4m3_bits_to_float(static_cast<uint8_t>(b));
    if (e4m3_is_nan(static_cast<uint8_t>(b))) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << b;
      continue;
    }
    const double expected = (b & 0x80) ? -t[b & 0x7F] : t[b & 0x7F];
    ASSERT_EQ(static_cast<double>(f), expected) << std::hex << b;
    ASSERT_EQ(std::signbit(f), (b & 0x80) != 0) << std::hex << b;  // -0 included
  }
}

TEST(E4m3, RoundTripsEveryBitPattern) {
  for (int b = 0; b < 256; ++b) {
    const float f = ref::e4m3_bits_to_float(static_cast<uint8_t>(b));
    if (e4m3_is_nan(static_cast<uint8_t>(b))) {
      EXPECT_TRUE(e4m3_is_nan(ref::float_to_e4m3_bits(f))) << std::hex << b;
    } else {
      ASSERT_EQ(ref::float_to_e4m3_bits(f), b) << std::hex << b;
    }
  }
}

TEST(E4m3, EveryTieRoundsToEvenAndNeighboursRoundToNearest) {
  // Between consecutive finite values a < b the midpoint is exact in float.
  const std::vector<double>& t = e4m3_table();
  for (int i = 0; i + 1 < static_cast<int>(t.size()); ++i) {
    const float mid = static_cast<float>((t[i] + t[i + 1]) / 2);
    ASSERT_EQ(static_cast<double>(mid), (t[i] + t[i + 1]) / 2);
    const int even = (i % 2 == 0) ? i : i + 1;
    ASSERT_EQ(ref::float_to_e4m3_bits(mid), even) << i;
    ASSERT_EQ(ref::float_to_e4m3_bits(std::nextafter(mid, 0.0f)), i) << i;
    ASSERT_EQ(ref::float_to_e4m3_bits(std::nextafter(mid, 1e9f)), i + 1) << i;
    ASSERT_EQ(ref::float_to_e4m3_bits(-mid), even | 0x80) << i;
  }
}

TEST(E4m3, NamedTiesSaturationZeroAndNan) {
  const float inf = std::numeric_limits<float>::infinity();
  // Ties to even: 1.0625 between 1.0 (0x38) and 1.125 (0x39); 1.1875 between 1.125 and 1.25 (0x3A).
  EXPECT_EQ(ref::float_to_e4m3_bits(1.0625f), 0x38u);
  EXPECT_EQ(ref::float_to_e4m3_bits(1.1875f), 0x3Au);
  // Subnormals: 2^-10 is the tie between 0 and 2^-9 (even: 0); 3 * 2^-10 between 2^-9 and 2^-8 (even: 2^-8).
  EXPECT_EQ(ref::float_to_e4m3_bits(std::ldexp(1.0f, -10)), 0x00u);
  EXPECT_EQ(ref::float_to_e4m3_bits(std::nextafter(std::ldexp(1.0f, -10), 1.0f)), 0x01u);
  EXPECT_EQ(ref::float_to_e4m3_bits(std::ldexp(3.0f, -10)), 0x02u);
  EXPECT_EQ(ref::float_to_e4m3_bits(std::ldexp(1.0f, -9)), 0x01u);
  EXPECT_EQ(ref::float_to_e4m3_bits(std::numeric_limits<float>::denorm_min()), 0x00u);
  // The largest subnormal 7 * 2^-9 and the smallest normal 2^-6 tie at 15 * 2^-10: even is the normal.
  EXPECT_EQ(ref::float_to_e4m3_bits(std::ldexp(15.0f, -10)), 0x08u);
  // A mantissa carry into the exponent: just under 2 rounds to 2.
  EXPECT_EQ(ref::float_to_e4m3_bits(std::nextafter(2.0f, 0.0f)), 0x40u);
  // The top: 432 is the tie between 416 (0x7D) and 448 (0x7E); 464 is the tie between 448 and the
  // missing 480; everything above saturates to 448 (satfinite), infinity included.
  EXPECT_EQ(ref::float_to_e4m3_bits(432.0f), 0x7Eu);
  EXPECT_EQ(ref::float_to_e4m3_bits(std::nextafter(432.0f, 0.0f)), 0x7Du);
  EXPECT_EQ(ref::float_to_e4m3_bits(448.0f), 0x7Eu);
  EXPECT_EQ(ref::float_to_e4m3_bits(464.0f), 0x7Eu);
  EXPECT_EQ(ref::float_to_e4m3_bits(std::nextafter(464.0f, 1e9f)), 0x7Eu);
  for (float big : {500.0f, 1e6f, 6e4f, std::numeric_limits<float>::max(), inf}) {
    EXPECT_EQ(ref::float_to_e4m3_bits(big), 0x7Eu) << big;
    EXPECT_EQ(ref::float_to_e4m3_bits(-big), 0xFEu) << big;
  }
  EXPECT_EQ(ref::float_to_e4m3_bits(-464.0f), 0xFEu);
  EXPECT_EQ(ref::round_to_dtype(1e30f, SAGEATTN_DTYPE_E4M3), 448.0f);
  // Zero keeps its sign; tiny negatives round to -0.
  EXPECT_EQ(ref::float_to_e4m3_bits(0.0f), 0x00u);
  EXPECT_EQ(ref::float_to_e4m3_bits(-0.0f), 0x80u);
  EXPECT_EQ(ref::float_to_e4m3_bits(-std::ldexp(1.0f, -12)), 0x80u);
  EXPECT_TRUE(std::signbit(ref::round_to_dtype(-0.0f, SAGEATTN_DTYPE_E4M3)));
  // Negative side mirrors the positive one.
  EXPECT_EQ(ref::float_to_e4m3_bits(-1.0625f), 0xB8u);
  EXPECT_EQ(ref::float_to_e4m3_bits(-std::ldexp(3.0f, -10)), 0x82u);
  // NaN in, NaN out (quiet or signalling, either sign).
  EXPECT_TRUE(e4m3_is_nan(ref::float_to_e4m3_bits(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(e4m3_is_nan(ref::float_to_e4m3_bits(-std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(e4m3_is_nan(ref::float_to_e4m3_bits(std::numeric_limits<float>::signaling_NaN())));
  EXPECT_TRUE(std::isnan(ref::round_to_dtype(std::numeric_limits<float>::quiet_NaN(), SAGEATTN_DTYPE_E4M3)));
}

TEST(E4m3, MatchesBruteForceNearestOnRandomFloats) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> any_bits;
  for (int i = 0; i < 300000; ++i) {
    // Exponents 2^-14 .. 2^10 cover rounding to zero, subnormals, normals and saturation.
    uint32_t b = (any_bits(rng) & 0x807FFFFFu) | ((113u + any_bits(rng) % 25u) << 23);
    float x;
    std::memcpy(&x, &b, sizeof x);
    ASSERT_EQ(ref::float_to_e4m3_bits(x), nearest_e4m3(x)) << x;
    ASSERT_EQ(static_cast<double>(ref::round_to_dtype(x, SAGEATTN_DTYPE_E4M3)), e4m3_round(x)) << x;
  }
}

// ---- FP8 V quantization ---------------------------------------------------------------------------------

TEST(ReferenceFp8, QuantizeVFollowsTheDefinition) {
  const int tokens = 37, d = 6;
  std::mt19937 rng(12);
  std::vector<float> v = gaussian(static_cast<size_t>(tokens) * d, rng);
  for (int j = 0; j < tokens; ++j) {
    v[j * d + 1] = v[j * d + 1] * 3.0f + 5.0f;  // a biased channel
    v[j * d + 2] = 0.0f;                       // a zero channel
    v[j * d + 3] = 0.75f;                      // a constant channel (its float mean is exact)
    v[j * d + 4] *= 1e-32f;                    // below kMinQuantizableAmax: a zero channel too
  }
  for (bool smooth : {false, true}) {
    const ref::Fp8Values vq = ref::quantize_v_fp8(v.data(), tokens, d, smooth);
    ASSERT_EQ(vq.values.size(), static_cast<size_t>(tokens) * d);
    for (int c = 0; c < d; ++c) {
      float sum = 0.0f;
      for (int j = 0; j < tokens; ++j) sum += v[j * d + c];
      const float mean = smooth ? sum / static_cast<float>(tokens) : 0.0f;
      EXPECT_EQ(vq.mean[c], mean);
      float amax = 0.0f;
      for (int j = 0; j < tokens; ++j) amax = std::max(amax, std::fabs(v[j * d + c] - mean));
      const bool zero = amax < 1e-30f;
      EXPECT_EQ(vq.scales[c], zero ? 0.0f : amax / 448.0f) << c;
      const float inv = zero ? 0.0f : 448.0f / amax;
      float largest = 0.0f;
      for (int j = 0; j < tokens; ++j) {
        const float value = vq.values[j * d + c];
        ASSERT_EQ(static_cast<double>(value), e4m3_round((v[j * d + c] - mean) * inv)) << j << " " << c;
        largest = std::max(largest, std::fabs(value));
      }
      EXPECT_EQ(largest, zero ? 0.0f : 448.0f) << c;  // the channel's extreme lands on +-448
    }
    EXPECT_EQ(vq.scales[2], 0.0f);
    EXPECT_EQ(vq.scales[4], 0.0f);
    EXPECT_EQ(vq.scales[3] == 0.0f, smooth);  // the constant channel is all mean when smoothed
    EXPECT_EQ(vq.mean[3], smooth ? 0.75f : 0.0f);
  }
}

// From 512 keys on, the mean and the scale come from the K mean's sample (common/tiling.h): the scale
// maps 4 x the sample's max|V - vbar| to 448, unless an element of the head would then exceed 448,
// in which case every channel takes its exact maximum over all keys.
TEST(ReferenceFp8, QuantizeVScalesFromTheSample) {
  const int tokens = 3001, d = 5;
  ASSERT_EQ(sageattn::v_scale_margin(tokens), 4.0f);
  ASSERT_EQ(sageattn::v_scale_margin(511), 1.0f);
  std::mt19937 rng(21);
  const std::vector<float> gauss = gaussian(static_cast<size_t>(tokens) * d, rng);
  int sampled_key = -1, skipped_key = -1;
  for (int j = tokens / 2; j < tokens && (sampled_key < 0 || skipped_key < 0); ++j)
    (sageattn::k_mean_sampled(j, tokens) ? sampled_key : skipped_key) = j;
  ASSERT_GE(sampled_key, 0);
  ASSERT_GE(skipped_key, 0);
  // outlier_at: none, a key of the sample (its own maximum covers it), a key the sample skips.
  for (int outlier_at : {-1, sampled_key, skipped_key})
    for (bool smooth : {false, true}) {
      std::vector<float> v = gauss;
      for (int j = 0; j < tokens; ++j) v[j * d + 1] = v[j * d + 1] * 3.0f + 5.0f;  // a biased channel
      if (outlier_at >= 0)
        for (int c = 0; c < d; ++c) v[outlier_at * d + c] = 40.0f;
      const ref::Fp8Values vq = ref::quantize_v_fp8(v.data(), tokens, d, smooth);
      const std::vector<float> mean = smooth ? ref::k_smoothing_mean(v.data(), tokens, d) : std::vector<float>(d, 0.0f);
      std::vector<float> sampled(d, 0.0f), all(d, 0.0f);
      bool exact = false;  // a head-wide decision: some channel exceeds 4 x its sample's maximum
      for (int c = 0; c < d; ++c) {
        for (int j = 0; j < tokens; ++j) {
          const float centred = std::fabs(v[j * d + c] - mean[c]);
          all[c] = std::max(all[c], centred);
          if (sageattn::k_mean_sampled(j, tokens)) sampled[c] = std::max(sampled[c], centred);
        }
        exact = exact || all[c] > 4.0f * sampled[c];
      }
      // The Gaussian keys and a sampled outlier stay within the margin; the skipped one does not.
      ASSERT_EQ(exact, outlier_at == skipped_key) << outlier_at;
      for (int c = 0; c < d; ++c) {
        EXPECT_EQ(vq.mean[c], mean[c]);
        const float amax = exact ? all[c] : 4.0f * sampled[c];
        EXPECT_EQ(vq.scales[c], amax / 448.0f) << outlier_at << " " << smooth << " " << c;
        const float inv = 448.0f / amax;
        float largest = 0.0f;
        for (int j = 0; j < tokens; ++j) {
          const float value = vq.values[j * d + c];
          ASSERT_EQ(static_cast<double>(value), e4m3_round((v[j * d + c] - mean[c]) * inv)) << j << " " << c;
          largest = std::max(largest, std::fabs(value));
        }
        // The exact path puts the extreme on 448; the sample's scale puts the sample's extreme on 112.
        if (exact) EXPECT_EQ(largest, 448.0f) << c;
        else EXPECT_TRUE(largest >= 112.0f && largest <= 448.0f) << c << " " << largest;
      }
    }
}

// A channel that is zero at every sampled key but not elsewhere (a sparse channel) is not covered by
// the sample's scale (0): the head takes the exact path, so the values are kept, not zeroed.
TEST(ReferenceFp8, QuantizeVSparseChannelTakesTheExactPath) {
  const int tokens = 2500, d = 3;
  std::mt19937 rng(5);
  std::vector<float> v = gaussian(static_cast<size_t>(tokens) * d, rng);
  int skipped_key = -1;
  for (int j = 0; j < tokens; ++j) {
    v[j * d + 1] = 0.0f;  // sparse: nonzero at one key the sample skips
    v[j * d + 2] = 0.0f;  // zero everywhere
    if (skipped_key < 0 && j > 100 && !sageattn::k_mean_sampled(j, tokens)) skipped_key = j;
  }
  ASSERT_GE(skipped_key, 0);
  v[skipped_key * d + 1] = 0.5f;
  const ref::Fp8Values vq = ref::quantize_v_fp8(v.data(), tokens, d, false);
  float all = 0.0f;
  for (int j = 0; j < tokens; ++j) all = std::max(all, std::fabs(v[j * d]));
  EXPECT_EQ(vq.scales[0], all / 448.0f);  // the exact path for the whole head
  EXPECT_EQ(vq.scales[1], 0.5f / 448.0f);
  EXPECT_EQ(vq.values[skipped_key * d + 1], 448.0f);
  EXPECT_EQ(vq.scales[2], 0.0f);
  // Without the sparse key the sample's scale covers the head: 4 x its maxima.
  v[skipped_key * d + 1] = 0.0f;
  const ref::Fp8Values plain = ref::quantize_v_fp8(v.data(), tokens, d, false);
  EXPECT_EQ(plain.scales[1], 0.0f);
  EXPECT_GT(plain.scales[0], all / 448.0f);
}

// ---- The pipeline, hand-computed on one query and three keys ---------------------------------------

Result run_v2(const sageattn_reference_problem& p, const Inputs& in, sageattn_qk_granularity g, bool smooth_k,
              bool smooth_v, sageattn_dtype pv_dtype = SAGEATTN_DTYPE_E4M3) {
  Result r;
  r.out.assign(q_elements(p), NAN);
  r.lse.assign(lse_elements(p), NAN);
  EXPECT_EQ(sageattn_reference_emulated_v2(&p, g, smooth_k ? 1 : 0, smooth_v ? 1 : 0, pv_dtype, in.q.data(),
                                           in.k.data(), in.v.data(), r.out.data(), r.lse.data()),
            SAGEATTN_STATUS_OK);
  return r;
}

float amax_of(const std::vector<float>& x) {
  float a = 0.0f;
  for (float v : x) a = std::max(a, std::fabs(v));
  return a;
}

std::vector<int> int8_quantized(const std::vector<float>& x, float amax) {
  const float inv = 127.0f / amax;
  std::vector<int> q;
  for (float v : x) q.push_back(static_cast<int>(std::max(-127.0f, std::min(127.0f, static_cast<float>(std::rint(static_cast<double>(v) * inv))))));
  return q;
}

TEST(ReferenceFp8, HandComputedThreeKeys) {
  const int d = 5;
  const std::vector<float> q = {0.3f, -1.1f, 0.7f, 0.05f, 0.9f};
  const std::vector<std::vector<float>> k = {{0.5f, 0.1f, -0.3f, 0.2f, 0.6f},
                                             {-0.7f, 0.2f, 0.1f, 0.3f, -0.2f},
                                             {2.0f, -1.5f, 0.25f, -0.5f, 1.0f}};
  // Channel 3 is a zero channel; channel 4 has a large bias, where smoothing V matters.
  const std::vector<float> v = {1.0f,  2.3f, -0.37f, 0.0f, 10.1f,  //
                                -1.9f, 0.5f, 0.26f,  0.0f, 9.7f,   //
                                0.61f, 4.2f, -3.3f,  0.0f, 10.45f};
  auto p = make_problem(1, 1, 1, 1, 3, d, false);
  p.sm_scale = 0.375;
  Inputs in;
  in.q = q;
  for (const auto& row : k) in.k.insert(in.k.end(), row.begin(), row.end());
  in.v = v;
  for (bool smooth_v : {false, true}) {
    SCOPED_TRACE(testing::Message() << "smooth_v " << smooth_v);
    // Scores: per-thread groups put tokens 0 and 1 in one K group, token 2 in another (quantization.md).
    // Q and K rows are quantized after the Hadamard rotation (padded to 8 channels).
    const std::vector<float> qr = hadamard_rotated(q);
    const std::vector<std::vector<float>> kr = {hadamard_rotated(k[0]), hadamard_rotated(k[1]),
                                                hadamard_rotated(k[2])};
    const float amax01 = std::max(amax_of(kr[0]), amax_of(kr[1]));
    const float k_amax[3] = {amax01, amax01, amax_of(kr[2])};
    const float q_amax = amax_of(qr);
    const std::vector<int> qq = int8_quantized(qr, q_amax);
    const float q_factor =
        (q_amax / 127.0f) * kRotationScale * static_cast<float>(p.sm_scale * 1.4426950408889634);
    float x[3];
    for (int j = 0; j < 3; ++j) {
      const std::vector<int> kq = int8_quantized(kr[j], k_amax[j]);
      int s = 0;
      for (size_t c = 0; c < qr.size(); ++c) s += qq[c] * kq[c];
      x[j] = static_cast<float>(s) * (q_factor * (k_amax[j] / 127.0f));
    }
    const float m = std::max(x[0], std::max(x[1], x[2]));
    // P tilde in [0, 448] and l in the same units.
    double p_tilde[3], l = 0.0;
    for (int j = 0; j < 3; ++j) {
      const double scaled = std::exp2(static_cast<double>(x[j]) - m) * 448.0;
      l += scaled;
      p_tilde[j] = e4m3_round(static_cast<float>(scaled));
    }
    EXPECT_EQ(p_tilde[0] + p_tilde[1] + p_tilde[2] > 0, true);
    // V per channel: mean (float sum / 3), amax, inverse, E4M3 values.
    const Result r = run_v2(p, in, kPerThread, false, smooth_v);
    for (int c = 0; c < d; ++c) {
      const float mean = smooth_v ? (v[c] + v[d + c] + v[2 * d + c]) / 3.0f : 0.0f;
      float amax = 0.0f;
      for (int j = 0; j < 3; ++j) amax = std::max(amax, std::fabs(v[j * d + c] - mean));
      const float delta = amax > 0 ? amax / 448.0f : 0.0f;
      const float inv = amax > 0 ? 448.0f / amax : 0.0f;
      double acc = 0.0;
      for (int j = 0; j < 3; ++j) acc += p_tilde[j] * e4m3_round((v[j * d + c] - mean) * inv);
      const double expected = acc / l * delta + mean;
      EXPECT_NEAR(r.out[c], expected, 1e-15) << "channel " << c;
    }
    EXPECT_EQ(r.out[3], 0.0);  // the zero channel
    EXPECT_NEAR(r.lse[0], (m + std::log2(l / 448.0)) * std::log(2.0), 1e-14);
    // FP8 really was applied: the 16-bit pipeline gives another answer on the same scores.
    const Result fp16 = run_v2(p, in, kPerThread, false, false, SAGEATTN_DTYPE_FP16);
    EXPECT_GT(std::fabs(r.out[0] - fp16.out[0]), 1e-4);
    EXPECT_NEAR(r.lse[0], fp16.lse[0], 1e-14);  // the LSE does not depend on how P.V is done
  }
}

TEST(ReferenceFp8, SingleKeyIsExactWithVSmoothing) {
  // One key: P tilde = e4m3(448) = 448 = l. With smoothing V - mean = 0: zero channels, out = mean = v.
  const auto p = make_problem(1, 2, 1, 9, 1, 24, false);
  const Inputs in = gaussian_inputs(p, 13);
  const Result smooth = run_v2(p, in, kPerThread, true, true);
  const Result raw = run_v2(p, in, kPerThread, true, false);
  for (size_t row = 0; row < 18; ++row)
    for (int c = 0; c < 24; ++c) {
      EXPECT_EQ(smooth.out[row * 24 + c], in.v[c]);
      // Without smoothing v is quantized to +-448 and back: exact up to the float scale's rounding.
      EXPECT_NEAR(raw.out[row * 24 + c], in.v[c], 1e-6 * std::fabs(in.v[c]));
    }
}

// ---- Accuracy against exact attention ----------------------------------------------------------------

TEST(ReferenceFp8, GaussianErrorIsThatOfFp8) {
  // design.md section 5: E4M3 for both P and V costs ~3e-2 relative L1 on Gaussian data (tiny outputs),
  // about three times the INT8 + fp16 error (measured here: 3.7e-2 against 1.07e-2). The range is tight
  // on purpose: E4M3 on P alone or on V alone gives 2.8e-2 / 2.7e-2, no FP8 1.1e-2, a doubled scale far more.
  const auto p = make_problem(1, 4, 4, 1024, 1024, 128, false);
  const Inputs in = gaussian_inputs(p, 14);
  const Result exact = run_exact(p, in);
  const Result fp8 = run_v2(p, in, kPerThread, true, false);
  const Result fp16 = run_v2(p, in, kPerThread, true, false, SAGEATTN_DTYPE_FP16);
  const double err = relative_l1(fp8.out, exact.out);
  const double err16 = relative_l1(fp16.out, exact.out);
  std::cout << "[ fp8 gaussian ] rel L1 fp8 " << err << ", fp16 " << err16 << "\n";
  EXPECT_TRUE(all_finite(fp8.out));
  EXPECT_GT(err, 3.0e-2);
  EXPECT_LT(err, 4.5e-2);
  EXPECT_GT(err, 2.0 * err16);
  // m and l are those of the 16-bit path (l merely in units of 1/448).
  EXPECT_LT(max_abs_diff(fp8.lse, fp16.lse), 1e-12);
  EXPECT_LT(max_abs_diff(fp8.lse, exact.lse), 1e-2);
}

TEST(ReferenceFp8, VSmoothingRemovesVChannelBias) {
  // K bias x8 (handled by K smoothing) and V bias x2: unsmoothed, the bias takes V's E4M3 range and the
  // per-key roundings of P tilde weigh the bias; smoothed, only the small centred part is quantized and
  // the bias returns exactly through + vbar.
  const auto p = make_problem(1, 4, 4, 1024, 1024, 128, false);
  std::mt19937 rng(15);
  Inputs in = gaussian_inputs(p, 16);
  add_channel_bias(in.k, 128, 8.0f, rng);
  add_channel_bias(in.v, 128, 2.0f, rng);
  const Result exact = run_exact(p, in);
  const Result smooth = run_v2(p, in, kPerThread, true, true);
  const Result raw = run_v2(p, in, kPerThread, true, false);
  const double err_smooth = relative_l1(smooth.out, exact.out);
  const double err_raw = relative_l1(raw.out, exact.out);
  std::cout << "[ fp8 bias ] rel L1 smooth_v " << err_smooth << ", no smooth_v " << err_raw << "\n";
  EXPECT_LT(err_smooth, 5e-3);
  EXPECT_GT(err_smooth, 1e-4);  // still quantized
  EXPECT_LT(err_smooth * 1.5, err_raw);
}

// ---- Masking, zero channels, extremes ----------------------------------------------------------------

TEST(ReferenceFp8, FullyMaskedRowsOutputZeroNotTheMean) {
  // Causal with Nq > Nk: the first Nq - Nk rows see no key. Their output is 0 even though vbar != 0.
  const int nq = 70, nk = 20, d = 16;
  const auto p = make_problem(1, 2, 1, nq, nk, d, true);
  std::mt19937 rng(17);
  Inputs in = gaussian_inputs(p, 18);
  add_channel_bias(in.v, d, 3.0f, rng);
  for (bool smooth_v : {false, true}) {
    const Result r = run_v2(p, in, kPerWarp, true, smooth_v);
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < nq; ++i) {
        const size_t row = static_cast<size_t>(h) * nq + i;
        if (i < nq - nk) {
          EXPECT_TRUE(std::isinf(r.lse[row]) && r.lse[row] < 0) << row;
          for (int c = 0; c < d; ++c) ASSERT_EQ(r.out[row * d + c], 0.0) << row;
        } else {
          EXPECT_TRUE(std::isfinite(r.lse[row])) << row;
        }
      }
    EXPECT_TRUE(all_finite(r.out));
    // Row nq - nk sees exactly key 0: P tilde = 448 = l, so its output is vbar + E4M3(v0 - vbar) in the
    // channel's scale, within 2^-4 of |v0 - vbar| (3 mantissa bits).
    const std::vector<float> mean =
        smooth_v ? ref::k_smoothing_mean(in.v.data(), nk, d) : std::vector<float>(d, 0.0f);
    for (int c = 0; c < d; ++c) {
      const double centred = static_cast<double>(in.v[c]) - mean[c];
      EXPECT_NEAR(r.out[(nq - nk) * d + c], in.v[c], std::fabs(centred) / 16 + 1e-6) << c;
    }
  }
}

TEST(ReferenceFp8, ZeroAndConstantVChannels) {
  // A zero channel has delta 0 and outputs exactly 0 (its vbar); a constant channel whose float mean is
  // exact becomes a zero channel under smoothing and outputs exactly that constant.
  const int n = 96, d = 32;
  const auto p = make_problem(1, 2, 1, n, n, d, true);
  Inputs in = gaussian_inputs(p, 19);
  for (int j = 0; j < n; ++j) {
    in.v[j * d + 7] = 0.0f;
    in.v[j * d + 9] = 0.75f;
  }
  for (bool smooth_v : {false, true}) {
    const Result r = run_v2(p, in, kPerThread, true, smooth_v);
    EXPECT_TRUE(all_finite(r.out));
    for (int row = 0; row < 2 * n; ++row) {
      ASSERT_EQ(r.out[row * d + 7], 0.0) << row;
      if (smooth_v) ASSERT_EQ(r.out[row * d + 9], 0.75) << row;
    }
  }
  // All-zero V: every channel is a zero channel.
  Inputs zeros = in;
  std::fill(zeros.v.begin(), zeros.v.end(), 0.0f);
  for (bool smooth_v : {false, true}) {
    const Result z = run_v2(p, zeros, kPerThread, true, smooth_v);
    for (double o : z.out) ASSERT_EQ(o, 0.0);
  }
}

TEST(ReferenceFp8, HugeMagnitudesStayFinite) {
  // fp16-range extremes (|x| up to 6e4), exact extremes, a constant K row and a constant V channel.
  const int d = 32;
  const auto p = make_problem(1, 2, 1, 70, 90, d, true);
  Inputs in = gaussian_inputs(p, 20);
  for (auto* x : {&in.q, &in.k, &in.v})
    for (float& v : *x) v = std::max(-6e4f, std::min(6e4f, v * 2e4f));
  in.q[0] = 6e4f;
  in.k[5] = -6e4f;
  in.v[9] = 6e4f;
  in.v[d + 9] = -6e4f;
  std::fill(in.k.begin() + d * 10, in.k.begin() + d * 11, 6e4f);
  for (int j = 0; j < 90; ++j) in.v[j * d + 3] = -6e4f;
  for (auto g : {kPerThread, kPerWarp})
    for (bool smooth_k : {false, true})
      for (bool smooth_v : {false, true}) {
        const Result r = run_v2(p, in, g, smooth_k, smooth_v);
        EXPECT_TRUE(all_finite(r.out));
        EXPECT_TRUE(all_finite(r.lse));
        // Smoothed, the constant channel is a zero channel whose exact mean comes back.
        if (smooth_v)
          for (int row = 0; row < 140; ++row) ASSERT_EQ(r.out[row * d + 3], -6e4) << row;
      }
}

// ---- C ABI ---------------------------------------------------------------------------------------------------

TEST(ReferenceFp8, CApiAcceptsE4m3OnlyInV2) {
  const auto p = make_problem(1, 2, 1, 9, 11, 8, true);
  const Inputs in = gaussian_inputs(p, 21);
  std::vector<double> out(q_elements(p), -7.0), lse(lse_elements(p), -7.0);
  auto v2 = [&](int32_t g, int32_t smooth_k, int32_t smooth_v, int32_t dtype) {
    return sageattn_reference_emulated_v2(&p, g, smooth_k, smooth_v, dtype, in.q.data(), in.k.data(),
                                          in.v.data(), out.data(), lse.data());
  };
  constexpr auto kInvalid = SAGEATTN_STATUS_INVALID_ARGUMENT;
  EXPECT_EQ(v2(kPerThread, 1, 2, SAGEATTN_DTYPE_E4M3), kInvalid);
  EXPECT_EQ(v2(kPerThread, 1, -1, SAGEATTN_DTYPE_E4M3), kInvalid);
  EXPECT_EQ(v2(kPerThread, 1, 1, SAGEATTN_DTYPE_FP16), kInvalid);  // V smoothing needs the FP8 P.V
  EXPECT_EQ(v2(kPerThread, 1, 1, SAGEATTN_DTYPE_BF16), kInvalid);
  EXPECT_EQ(v2(kPerThread, 1, 0, 3), kInvalid);
  EXPECT_EQ(v2(kPerThread, 1, 0, -1), kInvalid);
  EXPECT_EQ(v2(kPerThread, 2, 0, SAGEATTN_DTYPE_E4M3), kInvalid);
  EXPECT_EQ(v2(2, 1, 0, SAGEATTN_DTYPE_E4M3), kInvalid);
  // The original entry point keeps its 16-bit-only contract.
  EXPECT_EQ(sageattn_reference_emulated(&p, kPerThread, 1, SAGEATTN_DTYPE_E4M3, in.q.data(), in.k.data(),
                                        in.v.data(), out.data(), lse.data()),
            kInvalid);
  for (double o : out) ASSERT_EQ(o, -7.0);
  for (double l : lse) ASSERT_EQ(l, -7.0);
  EXPECT_EQ(v2(kPerThread, 1, 1, SAGEATTN_DTYPE_E4M3), SAGEATTN_STATUS_OK);
  EXPECT_EQ(sageattn_reference_emulated_v2(&p, kPerWarp, 0, 0, SAGEATTN_DTYPE_E4M3, in.q.data(), in.k.data(),
                                           in.v.data(), out.data(), nullptr),
            SAGEATTN_STATUS_OK);
  // With a 16-bit P.V the two entry points are the same function.
  for (sageattn_dtype dtype : {SAGEATTN_DTYPE_FP16, SAGEATTN_DTYPE_BF16}) {
    const Result a = run_v2(p, in, kPerThread, true, false, dtype);
    const Result b = run_emulated(p, in, kPerThread, true, dtype);
    EXPECT_EQ(a.out, b.out);
    EXPECT_EQ(a.lse, b.lse);
  }
}

}  // namespace
