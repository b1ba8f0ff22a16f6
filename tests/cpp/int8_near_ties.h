// Products x * inv that lie within a few float steps of a half-integer, where rounding the product to
// float first and rounding the exact product (docs/design/quantization.md, "INT8 quantization of a
// group") can give different integers: the inputs that tell the two definitions apart, shared by
// the host test of the emulation and the GPU test of the kernels' rounding.
#ifndef SAGEATTN_TESTS_CPP_INT8_NEAR_TIES_H
#define SAGEATTN_TESTS_CPP_INT8_NEAR_TIES_H

#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "reference/reference.h"

namespace sageattn_test {

// (x, inv) pairs with inv = int8_inverse_scale(amax) and |x| <= amax: for random amax and k in
// [-126, 126], the floats around (k + 1/2) / inv, two steps each way.
inline std::vector<std::pair<float, float>> int8_near_ties(unsigned seed, int count) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> amax_dist(1e-3f, 1e3f);
  std::uniform_int_distribution<int> k_dist(-126, 126);
  std::vector<std::pair<float, float>> out;
  while (static_cast<int>(out.size()) < count) {
    const float amax = amax_dist(rng), inv = sageattn::reference::int8_inverse_scale(amax);
    float x = static_cast<float>((k_dist(rng) + 0.5) / inv);
    for (int step = 0; step < 2; ++step) x = std::nextafter(x, -INFINITY);
    for (int step = 0; step < 5; ++step, x = std::nextafter(x, INFINITY))
      if (std::fabs(x) <= amax) out.emplace_back(x, inv);
  }
  return out;
}

// Whether rounding the float product first gives another integer than rounding the exact product.
inline bool float_product_rounds_otherwise(float x, float inv) {
  return std::rint(static_cast<double>(x) * inv) != std::rint(static_cast<double>(x * inv));
}

}  // namespace sageattn_test

#endif  // SAGEATTN_TESTS_CPP_INT8_NEAR_TIES_H
