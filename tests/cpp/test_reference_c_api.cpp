// Argument validation of sageattn_reference_exact / sageattn_reference_emulated: every malformed call is
// refused with INVALID_ARGUMENT and touches neither output.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "test_reference_util.h"

namespace {

using namespace sageattn_test;

struct Buffers {
  sageattn_reference_problem problem = make_problem(1, 4, 2, 9, 11, 8, true);
  std::vector<float> q = std::vector<float>(1 * 4 * 9 * 8, 0.5f);
  std::vector<float> k = std::vector<float>(1 * 2 * 11 * 8, 0.25f);
  std::vector<float> v = std::vector<float>(1 * 2 * 11 * 8, 1.0f);
  std::vector<double> out = std::vector<double>(1 * 4 * 9 * 8, -7.0);
  std::vector<double> lse = std::vector<double>(1 * 4 * 9, -7.0);

  sageattn_status exact() {
    return sageattn_reference_exact(&problem, q.data(), k.data(), v.data(), out.data(), lse.data());
  }
  sageattn_status emulated(sageattn_qk_granularity g = SAGEATTN_QK_GRANULARITY_PER_THREAD, int32_t smooth = 1,
                           sageattn_dtype dtype = SAGEATTN_DTYPE_FP16) {
    return sageattn_reference_emulated(&problem, g, smooth, dtype, q.data(), k.data(), v.data(), out.data(),
                                       lse.data());
  }
  bool outputs_untouched() const {
    for (double o : out)
      if (o != -7.0) return false;
    for (double l : lse)
      if (l != -7.0) return false;
    return true;
  }
};

// Each mutation makes the problem invalid; both entry points must refuse it.
void expect_both_refuse(const std::function<void(sageattn_reference_problem&)>& mutate, const char* what) {
  Buffers b;
  mutate(b.problem);
  EXPECT_EQ(b.exact(), SAGEATTN_STATUS_INVALID_ARGUMENT) << what;
  EXPECT_EQ(b.emulated(), SAGEATTN_STATUS_INVALID_ARGUMENT) << what;
  EXPECT_TRUE(b.outputs_untouched()) << what;
}

TEST(ReferenceCApi, ValidCallsSucceed) {
  Buffers b;
  EXPECT_EQ(b.exact(), SAGEATTN_STATUS_OK);
  EXPECT_EQ(b.emulated(SAGEATTN_QK_GRANULARITY_PER_WARP, 0, SAGEATTN_DTYPE_BF16), SAGEATTN_STATUS_OK);
  EXPECT_EQ(sageattn_reference_exact(&b.problem, b.q.data(), b.k.data(), b.v.data(), b.out.data(), nullptr),
            SAGEATTN_STATUS_OK);
  EXPECT_EQ(sageattn_reference_emulated(&b.problem, SAGEATTN_QK_GRANULARITY_PER_THREAD, 1, SAGEATTN_DTYPE_FP16,
                                        b.q.data(), b.k.data(), b.v.data(), b.out.data(), nullptr),
            SAGEATTN_STATUS_OK);
}

TEST(ReferenceCApi, RejectsBadShapes) {
  using P = sageattn_reference_problem;
  expect_both_refuse([](P& p) { p.batch = 0; }, "batch 0");
  expect_both_refuse([](P& p) { p.heads_q = -1; }, "heads_q -1");
  expect_both_refuse([](P& p) { p.heads_kv = 0; }, "heads_kv 0");
  expect_both_refuse([](P& p) { p.heads_kv = 3; }, "heads_q % heads_kv != 0");
  expect_both_refuse([](P& p) { p.heads_kv = 8; }, "heads_kv > heads_q");
  expect_both_refuse([](P& p) { p.seqlen_q = 0; }, "seqlen_q 0");
  expect_both_refuse([](P& p) { p.seqlen_kv = -5; }, "seqlen_kv -5");
  expect_both_refuse([](P& p) { p.head_dim = 0; }, "head_dim 0");
  expect_both_refuse([](P& p) { p.is_causal = 2; }, "is_causal 2");
  expect_both_refuse([](P& p) { p.is_causal = -1; }, "is_causal -1");
  // Shapes whose element counts overflow 64 bits must be refused, not wrapped.
  expect_both_refuse(
      [](P& p) {
        const int32_t big = std::numeric_limits<int32_t>::max();
        p.batch = p.heads_q = p.heads_kv = p.seqlen_q = p.seqlen_kv = p.head_dim = big;
      },
      "overflowing sizes");
}

TEST(ReferenceCApi, RejectsBadScale) {
  using P = sageattn_reference_problem;
  expect_both_refuse([](P& p) { p.sm_scale = 0.0; }, "sm_scale 0");
  expect_both_refuse([](P& p) { p.sm_scale = -0.125; }, "sm_scale < 0");
  expect_both_refuse([](P& p) { p.sm_scale = std::numeric_limits<double>::quiet_NaN(); }, "sm_scale NaN");
  expect_both_refuse([](P& p) { p.sm_scale = std::numeric_limits<double>::infinity(); }, "sm_scale inf");
}

TEST(ReferenceCApi, RejectsNullPointers) {
  Buffers b;
  const sageattn_reference_problem* p = &b.problem;
  const float *q = b.q.data(), *k = b.k.data(), *v = b.v.data();
  double *out = b.out.data(), *lse = b.lse.data();
  EXPECT_EQ(sageattn_reference_exact(nullptr, q, k, v, out, lse), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(sageattn_reference_exact(p, nullptr, k, v, out, lse), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(sageattn_reference_exact(p, q, nullptr, v, out, lse), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(sageattn_reference_exact(p, q, k, nullptr, out, lse), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(sageattn_reference_exact(p, q, k, v, nullptr, lse), SAGEATTN_STATUS_INVALID_ARGUMENT);
  const auto g = SAGEATTN_QK_GRANULARITY_PER_THREAD;
  const auto d = SAGEATTN_DTYPE_FP16;
  EXPECT_EQ(sageattn_reference_emulated(nullptr, g, 1, d, q, k, v, out, lse), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(sageattn_reference_emulated(p, g, 1, d, nullptr, k, v, out, lse), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(sageattn_reference_emulated(p, g, 1, d, q, nullptr, v, out, lse), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(sageattn_reference_emulated(p, g, 1, d, q, k, nullptr, out, lse), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(sageattn_reference_emulated(p, g, 1, d, q, k, v, nullptr, lse), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(b.outputs_untouched());
}

TEST(ReferenceCApi, RejectsBadEnumsAndFlags) {
  Buffers b;
  EXPECT_EQ(b.emulated(static_cast<sageattn_qk_granularity>(2)), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(b.emulated(static_cast<sageattn_qk_granularity>(-1)), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(b.emulated(SAGEATTN_QK_GRANULARITY_PER_THREAD, 2), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(b.emulated(SAGEATTN_QK_GRANULARITY_PER_THREAD, -1), SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(b.emulated(SAGEATTN_QK_GRANULARITY_PER_THREAD, 1, static_cast<sageattn_dtype>(2)),
            SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(b.emulated(SAGEATTN_QK_GRANULARITY_PER_THREAD, 1, static_cast<sageattn_dtype>(-1)),
            SAGEATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(b.outputs_untouched());
}

}  // namespace
