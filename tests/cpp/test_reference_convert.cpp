// float -> fp16 / bf16 rounding of the reference (how P is rounded before P.V): exhaustive round trips,
// every tie between neighbouring values, and the edges (subnormals, largest finite, overflow, NaN).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "reference/reference.h"

namespace {

namespace ref = sageattn::reference;

uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
float float_of(uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

bool fp16_is_nan(uint16_t h) { return (h & 0x7C00u) == 0x7C00u && (h & 0x3FFu) != 0; }

TEST(Fp16, RoundTripsEveryBitPattern) {
  for (uint32_t h = 0; h <= 0xFFFFu; ++h) {
    const float f = ref::fp16_bits_to_float(static_cast<uint16_t>(h));
    if (fp16_is_nan(static_cast<uint16_t>(h))) {
      EXPECT_TRUE(std::isnan(f));
      EXPECT_TRUE(fp16_is_nan(ref::float_to_fp16_bits(f)));
    } else {
      ASSERT_EQ(ref::float_to_fp16_bits(f), h) << std::hex << h;
    }
  }
  // Decoding against the value formula, independently of the bit layout used by the implementation.
  EXPECT_EQ(ref::fp16_bits_to_float(0x0001u), std::ldexp(1.0f, -24));
  EXPECT_EQ(ref::fp16_bits_to_float(0x03FFu), std::ldexp(1023.0f, -24));
  EXPECT_EQ(ref::fp16_bits_to_float(0x0400u), std::ldexp(1.0f, -14));
  EXPECT_EQ(ref::fp16_bits_to_float(0x3C00u), 1.0f);
  EXPECT_EQ(ref::fp16_bits_to_float(0x7BFFu), 65504.0f);
  EXPECT_EQ(ref::fp16_bits_to_float(0xC000u), -2.0f);
  EXPECT_EQ(ref::fp16_bits_to_float(0x7C00u), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::signbit(ref::fp16_bits_to_float(0x8000u)));
}

TEST(Fp16, EveryTieRoundsToEvenAndNeighboursRoundToNearest) {
  // Between consecutive finite non-negative fp16 values a < b the midpoint is exact in float.
  for (uint32_t h = 0; h < 0x7BFFu; ++h) {
    const float a = ref::fp16_bits_to_float(static_cast<uint16_t>(h));
    const float b = ref::fp16_bits_to_float(static_cast<uint16_t>(h + 1));
    const float mid = a + (b - a) / 2;
    const uint16_t even = (h % 2 == 0) ? static_cast<uint16_t>(h) : static_cast<uint16_t>(h + 1);
    ASSERT_EQ(ref::float_to_fp16_bits(mid), even) << std::hex << h;
    ASSERT_EQ(ref::float_to_fp16_bits(std::nextafter(mid, 0.0f)), h) << std::hex << h;
    ASSERT_EQ(ref::float_to_fp16_bits(std::nextafter(mid, 1e9f)), h + 1) << std::hex << h;
    ASSERT_EQ(ref::float_to_fp16_bits(-mid), even | 0x8000u) << std::hex << h;
  }
}

TEST(Fp16, Edges) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(ref::float_to_fp16_bits(0.0f), 0x0000u);
  EXPECT_EQ(ref::float_to_fp16_bits(-0.0f), 0x8000u);
  EXPECT_EQ(ref::float_to_fp16_bits(1.0f), 0x3C00u);
  EXPECT_EQ(ref::float_to_fp16_bits(65504.0f), 0x7BFFu);
  EXPECT_EQ(ref::float_to_fp16_bits(std::nextafter(65520.0f, 0.0f)), 0x7BFFu);
  EXPECT_EQ(ref::float_to_fp16_bits(65520.0f), 0x7C00u);  // the tie above the largest finite goes to inf
  EXPECT_EQ(ref::float_to_fp16_bits(1e6f), 0x7C00u);
  EXPECT_EQ(ref::float_to_fp16_bits(inf), 0x7C00u);
  EXPECT_EQ(ref::float_to_fp16_bits(-inf), 0xFC00u);
  EXPECT_TRUE(fp16_is_nan(ref::float_to_fp16_bits(std::numeric_limits<float>::quiet_NaN())));
  // Subnormals: 2^-24 is the smallest; 2^-25 is the tie with zero (even: zero); anything above rounds up.
  EXPECT_EQ(ref::float_to_fp16_bits(std::ldexp(1.0f, -24)), 0x0001u);
  EXPECT_EQ(ref::float_to_fp16_bits(std::ldexp(1.0f, -25)), 0x0000u);
  EXPECT_EQ(ref::float_to_fp16_bits(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001u);
  EXPECT_EQ(ref::float_to_fp16_bits(std::ldexp(3.0f, -25)), 0x0002u);
  EXPECT_EQ(ref::float_to_fp16_bits(std::ldexp(1.0f, -30)), 0x0000u);
  EXPECT_EQ(ref::float_to_fp16_bits(std::numeric_limits<float>::denorm_min()), 0x0000u);
  EXPECT_EQ(ref::float_to_fp16_bits(-std::numeric_limits<float>::denorm_min()), 0x8000u);
  // Largest subnormal + half a step is the tie with the smallest normal (0x400, even).
  EXPECT_EQ(ref::float_to_fp16_bits(std::ldexp(2047.0f, -25)), 0x0400u);
  EXPECT_EQ(ref::float_to_fp16_bits(std::ldexp(1.0f, -14)), 0x0400u);
  // Ties in the normal range: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
  EXPECT_EQ(ref::float_to_fp16_bits(1.0f + std::ldexp(1.0f, -11)), 0x3C00u);
  EXPECT_EQ(ref::float_to_fp16_bits(1.0f + std::ldexp(3.0f, -11)), 0x3C02u);
  // A mantissa carry into the exponent: just under 2 rounds up to 2.
  EXPECT_EQ(ref::float_to_fp16_bits(std::nextafter(2.0f, 0.0f)), 0x4000u);
}

#if defined(__FLT16_MAX__)
TEST(Fp16, MatchesCompilerFloat16OnRandomFloats) {
  // An independent implementation (libgcc's soft-float conversion) on a wide range of magnitudes.
  std::mt19937 rng(99);
  std::uniform_int_distribution<uint32_t> any_bits;
  for (int i = 0; i < 2000000; ++i) {
    // Exponents from about 2^-30 to 2^20 cover zero-rounding, subnormals, normals and overflow.
    const uint32_t b = (any_bits(rng) & 0x807FFFFFu) | ((97u + any_bits(rng) % 51u) << 23);
    const float x = float_of(b);
    const _Float16 h = static_cast<_Float16>(x);
    uint16_t expected;
    std::memcpy(&expected, &h, sizeof expected);
    ASSERT_EQ(ref::float_to_fp16_bits(x), expected) << std::hex << b;
  }
}
#endif

TEST(Bf16, RoundTripsEveryBitPattern) {
  for (uint32_t h = 0; h <= 0xFFFFu; ++h) {
    const float f = ref::bf16_bits_to_float(static_cast<uint16_t>(h));
    EXPECT_EQ(bits_of(f), h << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(ref::float_to_bf16_bits(f), h) << std::hex << h;
    }
  }
}

TEST(Bf16, TiesRoundToEvenAndEdges) {
  std::mt19937 rng(4);
  std::uniform_int_distribution<uint32_t> pattern(0, 0x7F7Eu);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t h = pattern(rng);
    const uint32_t mid = (h << 16) | 0x8000u;  // exactly halfway between h and h + 1
    const uint32_t even = (h % 2 == 0) ? h : h + 1;
    ASSERT_EQ(ref::float_to_bf16_bits(float_of(mid)), even) << std::hex << h;
    ASSERT_EQ(ref::float_to_bf16_bits(float_of(mid - 1)), h);
    ASSERT_EQ(ref::float_to_bf16_bits(float_of(mid + 1)), h + 1);
    ASSERT_EQ(ref::float_to_bf16_bits(float_of(mid | 0x80000000u)), even | 0x8000u);
  }
  EXPECT_EQ(ref::float_to_bf16_bits(1.0f + std::ldexp(1.0f, -8)), 0x3F80u);  // tie, stays at 1
  EXPECT_EQ(ref::float_to_bf16_bits(1.0f + std::ldexp(3.0f, -8)), 0x3F82u);  // tie, goes up to even
  EXPECT_EQ(ref::float_to_bf16_bits(std::numeric_limits<float>::max()), 0x7F80u);  // rounds to inf
  EXPECT_EQ(ref::float_to_bf16_bits(float_of(0x7F7F7FFFu)), 0x7F7Fu);             // largest finite bf16
  EXPECT_EQ(ref::float_to_bf16_bits(-std::numeric_limits<float>::infinity()), 0xFF80u);
  EXPECT_EQ(ref::float_to_bf16_bits(std::numeric_limits<float>::denorm_min()), 0x0000u);  // tie to zero
  EXPECT_EQ(ref::float_to_bf16_bits(float_of(0x00018000u)), 0x0002u);
  const uint16_t nan = ref::float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(std::isnan(ref::bf16_bits_to_float(nan)));
  // A signalling NaN whose payload lives only in the low half must not turn into infinity.
  EXPECT_TRUE(std::isnan(ref::bf16_bits_to_float(ref::float_to_bf16_bits(float_of(0x7F800001u)))));
}

TEST(RoundToDtype, ProbabilitiesStayOrderedAndWithinHalfAnUlp) {
  // P lies in [0, 1]: rounding must be monotonic, keep 0 and 1, and err by at most half a unit.
  for (sageattn_dtype dtype : {SAGEATTN_DTYPE_FP16, SAGEATTN_DTYPE_BF16}) {
    EXPECT_EQ(ref::round_to_dtype(0.0f, dtype), 0.0f);
    EXPECT_EQ(ref::round_to_dtype(1.0f, dtype), 1.0f);
    const int mantissa_bits = dtype == SAGEATTN_DTYPE_FP16 ? 10 : 7;
    const int min_exponent = dtype == SAGEATTN_DTYPE_FP16 ? -14 : -126;
    float previous = 0.0f;
    std::mt19937 rng(6);
    std::uniform_real_distribution<float> log_p(-30.0f, 0.0f);
    std::vector<float> ps(100000);
    for (float& p : ps) p = std::exp2(log_p(rng));
    std::sort(ps.begin(), ps.end());
    for (float p : ps) {
      const float r = ref::round_to_dtype(p, dtype);
      EXPECT_GE(r, previous);
      previous = r;
      const int exponent = std::max(std::ilogb(p), min_exponent);
      const float half_ulp = std::ldexp(1.0f, exponent - mantissa_bits - 1);
      ASSERT_LE(std::fabs(r - p), half_ulp) << p;
    }
  }
}

}  // namespace
