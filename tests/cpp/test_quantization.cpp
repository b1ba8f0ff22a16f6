// The INT8 quantization pieces of the reference against docs/design/quantization.md, checked directly:
// which rows share a scale, the scale and rounding definitions, zero groups, saturation, K smoothing.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/rotation.h"
#include "reference/reference.h"
#include "int8_near_ties.h"
#include "test_reference_util.h"

namespace {

namespace ref = sageattn::reference;
using sageattn_test::gaussian;

constexpr sageattn_qk_granularity kPerThread = SAGEATTN_QK_GRANULARITY_PER_THREAD;
constexpr sageattn_qk_granularity kPerWarp = SAGEATTN_QK_GRANULARITY_PER_WARP;

// The group tables of quantization.md, written out independently of the reference's layout functions.
int64_t expected_q_group(int64_t r, sageattn_qk_granularity g) {
  const int64_t block = r / 128, in_block = r % 128, warp = in_block / 32;
  return g == kPerThread ? block * 32 + warp * 8 + in_block % 8 : block * 4 + warp;
}
int64_t expected_k_group(int64_t t, sageattn_qk_granularity g) {
  const int64_t block = t / 64, in_block = t % 64;
  return g == kPerThread ? block * 4 + (in_block % 8) / 2 : block;
}

enum class Operand { kQ, kK };

ref::QuantizedMatrix quantize(Operand op, const std::vector<float>& x, int64_t rows, int d,
                              sageattn_qk_granularity g) {
  return op == Operand::kQ ? ref::quantize_q(x.data(), rows, d, g) : ref::quantize_k(x.data(), rows, d, g);
}
int64_t expected_group(Operand op, int64_t row, sageattn_qk_granularity g) {
  return op == Operand::kQ ? expected_q_group(row, g) : expected_k_group(row, g);
}

struct Case {
  Operand op;
  sageattn_qk_granularity granularity;
};
std::string case_name(const testing::TestParamInfo<Case>& info) {
  return std::string(info.param.op == Operand::kQ ? "Q" : "K") +
         (info.param.granularity == kPerThread ? "PerThread" : "PerWarp");
}

class GroupTest : public testing::TestWithParam<Case> {};

TEST_P(GroupTest, LayoutMatchesTable) {
  const Case c = GetParam();
  const ref::GroupLayout layout =
      c.op == Operand::kQ ? ref::q_group_layout(c.granularity) : ref::k_group_layout(c.granularity);
  EXPECT_EQ(layout.block_rows, c.op == Operand::kQ ? 128 : 64);
  EXPECT_EQ(layout.groups_per_block, c.op == Operand::kQ ? (c.granularity == kPerThread ? 32 : 4)
                                                         : (c.granularity == kPerThread ? 4 : 1));
  std::vector<int> members(static_cast<size_t>(ref::num_groups(layout, 1000)), 0);
  for (int64_t r = 0; r < 1000; ++r) {
    ASSERT_EQ(ref::group_of_row(layout, r), expected_group(c.op, r, c.granularity)) << "row " << r;
    ++members[static_cast<size_t>(ref::group_of_row(layout, r))];
  }
  // Full blocks: every group has block_rows / groups_per_block members.
  const int64_t full_groups = 1000 / layout.block_rows * layout.groups_per_block;
  for (int64_t g = 0; g < full_groups; ++g) EXPECT_EQ(members[g], layout.block_rows / layout.groups_per_block);
}

TEST_P(GroupTest, ChangingOneElementChangesExactlyItsGroupScale) {
  const Case c = GetParam();
  const int64_t rows = 301;  // a tail block in both Q (128) and K (64) tilings
  const int d = 24;
  std::mt19937 rng(42);
  const std::vector<float> base = gaussian(static_cast<size_t>(rows) * d, rng);
  const ref::QuantizedMatrix before = quantize(c.op, base, rows, d, c.granularity);
  for (int64_t r = 0; r < rows; r += 3) {
    std::vector<float> x = base;
    x[r * d + (r * 5) % d] = 100.0f;  // larger than any Gaussian sample: its group's amax must move
    const ref::QuantizedMatrix after = quantize(c.op, x, rows, d, c.granularity);
    ASSERT_EQ(after.scales.size(), before.scales.size());
    for (size_t g = 0; g < after.scales.size(); ++g) {
      if (static_cast<int64_t>(g) == expected_group(c.op, r, c.granularity)) {
        EXPECT_EQ(after.scales[g], 100.0f / 127.0f) << "row " << r;
      } else {
        EXPECT_EQ(after.scales[g], before.scales[g]) << "row " << r << " changed group " << g;
      }
    }
  }
}

TEST_P(GroupTest, ZeroGroupsGiveZeroScaleAndValues) {
  const Case c = GetParam();
  const int64_t rows = 200;
  const int d = 16;
  std::mt19937 rng(1);
  std::vector<float> x = gaussian(static_cast<size_t>(rows) * d, rng);
  // Zero every row of even-numbered groups; odd groups keep their data.
  for (int64_t r = 0; r < rows; ++r)
    if (expected_group(c.op, r, c.granularity) % 2 == 0)
      for (int k = 0; k < d; ++k) x[r * d + k] = 0.0f;
  const ref::QuantizedMatrix q = quantize(c.op, x, rows, d, c.granularity);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g = expected_group(c.op, r, c.granularity);
    const float s = q.scales[static_cast<size_t>(g)];
    ASSERT_FALSE(std::isnan(s));
    if (g % 2 == 0) {
      EXPECT_EQ(s, 0.0f);
      for (int k = 0; k < d; ++k) EXPECT_EQ(q.values[r * d + k], 0);
    } else {
      EXPECT_GT(s, 0.0f);
    }
  }
  // Groups entirely past the last row (tail padding) are zero groups too.
  const std::vector<float> zeros(static_cast<size_t>(rows) * d, 0.0f);
  const ref::QuantizedMatrix z = quantize(c.op, zeros, rows, d, c.granularity);
  for (float s : z.scales) EXPECT_EQ(s, 0.0f);
  for (int8_t v : z.values) EXPECT_EQ(v, 0);
}

TEST_P(GroupTest, GroupMaximumSaturatesAndAllValuesStayInRange) {
  const Case c = GetParam();
  const int64_t rows = 257;
  const int d = 40;
  std::mt19937 rng(2);
  std::vector<float> x = gaussian(static_cast<size_t>(rows) * d, rng, 3.0f);
  const ref::QuantizedMatrix q = quantize(c.op, x, rows, d, c.granularity);
  std::vector<float> amax(q.scales.size(), 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int k = 0; k < d; ++k) {
      float& a = amax[static_cast<size_t>(expected_group(c.op, r, c.granularity))];
      a = std::max(a, std::fabs(x[r * d + k]));
    }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g = expected_group(c.op, r, c.granularity);
    // The definition, bit for bit.
    ASSERT_EQ(q.scales[static_cast<size_t>(g)], amax[static_cast<size_t>(g)] / 127.0f);
    for (int k = 0; k < d; ++k) {
      const float v = x[r * d + k];
      const int8_t qv = q.values[r * d + k];
      ASSERT_GE(qv, -127);
      ASSERT_LE(qv, 127);
      if (std::fabs(v) == amax[static_cast<size_t>(g)]) {
        EXPECT_EQ(qv, v > 0 ? 127 : -127);
      }
      // Round to nearest: the dequantized value is within half a step (plus float slack).
      const float step = q.scales[static_cast<size_t>(g)];
      EXPECT_LE(std::fabs(v - qv * step), 0.5f * step * (1.0f + 1e-5f));
    }
  }
}

TEST_P(GroupTest, TailEqualsExplicitZeroPadding) {
  // The GPU quantizes whole blocks with zero padding rows; the reference stores only valid rows. Both
  // must agree on every value and scale.
  const Case c = GetParam();
  const int64_t rows = 77;
  const int d = 8;
  const int64_t block = c.op == Operand::kQ ? 128 : 64;
  const int64_t padded_rows = (rows + block - 1) / block * block;
  std::mt19937 rng(5);
  std::vector<float> x = gaussian(static_cast<size_t>(rows) * d, rng);
  std::vector<float> padded = x;
  padded.resize(static_cast<size_t>(padded_rows) * d, 0.0f);
  const ref::QuantizedMatrix a = quantize(c.op, x, rows, d, c.granularity);
  const ref::QuantizedMatrix b = quantize(c.op, padded, padded_rows, d, c.granularity);
  EXPECT_EQ(a.scales, b.scales);
  EXPECT_TRUE(std::equal(a.values.begin(), a.values.end(), b.values.begin()));
}

INSTANTIATE_TEST_SUITE_P(All, GroupTest,
                         testing::Values(Case{Operand::kQ, kPerThread}, Case{Operand::kQ, kPerWarp},
                                         Case{Operand::kK, kPerThread}, Case{Operand::kK, kPerWarp}),
                         case_name);

TEST(Quantization, PerWarpScaleIsTheMaxOfItsPerThreadScales) {
  std::mt19937 rng(8);
  const int d = 32;
  for (Operand op : {Operand::kQ, Operand::kK}) {
    const int64_t rows = 333;
    std::vector<float> x = gaussian(static_cast<size_t>(rows) * d, rng);
    // Rows of very different magnitudes, so per-thread scales really differ inside a warp group.
    for (int64_t r = 0; r < rows; ++r)
      for (int k = 0; k < d; ++k) x[r * d + k] *= std::ldexp(1.0f, static_cast<int>(r % 7) - 3);
    const ref::QuantizedMatrix fine = quantize(op, x, rows, d, kPerThread);
    const ref::QuantizedMatrix coarse = quantize(op, x, rows, d, kPerWarp);
    std::vector<float> max_fine(coarse.scales.size(), 0.0f);
    bool some_strictly_smaller = false;
    for (int64_t r = 0; r < rows; ++r) {
      const float s_fine = fine.scale_of(r), s_coarse = coarse.scale_of(r);
      EXPECT_GE(s_coarse, s_fine);
      some_strictly_smaller |= s_fine < s_coarse;
      float& m = max_fine[static_cast<size_t>(coarse.group_of(r))];
      m = std::max(m, s_fine);
    }
    EXPECT_TRUE(some_strictly_smaller);
    // amax of a union is the max of the amaxes, and x / 127 is monotonic: equality holds exactly.
    EXPECT_EQ(max_fine, coarse.scales);
  }
}

TEST(Quantization, KernelScaleLayoutRepeatsPerWarpScales) {
  // The kernels index scales by per-thread group in both granularities. Tails included: K has 70
  // tokens, so its second block has valid tokens only in per-thread groups 0..2.
  std::mt19937 rng(13);
  const int d = 16;
  for (Operand op : {Operand::kQ, Operand::kK}) {
    const int64_t rows = op == Operand::kQ ? 150 : 70;
    const std::vector<float> x = gaussian(static_cast<size_t>(rows) * d, rng);
    const ref::GroupLayout kernel =
        op == Operand::kQ ? ref::q_group_layout(kPerThread) : ref::k_group_layout(kPerThread);
    const ref::QuantizedMatrix fine = quantize(op, x, rows, d, kPerThread);
    EXPECT_EQ(ref::scales_in_kernel_layout(fine, kernel), fine.scales);
    const ref::QuantizedMatrix coarse = quantize(op, x, rows, d, kPerWarp);
    const std::vector<float> expanded = ref::scales_in_kernel_layout(coarse, kernel);
    ASSERT_EQ(expanded.size(), fine.scales.size());
    const int64_t block = op == Operand::kQ ? 128 : 64;
    const int64_t per_thread_groups = op == Operand::kQ ? 32 : 4;
    for (size_t g = 0; g < expanded.size(); ++g) {
      const int64_t b = static_cast<int64_t>(g) / per_thread_groups;
      const int64_t in_block = static_cast<int64_t>(g) % per_thread_groups;
      // Per-warp group of this per-thread group: its warp slice (Q: 8 groups per slice) or its block (K).
      const int64_t coarse_group = op == Operand::kQ ? b * 4 + in_block / 8 : b;
      EXPECT_EQ(expanded[g], coarse.scales[static_cast<size_t>(coarse_group)]) << "group " << g;
      // Every per-warp group with a valid row has a non-zero scale, repeated even over per-thread
      // groups that hold only padding (here the last K block's group 3).
      const int64_t first_row = op == Operand::kQ ? b * block + (in_block / 8) * 32 : b * block;
      if (first_row < rows) {
        EXPECT_GT(expanded[g], 0.0f) << "group " << g;
      } else {
        EXPECT_EQ(expanded[g], 0.0f) << "group " << g;
      }
    }
    if (op == Operand::kK) {
      EXPECT_EQ(fine.scales[7], 0.0f);  // the padding-only per-thread group of the last K block
    }
  }
}

TEST(Quantization, RoundsHalfToEven) {
  const float one = ref::int8_inverse_scale(127.0f);  // exactly 1, so x * inv == x
  ASSERT_EQ(one, 1.0f);
  const std::vector<std::pair<float, int>> cases = {
      {0.5f, 0},    {1.5f, 2},     {2.5f, 2},     {3.5f, 4},   {-0.5f, 0},   {-1.5f, -2},
      {-2.5f, -2},  {126.5f, 126}, {125.5f, 126}, {0.49999997f, 0}, {0.50000006f, 1}, {-126.5f, -126},
      {127.0f, 127}, {127.5f, 127}, {1e6f, 127},   {-1e6f, -127}, {-127.5f, -127}};
  for (const auto& [x, expected] : cases) EXPECT_EQ(ref::quantize_int8(x, one), expected) << "x = " << x;
  // And through a whole group: amax 127 makes the inverse scale exactly 1.
  const std::vector<float> row = {127.0f, 0.5f, 1.5f, 2.5f, -2.5f, -3.5f, 64.5f, -127.0f};
  const ref::QuantizedMatrix q = ref::quantize_q(row.data(), 1, 8, kPerThread);
  const std::vector<int8_t> expected = {127, 0, 2, 2, -2, -4, 64, -127};
  EXPECT_EQ(q.values, expected);
  EXPECT_EQ(q.scales[0], 1.0f);
}

// x * inv rounds as the exact product (docs/design/quantization.md): where rounding the product to
// float first lands on the other side of a half-integer, the exact product decides. The products
// near half-integers must include such cases, so the test cannot pass without them.
TEST(Quantization, RoundsTheExactProductNotTheFloatProduct) {
  int differ = 0;
  for (const auto& [x, inv] : sageattn_test::int8_near_ties(22, 20000)) {
    EXPECT_EQ(ref::quantize_int8(x, inv), static_cast<int>(std::rint(static_cast<double>(x) * inv)))
        << "x = " << x << ", inv = " << inv;
    differ += sageattn_test::float_product_rounds_otherwise(x, inv);
  }
  EXPECT_GE(differ, 100) << "too few products on which the two roundings differ";
}

TEST(Quantization, ScaleAndInverseDefinitions) {
  EXPECT_EQ(ref::int8_scale(0.0f), 0.0f);
  EXPECT_EQ(ref::int8_inverse_scale(0.0f), 0.0f);
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(1e-6f, 6e4f);
  for (int i = 0; i < 1000; ++i) {
    const float a = dist(rng);
    EXPECT_EQ(ref::int8_scale(a), a / 127.0f);
    EXPECT_EQ(ref::int8_inverse_scale(a), 127.0f / a);
    // The group maximum lands on 127 despite the rounding of 127 / amax.
    EXPECT_EQ(ref::quantize_int8(a, ref::int8_inverse_scale(a)), 127);
    EXPECT_EQ(ref::quantize_int8(-a, ref::int8_inverse_scale(a)), -127);
  }
}

TEST(Quantization, HugeAndTinyMagnitudesStayFinite) {
  const int d = 16;
  const int64_t rows = 130;
  std::mt19937 rng(10);
  std::vector<float> x = gaussian(static_cast<size_t>(rows) * d, rng, 2e4f);
  for (float& v : x) v = std::max(-6e4f, std::min(6e4f, v));
  x[3] = 6e4f;
  x[50] = -6e4f;
  x[70] = 1e-7f;  // fp16 subnormal range next to huge values
  for (auto g : {kPerThread, kPerWarp}) {
    for (Operand op : {Operand::kQ, Operand::kK}) {
      const ref::QuantizedMatrix q = quantize(op, x, rows, d, g);
      for (float s : q.scales) {
        EXPECT_TRUE(std::isfinite(s));
        EXPECT_LE(s, 6e4f / 127.0f);
      }
    }
  }
  // A group whose amax is so small that 127 / amax would overflow (bf16 or float32 inputs only) is a
  // zero group: scale 0, inverse 0, every element 0 (never 0 * inf = NaN, never a saturated 127).
  for (float tiny : {1e-38f, 1e-31f}) {
    EXPECT_EQ(ref::int8_inverse_scale(tiny), 0.0f);
    EXPECT_EQ(ref::int8_scale(tiny), 0.0f);
    std::vector<float> group(static_cast<size_t>(rows) * d, 0.0f);
    group[5] = tiny;
    group[6] = -tiny / 2;
    const ref::QuantizedMatrix q = quantize(Operand::kQ, group, rows, d, kPerThread);
    for (int8_t value : q.values) EXPECT_EQ(value, 0);
    for (float s : q.scales) EXPECT_EQ(s, 0.0f);
  }
  // Just above the threshold the group quantizes normally.
  EXPECT_GT(ref::int8_inverse_scale(2e-30f), 0.0f);
  EXPECT_EQ(ref::quantize_int8(2e-30f, ref::int8_inverse_scale(2e-30f)), 127);
}

TEST(Quantization, KMeanIsFloatSumThenDivide) {
  const int d = 12;
  const int64_t tokens = 1001;
  std::mt19937 rng(12);
  std::vector<float> k = gaussian(static_cast<size_t>(tokens) * d, rng);
  sageattn_test::add_channel_bias(k, d, 10.0f, rng);
  const std::vector<float> mean = ref::k_channel_mean(k.data(), tokens, d);
  for (int c = 0; c < d; ++c) {
    float sum = 0.0f;
    for (int64_t j = 0; j < tokens; ++j) sum += k[j * d + c];
    const float expected = sum / static_cast<float>(tokens);
    EXPECT_EQ(mean[c], expected) << "channel " << c;
    // Sanity against double: the float sum is close but (generally) not exact.
    double exact = 0.0;
    for (int64_t j = 0; j < tokens; ++j) exact += k[j * d + c];
    EXPECT_NEAR(mean[c], exact / tokens, 1e-4 * (1.0 + std::fabs(exact / tokens)));
  }
  const std::vector<float> smoothed = ref::subtract_channel_mean(k.data(), tokens, d, mean);
  for (int64_t j = 0; j < tokens; ++j)
    for (int c = 0; c < d; ++c) ASSERT_EQ(smoothed[j * d + c], k[j * d + c] - mean[c]);
}

// K smoothing's mean from a sample (common/tiling.h, docs/design/quantization.md): one key per
// aligned group of 1, 2, 4 or 8 keys (from 512, 1024, 2048 keys), at a hashed position, so that at
// least 256 keys are averaged.
TEST(Quantization, KSmoothingMeanSamplesOneKeyPerGroupOfAtLeast256) {
  const int expected_stride[][2] = {{0, 1},      {1, 1},      {7, 1},      {511, 1},    {512, 2},   {513, 2},
                                    {1023, 2},   {1024, 4},   {1031, 4},   {2047, 4},   {2048, 8},  {2049, 8},
                                    {2055, 8},   {4099, 8},   {8191, 8},   {8192, 8},   {100003, 8}};
  for (const auto& [keys, stride] : expected_stride) {
    ASSERT_EQ(sageattn::k_mean_sample_stride(keys), stride) << keys << " keys";
    int sampled = 0;
    for (int j = 0; j < keys; ++j) sampled += sageattn::k_mean_sampled(j, keys) ? 1 : 0;
    EXPECT_EQ(sampled, sageattn::k_mean_sample_count(keys)) << keys << " keys";
    EXPECT_EQ(sageattn::k_mean_samples_all(keys), stride == 1) << keys << " keys";
    if (stride == 1) EXPECT_EQ(sampled, keys);
    if (stride > 1) EXPECT_GE(sampled, sageattn::kKMeanMinSamples) << keys << " keys";
    EXPECT_GE(sampled, keys / stride);
    EXPECT_LE(sampled, keys / stride + 1);
    for (int group = 0; group < keys / stride; ++group) {  // exactly one per whole group
      int in_group = 0;
      for (int j = stride * group; j < stride * group + stride; ++j) in_group += sageattn::k_mean_sampled(j, keys) ? 1 : 0;
      ASSERT_EQ(in_group, 1) << keys << " keys, group " << group;
    }
  }
  // The position inside a group is spread over the whole group (a fixed position would alias with
  // a channel whose period divides the stride): each offset takes 8-17 % of 4096 groups at stride 8,
  // 18-32 % at stride 4, 40-60 % at stride 2.
  for (const auto& [stride, low, high] : {std::array<int, 3>{8, 8, 17}, {4, 18, 32}, {2, 40, 60}}) {
    int per_offset[8] = {};
    for (int group = 0; group < 4096; ++group) ++per_offset[sageattn::k_mean_sample_offset(group, stride)];
    for (int o = 0; o < stride; ++o) {
      EXPECT_GT(per_offset[o], 4096 * low / 100) << "stride " << stride << ", offset " << o;
      EXPECT_LT(per_offset[o], 4096 * high / 100) << "stride " << stride << ", offset " << o;
    }
  }
}

TEST(Quantization, KSmoothingMeanIsTheSampledFloatMean) {
  const int d = 12;
  std::mt19937 rng(13);
  for (int64_t tokens : {int64_t{300}, int64_t{777}, int64_t{1001}, int64_t{1500}, int64_t{2047}, int64_t{2048},
                         int64_t{5003}}) {
    std::vector<float> k = gaussian(static_cast<size_t>(tokens) * d, rng);
    sageattn_test::add_channel_bias(k, d, 10.0f, rng);
    // Channel 0 a sinusoid of period 8 tokens (a RoPE-like channel, mean 0): a sample at a fixed
    // position of every group of 2, 4 or 8 would see one or two phases only.
    for (int64_t j = 0; j < tokens; ++j) k[j * d] = 5.0f * std::sin(6.283185307f * static_cast<float>(j % 8) / 8.0f + 0.7f);
    const std::vector<float> mean = ref::k_smoothing_mean(k.data(), tokens, d);
    const std::vector<float> full = ref::k_channel_mean(k.data(), tokens, d);
    const int count = sageattn::k_mean_sample_count(static_cast<int>(tokens));
    for (int c = 0; c < d; ++c) {
      float sum = 0.0f;
      for (int64_t j = 0; j < tokens; ++j)
        if (sageattn::k_mean_sampled(static_cast<int>(j), static_cast<int>(tokens))) sum += k[j * d + c];
      EXPECT_EQ(mean[c], sum / static_cast<float>(count)) << tokens << " tokens, channel " << c;
      if (sageattn::k_mean_samples_all(static_cast<int>(tokens))) EXPECT_EQ(mean[c], full[c]);
      // A sample of >= 256 keys of unit-variance noise: within 5 standard errors of the full mean.
      EXPECT_NEAR(mean[c], full[c], 5.0 / std::sqrt(static_cast<double>(count)) + (c == 0 ? 0.5 : 0.0))
          << tokens << " tokens, channel " << c;
    }
  }
}

// The rotation (docs/design/quantization.md, "Rotation"): the library's butterflies and the tests'
// own are the 8 x 8 Walsh-Hadamard matrix H[i][j] = (-1)^popcount(i & j) (to float rounding), and
// H H^T = 8 I, so (H q).(H k) = 8 q.k: the factor the stored Q scale removes.
TEST(Rotation, ButterfliesAreTheHadamardMatrix) {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int trial = 0; trial < 200; ++trial) {
    float x[sageattn::kRotationBlock];
    std::vector<float> row(8);
    for (int i = 0; i < 8; ++i) x[i] = row[i] = normal(gen);
    sageattn::rotate_block8(x);
    const std::vector<float> mine = sageattn_test::hadamard_rotated(row);
    double norm = 0.0;
    for (float v : row) norm += std::fabs(v);
    for (int i = 0; i < 8; ++i) {
      double expected = 0.0;
      for (int j = 0; j < 8; ++j) expected += (__builtin_popcount(i & j) % 2 ? -1.0 : 1.0) * row[j];
      EXPECT_NEAR(x[i], expected, 4e-7 * norm) << "output " << i;
      EXPECT_EQ(x[i], mine[i]) << "the tests' butterflies round as the library's";
    }
  }
  for (int i = 0; i < 8; ++i)
    for (int k = 0; k < 8; ++k) {
      int dot = 0;
      for (int j = 0; j < 8; ++j) dot += (__builtin_popcount(i & j) % 2 ? -1 : 1) * (__builtin_popcount(k & j) % 2 ? -1 : 1);
      EXPECT_EQ(dot, i == k ? 8 : 0);
    }
  EXPECT_EQ(sageattn::kRotationScale * sageattn::kRotationBlock, 1.0f);
}

}  // namespace
