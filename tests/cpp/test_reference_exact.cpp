// The exact (double) reference against an independent naive formulation, plus the masking, GQA and
// smoothing-invariance properties everything else relies on.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_reference_util.h"

namespace {

using namespace sageattn_test;

// A deliberately different formulation: long double, scores recomputed per use, the softmax through
// the log-sum-exp first (out = sum exp(s - lse) v) rather than max-subtracted weights divided by their sum,
// and the mask written as a difference of positions.
Result naive_attention(const sageattn_reference_problem& p, const Inputs& in) {
  const long D = p.head_dim;
  Result r;
  r.out.assign(q_elements(p), 0.0);
  r.lse.assign(lse_elements(p), 0.0);
  for (long b = 0; b < p.batch; ++b)
    for (long h = 0; h < p.heads_q; ++h) {
      const long group = p.heads_q / p.heads_kv;
      const long hk = h / group;
      for (long i = 0; i < p.seqlen_q; ++i) {
        const float* qi = &in.q[(((b * p.heads_q) + h) * p.seqlen_q + i) * D];
        auto score = [&](long j) {
          const float* kj = &in.k[(((b * p.heads_kv) + hk) * p.seqlen_kv + j) * D];
          long double s = 0;
          for (long c = 0; c < D; ++c) s += static_cast<long double>(qi[c]) * kj[c];
          return s * static_cast<long double>(p.sm_scale);
        };
        auto allowed = [&](long j) {
          // Bottom-right alignment: the last query sees the last key.
          return !p.is_causal || (p.seqlen_q - 1 - i) <= (p.seqlen_kv - 1 - j);
        };
        long double big = -INFINITY;
        for (long j = 0; j < p.seqlen_kv; ++j)
          if (allowed(j)) big = std::max(big, score(j));
        const size_t row = static_cast<size_t>((b * p.heads_q + h) * p.seqlen_q + i);
        if (big == -INFINITY) {
          r.lse[row] = -INFINITY;
          continue;
        }
        long double sum = 0;
        for (long j = 0; j < p.seqlen_kv; ++j)
          if (allowed(j)) sum += std::exp(score(j) - big);
        const long double lse = big + std::log(sum);
        r.lse[row] = static_cast<double>(lse);
        for (long j = 0; j < p.seqlen_kv; ++j) {
          if (!allowed(j)) continue;
          const long double w = std::exp(score(j) - lse);
          const float* vj = &in.v[(((b * p.heads_kv) + hk) * p.seqlen_kv + j) * D];
          for (long c = 0; c < D; ++c) r.out[row * D + c] += static_cast<double>(w * vj[c]);
        }
      }
    }
  return r;
}

struct Shape {
  int batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim;
  bool causal;
};

std::string shape_name(const testing::TestParamInfo<Shape>& info) {
  const Shape& s = info.param;
  return "b" + std::to_string(s.batch) + "h" + std::to_string(s.heads_q) + "kv" + std::to_string(s.heads_kv) +
         "q" + std::to_string(s.seqlen_q) + "k" + std::to_string(s.seqlen_kv) + "d" + std::to_string(s.head_dim) +
         (s.causal ? "causal" : "full");
}

class ExactVsNaive : public testing::TestWithParam<Shape> {};

TEST_P(ExactVsNaive, OutAndLseAgree) {
  const Shape s = GetParam();
  const auto p = make_problem(s.batch, s.heads_q, s.heads_kv, s.seqlen_q, s.seqlen_kv, s.head_dim, s.causal);
  // Scaled-up inputs make the softmax peaky, so a wrong max handling or mask shows up.
  Inputs in = gaussian_inputs(p, 1234u + s.seqlen_q * 7u + s.seqlen_kv);
  for (float& x : in.q) x *= 2.0f;
  const Result exact = run_exact(p, in);
  const Result naive = naive_attention(p, in);
  EXPECT_LT(max_abs_diff(exact.out, naive.out), 1e-12);
  EXPECT_LT(max_abs_diff(exact.lse, naive.lse), 1e-12);
  for (size_t i = 0; i < exact.lse.size(); ++i) {
    ASSERT_EQ(std::isinf(exact.lse[i]), std::isinf(naive.lse[i])) << "row " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ExactVsNaive,
    testing::Values(Shape{1, 1, 1, 1, 1, 8, false}, Shape{1, 1, 1, 1, 1, 8, true},
                    Shape{1, 2, 1, 7, 63, 16, false}, Shape{1, 2, 1, 7, 63, 16, true},
                    Shape{2, 4, 2, 65, 129, 32, true}, Shape{1, 3, 3, 129, 65, 24, true},
                    Shape{1, 3, 1, 63, 7, 8, false},
                    Shape{2, 2, 2, 1, 130, 40, true}, Shape{1, 4, 1, 130, 1, 8, true},
                    Shape{1, 1, 1, 100, 100, 5, true}),
    shape_name);

TEST(ReferenceExact, RowsWithoutKeysAreZeroWithMinusInfLse) {
  // Causal with 37 queries and 9 keys: queries 0..27 see no key; query 28 sees exactly key 0.
  const auto p = make_problem(1, 2, 1, 37, 9, 16, true);
  const Inputs in = gaussian_inputs(p, 7);
  const Result r = run_exact(p, in);
  const int first_seeing = p.seqlen_q - p.seqlen_kv;
  for (int h = 0; h < p.heads_q; ++h) {
    for (int i = 0; i < p.seqlen_q; ++i) {
      const size_t row = static_cast<size_t>(h) * p.seqlen_q + i;
      if (i < first_seeing) {
        EXPECT_EQ(r.lse[row], -std::numeric_limits<double>::infinity()) << "h " << h << " i " << i;
        for (int c = 0; c < p.head_dim; ++c) EXPECT_EQ(r.out[row * p.head_dim + c], 0.0);
      } else {
        EXPECT_TRUE(std::isfinite(r.lse[row]));
      }
    }
    // One visible key: the output is that key's value and the LSE is its score.
    const size_t row = static_cast<size_t>(h) * p.seqlen_q + first_seeing;
    double score = 0.0;
    for (int c = 0; c < p.head_dim; ++c) {
      EXPECT_NEAR(r.out[row * p.head_dim + c], in.v[c], 1e-15);
      score += static_cast<double>(in.q[row * p.head_dim + c]) * in.k[c];
    }
    EXPECT_NEAR(r.lse[row], score * p.sm_scale, 1e-12);
  }
}

TEST(ReferenceExact, CausalWithMoreKeysSeesThePrefix) {
  // Nk > Nq: query i sees keys 0 .. i + (Nk - Nq). Check against a non-causal run on the truncated keys.
  const auto p = make_problem(1, 1, 1, 5, 12, 8, true);
  const Inputs in = gaussian_inputs(p, 11);
  const Result causal = run_exact(p, in);
  for (int i = 0; i < p.seqlen_q; ++i) {
    const int visible = i + 1 + (p.seqlen_kv - p.seqlen_q);
    auto sub = make_problem(1, 1, 1, 1, visible, 8, false);
    Inputs one;
    one.q.assign(in.q.begin() + i * 8, in.q.begin() + (i + 1) * 8);
    one.k.assign(in.k.begin(), in.k.begin() + visible * 8);
    one.v.assign(in.v.begin(), in.v.begin() + visible * 8);
    const Result r = run_exact(sub, one);
    for (int c = 0; c < 8; ++c) EXPECT_NEAR(causal.out[i * 8 + c], r.out[c], 1e-14);
    EXPECT_NEAR(causal.lse[i], r.lse[0], 1e-14);
  }
}

TEST(ReferenceExact, GqaUsesKvHeadOfItsGroup) {
  // Hq = 6 over Hkv = 2: heads 0..2 read kv head 0, heads 3..5 kv head 1.
  const auto p = make_problem(2, 6, 2, 17, 23, 16, false);
  const Inputs in = gaussian_inputs(p, 21);
  const Result all = run_exact(p, in);
  const size_t qh = 17 * 16, kvh = 23 * 16;
  for (int b = 0; b < 2; ++b)
    for (int h = 0; h < 6; ++h) {
      const int hk = h / 3;
      auto single = make_problem(1, 1, 1, 17, 23, 16, false);
      Inputs one;
      const size_t qo = (b * 6 + h) * qh, ko = (b * 2 + hk) * kvh;
      one.q.assign(in.q.begin() + qo, in.q.begin() + qo + qh);
      one.k.assign(in.k.begin() + ko, in.k.begin() + ko + kvh);
      one.v.assign(in.v.begin() + ko, in.v.begin() + ko + kvh);
      const Result r = run_exact(single, one);
      for (size_t x = 0; x < qh; ++x) ASSERT_EQ(all.out[qo + x], r.out[x]) << "b " << b << " h " << h;
    }
}

TEST(ReferenceExact, LseIsOptional) {
  const auto p = make_problem(1, 2, 2, 33, 47, 8, true);
  const Inputs in = gaussian_inputs(p, 5);
  const Result with_lse = run_exact(p, in);
  std::vector<double> out(q_elements(p), NAN);
  ASSERT_EQ(sageattn_reference_exact(&p, in.q.data(), in.k.data(), in.v.data(), out.data(), nullptr),
            SAGEATTN_STATUS_OK);
  EXPECT_EQ(out, with_lse.out);
}

TEST(ReferenceExact, SmoothingKChangesOnlyTheLse) {
  // Softmax is invariant to a per-row constant: subtracting the channel mean of K leaves out unchanged
  // and shifts the LSE by sm_scale * q.mean. The emulated pipeline relies on exactly this.
  const auto p = make_problem(1, 1, 1, 40, 70, 16, false);
  std::mt19937 rng(3);
  Inputs in = gaussian_inputs(p, 3);
  add_channel_bias(in.k, 16, 5.0f, rng);
  std::vector<double> mean(16, 0.0);
  for (int j = 0; j < 70; ++j)
    for (int c = 0; c < 16; ++c) mean[c] += in.k[j * 16 + c] / 70.0;
  Inputs smoothed = in;
  for (int j = 0; j < 70; ++j)
    for (int c = 0; c < 16; ++c) smoothed.k[j * 16 + c] = static_cast<float>(in.k[j * 16 + c] - mean[c]);
  const Result a = run_exact(p, in);
  const Result b = run_exact(p, smoothed);
  EXPECT_LT(max_abs_diff(a.out, b.out), 1e-5);  // the smoothed K is rounded to float
  double worst_shift = 0.0;
  for (int i = 0; i < 40; ++i) {
    double shift = 0.0;
    for (int c = 0; c < 16; ++c) shift += in.q[i * 16 + c] * mean[c];
    shift *= p.sm_scale;
    worst_shift = std::max(worst_shift, std::fabs(shift));
    EXPECT_NEAR(a.lse[i], b.lse[i] + shift, 1e-5);
  }
  EXPECT_GT(worst_shift, 1.0);  // the shift is real, so the check above can fail
}

TEST(ReferenceExact, UniformScoresAverageValues) {
  const auto p = make_problem(1, 1, 1, 3, 50, 8, false);
  Inputs in = gaussian_inputs(p, 9);
  std::fill(in.q.begin(), in.q.end(), 0.0f);
  const Result r = run_exact(p, in);
  for (int c = 0; c < 8; ++c) {
    double mean = 0.0;
    for (int j = 0; j < 50; ++j) mean += in.v[j * 8 + c];
    mean /= 50.0;
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(r.out[i * 8 + c], mean, 1e-14);
  }
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(r.lse[i], std::log(50.0), 1e-14);
}

}  // namespace
