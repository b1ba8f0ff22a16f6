// C entry points of the CPU reference: argument validation and the exception barrier around
// sageattn::reference. Nothing may propagate across the C boundary (callers are C, ctypes, cffi).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <type_traits>

#include "reference/reference.h"
#include "sageattn/sageattn.h"

namespace {

namespace ref = sageattn::reference;

// Element counts of every array must be addressable: out is the largest of
// [batch, heads_q, seqlen_q, head_dim] and [batch, heads_kv, seqlen_kv, head_dim].
bool sizes_fit(const sageattn_reference_problem& p) {
  const uint64_t limit = std::numeric_limits<int64_t>::max() / sizeof(double);
  uint64_t q_elements = static_cast<uint64_t>(p.batch) * static_cast<uint64_t>(p.heads_q);  // < 2^62
  if (q_elements > limit / static_cast<uint64_t>(p.seqlen_q)) return false;
  q_elements *= static_cast<uint64_t>(p.seqlen_q);
  if (q_elements > limit / static_cast<uint64_t>(p.head_dim)) return false;
  uint64_t kv_elements = static_cast<uint64_t>(p.batch) * static_cast<uint64_t>(p.heads_kv);
  if (kv_elements > limit / static_cast<uint64_t>(p.seqlen_kv)) return false;
  kv_elements *= static_cast<uint64_t>(p.seqlen_kv);
  return kv_elements <= limit / static_cast<uint64_t>(p.head_dim);
}

bool problem_is_valid(const sageattn_reference_problem* p, const float* q, const float* k, const float* v,
                      const double* out) {
  if (!p || !q || !k || !v || !out) return false;
  if (p->batch < 1 || p->heads_q < 1 || p->heads_kv < 1 || p->seqlen_q < 1 || p->seqlen_kv < 1 ||
      p->head_dim < 1)
    return false;
  if (p->heads_q % p->heads_kv != 0) return false;
  if (!std::isfinite(p->sm_scale) || !(p->sm_scale > 0.0)) return false;
  if (p->is_causal != 0 && p->is_causal != 1) return false;
  if (p->qk_rotation != 0 && p->qk_rotation != 1) return false;
  return sizes_fit(*p);
}

// Runs `body` and turns any exception into a status. A problem too large for host memory is well formed
// but cannot run here, hence UNSUPPORTED rather than INVALID_ARGUMENT.
template <class Body>
sageattn_status guarded(const Body& body) {
  try {
    body();
    return SAGEATTN_STATUS_OK;
  } catch (const std::bad_alloc&) {
    return SAGEATTN_STATUS_UNSUPPORTED;
  } catch (const std::length_error&) {
    return SAGEATTN_STATUS_UNSUPPORTED;
  } catch (...) {
    return SAGEATTN_STATUS_INVALID_ARGUMENT;
  }
}

}  // namespace

extern "C" {

SAGEATTN_API sageattn_status sageattn_reference_exact(const sageattn_reference_problem* problem,
                                                      const float* q, const float* k, const float* v,
                                                      double* out, double* lse) {
  if (!problem_is_valid(problem, q, k, v, out)) return SAGEATTN_STATUS_INVALID_ARGUMENT;
  return guarded([&] { ref::attention_exact(*problem, q, k, v, out, lse); });
}

SAGEATTN_API sageattn_status sageattn_reference_emulated_masked(const sageattn_reference_problem* problem,
                                                                int32_t granularity, int32_t smooth_k,
                                                                int32_t smooth_v, int32_t pv_dtype,
                                                                const float* q, const float* k, const float* v,
                                                                const float* mask, double* out, double* lse) {
  if (!problem_is_valid(problem, q, k, v, out)) return SAGEATTN_STATUS_INVALID_ARGUMENT;
  const int64_t raw_granularity = granularity;
  if (raw_granularity != SAGEATTN_QK_GRANULARITY_PER_THREAD &&
      raw_granularity != SAGEATTN_QK_GRANULARITY_PER_WARP)
    return SAGEATTN_STATUS_INVALID_ARGUMENT;
  if (smooth_k != 0 && smooth_k != 1) return SAGEATTN_STATUS_INVALID_ARGUMENT;
  if (smooth_v != 0 && smooth_v != 1) return SAGEATTN_STATUS_INVALID_ARGUMENT;
  const int64_t raw_dtype = pv_dtype;
  if (raw_dtype != SAGEATTN_DTYPE_FP16 && raw_dtype != SAGEATTN_DTYPE_BF16 && raw_dtype != SAGEATTN_DTYPE_E4M3)
    return SAGEATTN_STATUS_INVALID_ARGUMENT;
  // V smoothing is defined only for the FP8 P.V (no kernel smooths V before a 16-bit product).
  if (smooth_v == 1 && raw_dtype != SAGEATTN_DTYPE_E4M3) return SAGEATTN_STATUS_INVALID_ARGUMENT;
  return guarded([&] {
    ref::attention_emulated(*problem, static_cast<sageattn_qk_granularity>(granularity), smooth_k != 0,
                            smooth_v != 0, static_cast<sageattn_dtype>(pv_dtype), q, k, v, out, lse, mask);
  });
}

SAGEATTN_API sageattn_status sageattn_reference_emulated_v2(const sageattn_reference_problem* problem,
                                                            int32_t granularity, int32_t smooth_k,
                                                            int32_t smooth_v, int32_t pv_dtype,
                                                            const float* q, const float* k,
                                                            const float* v, double* out, double* lse) {
  return sageattn_reference_emulated_masked(problem, granularity, smooth_k, smooth_v, pv_dtype, q, k, v, nullptr,
                                            out, lse);
}

// The original entry point: the 16-bit P.V of the sm80 kernel only (E4M3 and smooth_v need _v2).
SAGEATTN_API sageattn_status sageattn_reference_emulated(const sageattn_reference_problem* problem,
                                                         int32_t granularity, int32_t smooth_k,
                                                         int32_t pv_dtype,
                                                         const float* q, const float* k,
                                                         const float* v, double* out, double* lse) {
  const int64_t raw_dtype = pv_dtype;
  if (raw_dtype != SAGEATTN_DTYPE_FP16 && raw_dtype != SAGEATTN_DTYPE_BF16)
    return SAGEATTN_STATUS_INVALID_ARGUMENT;
  return sageattn_reference_emulated_v2(problem, granularity, smooth_k, 0, pv_dtype, q, k, v, out, lse);
}

}  // extern "C"
