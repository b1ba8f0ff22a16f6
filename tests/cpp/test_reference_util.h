// Helpers shared by the reference and quantization tests: random inputs, problem setup, error metrics,
// and calls through the C ABI (so the tests exercise the same entry points as the Python tests).
#ifndef SAGEATTN_TESTS_CPP_TEST_REFERENCE_UTIL_H
#define SAGEATTN_TESTS_CPP_TEST_REFERENCE_UTIL_H

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "sageattn/sageattn.h"

namespace sageattn_test {

inline sageattn_reference_problem make_problem(int batch, int heads_q, int heads_kv, int seqlen_q, int seqlen_kv,
                                               int head_dim, bool causal) {
  sageattn_reference_problem p{};
  p.batch = batch;
  p.heads_q = heads_q;
  p.heads_kv = heads_kv;
  p.seqlen_q = seqlen_q;
  p.seqlen_kv = seqlen_kv;
  p.head_dim = head_dim;
  // A float-representable scale, as a caller passing sageattn_params.sm_scale would have.
  p.sm_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  p.is_causal = causal ? 1 : 0;
  p.qk_rotation = 1;  // the library's default
  return p;
}

// The pre-pass rotation of a Q or K row as docs/design/quantization.md ("Rotation") defines it:
// zero-padded to whole blocks of 8, each block transformed by three float butterfly stages (pairs
// 1, 2, then 4 apart: (a, b) -> (a + b, a - b)). Written out here rather than taken from
// src/common/rotation.h; test_quantization.cpp checks that it is the Walsh-Hadamard matrix.
inline std::vector<float> hadamard_rotated(const std::vector<float>& row) {
  const size_t width = (row.size() + 7) / 8 * 8;
  std::vector<float> out(width, 0.0f);
  for (size_t c = 0; c < row.size(); ++c) out[c] = row[c];
  for (size_t block = 0; block < width; block += 8)
    for (size_t half : {1, 2, 4})
      for (size_t i = 0; i < 8; i += 2 * half)
        for (size_t j = i; j < i + half; ++j) {
          const float a = out[block + j], b = out[block + j + half];
          out[block + j] = a + b;
          out[block + j + half] = a - b;
        }
  return out;
}
// Q.K^T of rotated rows is 8 times the original; the kernels' Q scale carries the 1/8.
constexpr float kRotationScale = 0.125f;

inline size_t q_elements(const sageattn_reference_problem& p) {
  return static_cast<size_t>(p.batch) * p.heads_q * p.seqlen_q * p.head_dim;
}
inline size_t kv_elements(const sageattn_reference_problem& p) {
  return static_cast<size_t>(p.batch) * p.heads_kv * p.seqlen_kv * p.head_dim;
}
inline size_t lse_elements(const sageattn_reference_problem& p) {
  return static_cast<size_t>(p.batch) * p.heads_q * p.seqlen_q;
}

inline std::vector<float> gaussian(size_t n, std::mt19937& rng, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

// Adds bias[c] * magnitude to every row of a [..., head_dim] array (a per-channel offset, as real K has).
inline void add_channel_bias(std::vector<float>& x, int head_dim, float magnitude, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> bias(head_dim);
  for (float& b : bias) b = dist(rng) * magnitude;
  for (size_t i = 0; i < x.size(); ++i) x[i] += bias[i % head_dim];
}

struct Inputs {
  std::vector<float> q, k, v;
};

inline Inputs gaussian_inputs(const sageattn_reference_problem& p, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  in.q = gaussian(q_elements(p), rng);
  in.k = gaussian(kv_elements(p), rng);
  in.v = gaussian(kv_elements(p), rng);
  return in;
}

struct Result {
  std::vector<double> out, lse;
};

inline Result run_exact(const sageattn_reference_problem& p, const Inputs& in) {
  Result r;
  r.out.assign(q_elements(p), NAN);
  r.lse.assign(lse_elements(p), NAN);
  EXPECT_EQ(sageattn_reference_exact(&p, in.q.data(), in.k.data(), in.v.data(), r.out.data(), r.lse.data()),
            SAGEATTN_STATUS_OK);
  return r;
}

inline Result run_emulated(const sageattn_reference_problem& p, const Inputs& in,
                           sageattn_qk_granularity granularity, bool smooth_k, sageattn_dtype pv_dtype) {
  Result r;
  r.out.assign(q_elements(p), NAN);
  r.lse.assign(lse_elements(p), NAN);
  EXPECT_EQ(sageattn_reference_emulated(&p, granularity, smooth_k ? 1 : 0, pv_dtype, in.q.data(), in.k.data(),
                                        in.v.data(), r.out.data(), r.lse.data()),
            SAGEATTN_STATUS_OK);
  return r;
}

// sum |a - ref| / sum |ref|, the accuracy metric of design.md section 5.
inline double relative_l1(const std::vector<double>& a, const std::vector<double>& ref) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += std::fabs(a[i] - ref[i]);
    norm += std::fabs(ref[i]);
  }
  return diff / norm;
}

inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    // Equal infinities (masked rows' LSE) compare as no difference; anything else non-finite is a failure.
    if (a[i] == b[i]) continue;
    const double d = std::fabs(a[i] - b[i]);
    worst = std::isnan(d) ? INFINITY : std::max(worst, d);
  }
  return worst;
}

inline bool all_finite(const std::vector<double>& x) {
  for (double v : x)
    if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace sageattn_test

#endif  // SAGEATTN_TESTS_CPP_TEST_REFERENCE_UTIL_H
