#include "api/check.h"

#include <cmath>
#include <cstdint>
#include <sstream>

#include "common/tile_codes.h"
#include "common/tiling.h"

namespace sageattn {
namespace {

// The kernels move rows with 16-byte vector copies (cp.async / uint4 loads), so every row must
// start 16 bytes aligned: 8 elements of a 2-byte dtype.
constexpr int64_t kElementsPer16Bytes = 8;
constexpr int kMaxGridYZ = 65535;
constexpr int64_t kMaxGridX = 2147483647;
constexpr int kMaxSeqlen = 1 << 30;

struct Failure {
  sageattn_status status = SAGEATTN_STATUS_OK;
  std::string reason;
  bool failed() const { return status != SAGEATTN_STATUS_OK; }
};

class Checker {
 public:
  // Records the first failing rule only: the first problem is the one to fix first.
  template <typename... Parts>
  void require(bool ok, sageattn_status status, const Parts&... parts) {
    if (ok || failure_.failed()) return;
    std::ostringstream text;
    (text << ... << parts);
    failure_.status = status;
    failure_.reason = text.str();
  }
  const Failure& failure() const { return failure_; }

 private:
  Failure failure_;
};

void check_tensor(Checker& c, const char* name, const sageattn_tensor& t) {
  c.require(t.data != nullptr, SAGEATTN_STATUS_INVALID_ARGUMENT, name, ": data pointer is NULL");
  c.require(t.stride_batch >= 0 && t.stride_head >= 0 && t.stride_token >= 0,
            SAGEATTN_STATUS_INVALID_ARGUMENT, name, ": strides must be non-negative (got batch ",
            t.stride_batch, ", head ", t.stride_head, ", token ", t.stride_token, ")");
  c.require(reinterpret_cast<uintptr_t>(t.data) % 16 == 0, SAGEATTN_STATUS_UNSUPPORTED, name,
            ": data pointer must be 16-byte aligned (make the tensor contiguous or pad it)");
  c.require(t.stride_batch % kElementsPer16Bytes == 0 && t.stride_head % kElementsPer16Bytes == 0 &&
                t.stride_token % kElementsPer16Bytes == 0,
            SAGEATTN_STATUS_UNSUPPORTED, name,
            ": strides must be multiples of 8 elements so that rows are 16-byte aligned (got batch ",
            t.stride_batch, ", head ", t.stride_head, ", token ", t.stride_token,
            "); pad the head dim or make the tensor contiguous");
}

void check_mask_strides(Checker& c, const char* name, const sageattn_mask& m) {
  c.require(m.stride_batch >= 0 && m.stride_head >= 0 && m.stride_row >= 0 && m.stride_column >= 0,
            SAGEATTN_STATUS_INVALID_ARGUMENT, name, ": strides must be non-negative (got batch ", m.stride_batch,
            ", head ", m.stride_head, ", row ", m.stride_row, ", column ", m.stride_column, ")");
}

void check_masks(Checker& c, const sageattn_params& p) {
  c.require(p.mask_type == SAGEATTN_MASK_NONE || p.mask_type == SAGEATTN_MASK_BOOL ||
                p.mask_type == SAGEATTN_MASK_ADDITIVE || p.mask_type == SAGEATTN_MASK_ADDITIVE_FP32,
            SAGEATTN_STATUS_INVALID_ARGUMENT, "unknown mask_type ", p.mask_type);
  if (p.mask_type == SAGEATTN_MASK_NONE) {
    c.require(p.mask.data == nullptr, SAGEATTN_STATUS_INVALID_ARGUMENT,
              "mask.data is set but mask_type is SAGEATTN_MASK_NONE (a mask is never ignored: set mask_type)");
  } else {
    c.require(p.mask.data != nullptr, SAGEATTN_STATUS_INVALID_ARGUMENT, "mask: data pointer is NULL");
    check_mask_strides(c, "mask", p.mask);
    const uintptr_t alignment = p.mask_type == SAGEATTN_MASK_ADDITIVE ? 2 : p.mask_type == SAGEATTN_MASK_ADDITIVE_FP32 ? 4 : 1;
    c.require(reinterpret_cast<uintptr_t>(p.mask.data) % alignment == 0, SAGEATTN_STATUS_INVALID_ARGUMENT,
              "mask: the data pointer must be aligned to its element size (", alignment, " bytes)");
    // The mask pass runs one CTA per code on a 1-D grid.
    const int64_t codes = static_cast<int64_t>(p.batch) * p.heads_q * ceil_div(p.seqlen_q, kMaskBlock) *
                          ceil_div(p.seqlen_kv, kMaskBlock);
    c.require(codes <= kMaxGridX, SAGEATTN_STATUS_UNSUPPORTED, "the mask is too large: ", codes,
              " tiles of 128 x 128 exceed the CUDA grid limit of ", kMaxGridX, "; split the batch");
  }
  if (p.block_mask.data != nullptr) check_mask_strides(c, "block_mask", p.block_mask);
}

// Packed sequences (varlen): the boundaries live in device memory, so only their presence, the
// totals and the layout can be checked here; the kernels clamp what they read (sequences.cuh).
void check_packing(Checker& c, const sageattn_params& p) {
  const bool packed = p.cu_seqlens_q != nullptr;
  if (!packed) {
    c.require(p.cu_seqlens_kv == nullptr && p.total_q == 0 && p.total_kv == 0, SAGEATTN_STATUS_INVALID_ARGUMENT,
              "cu_seqlens_kv, total_q and total_kv are set but cu_seqlens_q is NULL (packed sequences need both "
              "cu_seqlens arrays; dense calls leave all four 0)");
    return;
  }
  c.require(p.cu_seqlens_kv != nullptr, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "cu_seqlens_q is set but cu_seqlens_kv is NULL (packed sequences need both)");
  c.require(reinterpret_cast<uintptr_t>(p.cu_seqlens_q) % alignof(int32_t) == 0 &&
                reinterpret_cast<uintptr_t>(p.cu_seqlens_kv) % alignof(int32_t) == 0,
            SAGEATTN_STATUS_INVALID_ARGUMENT, "cu_seqlens_q and cu_seqlens_kv must be 4-byte aligned");
  c.require(p.total_q >= 0 && p.total_kv >= 0, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "total_q and total_kv must be >= 0 (got ", p.total_q, ", ", p.total_kv, ")");
  c.require(p.q.stride_batch == 0 && p.k.stride_batch == 0 && p.v.stride_batch == 0 && p.out.stride_batch == 0,
            SAGEATTN_STATUS_INVALID_ARGUMENT,
            "packed sequences have no batch dimension: every stride_batch must be 0 (got q ", p.q.stride_batch,
            ", k ", p.k.stride_batch, ", v ", p.v.stride_batch, ", out ", p.out.stride_batch, ")");
  c.require(p.mask_type == SAGEATTN_MASK_NONE && p.block_mask.data == nullptr, SAGEATTN_STATUS_UNSUPPORTED,
            "masks are not supported with packed sequences (use is_causal, or dense batches with a mask)");
}

}  // namespace

sageattn_status check_params(const sageattn_params& p, int sm_arch, std::string& reason) {
  Checker c;
  c.require(p.abi_version == SAGEATTN_ABI_VERSION, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "abi_version is ", p.abi_version, " but this library implements ", SAGEATTN_ABI_VERSION,
            " (header and library do not match)");
  c.require(p.batch >= 1 && p.heads_q >= 1 && p.heads_kv >= 1, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "batch, heads_q and heads_kv must be >= 1 (got ", p.batch, ", ", p.heads_q, ", ",
            p.heads_kv, ")");
  c.require(p.seqlen_q >= 1 && p.seqlen_kv >= 1, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "seqlen_q and seqlen_kv must be >= 1 (got ", p.seqlen_q, ", ", p.seqlen_kv, ")");
  // CUDA grid limits (batch and heads index grid y/z, at most 65535) and int32 token indexing with
  // room for padding to whole tiles.
  c.require(p.batch <= kMaxGridYZ && p.heads_q <= kMaxGridYZ, SAGEATTN_STATUS_UNSUPPORTED,
            "batch and heads_q must be at most ", kMaxGridYZ, " (got ", p.batch, ", ", p.heads_q, ")");
  c.require(p.seqlen_q <= kMaxSeqlen && p.seqlen_kv <= kMaxSeqlen, SAGEATTN_STATUS_UNSUPPORTED,
            "seqlen_q and seqlen_kv must be at most ", kMaxSeqlen, " (got ", p.seqlen_q, ", ",
            p.seqlen_kv, ")");
  // The pre-pass runs one CTA per 128 rows of Q, of K and (sm90 kernel) of V on a 1-D grid (at
  // most 2^31 - 1); counted with V whatever the kernel, so the limit does not depend on the GPU.
  const int64_t quantize_items =
      static_cast<int64_t>(p.batch) * p.heads_q * ceil_div(p.seqlen_q, kQBlockRows) +
      2 * static_cast<int64_t>(p.batch) * p.heads_kv * ceil_div(p.seqlen_kv, 2 * kKBlockTokens);
  c.require(quantize_items <= kMaxGridX, SAGEATTN_STATUS_UNSUPPORTED, "the problem is too large: ",
            quantize_items, " blocks of 128 rows of q, k and v exceed the CUDA grid limit of ", kMaxGridX,
            "; split the batch");
  c.require(p.heads_kv < 1 || p.heads_q % p.heads_kv == 0, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "heads_q (", p.heads_q, ") must be a multiple of heads_kv (", p.heads_kv, ")");
  c.require(p.head_dim >= 1, SAGEATTN_STATUS_INVALID_ARGUMENT, "head_dim must be >= 1 (got ",
            p.head_dim, ")");
  c.require(p.head_dim <= kMaxHeadDim, SAGEATTN_STATUS_UNSUPPORTED, "head_dim ", p.head_dim,
            " is not supported yet (at most ", kMaxHeadDim, ")");
  c.require(p.dtype == SAGEATTN_DTYPE_FP16 || p.dtype == SAGEATTN_DTYPE_BF16,
            SAGEATTN_STATUS_INVALID_ARGUMENT, "dtype must be SAGEATTN_DTYPE_FP16 or _BF16 (got ",
            static_cast<int>(p.dtype), ")");
  c.require(p.qk_granularity == SAGEATTN_QK_GRANULARITY_PER_THREAD ||
                p.qk_granularity == SAGEATTN_QK_GRANULARITY_PER_WARP,
            SAGEATTN_STATUS_INVALID_ARGUMENT, "unknown qk_granularity ",
            static_cast<int>(p.qk_granularity));
  c.require(p.kernel == SAGEATTN_KERNEL_AUTO || p.kernel == SAGEATTN_KERNEL_SM80_MMA ||
                p.kernel == SAGEATTN_KERNEL_SM90_WGMMA || p.kernel == SAGEATTN_KERNEL_SM90_WGMMA_PV16 ||
                p.kernel == SAGEATTN_KERNEL_AUTO_PV16,
            SAGEATTN_STATUS_INVALID_ARGUMENT, "unknown kernel ", static_cast<int>(p.kernel));
  c.require(p.is_causal == 0 || p.is_causal == 1, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "is_causal must be 0 or 1 (got ", p.is_causal, ")");
  c.require(p.smooth_k == 0 || p.smooth_k == 1, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "smooth_k must be 0 or 1 (got ", p.smooth_k, ")");
  c.require(p.smooth_v == 0 || p.smooth_v == 1, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "smooth_v must be 0 or 1 (got ", p.smooth_v, ")");
  c.require(p.qk_rotation == 0 || p.qk_rotation == 1, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "qk_rotation must be 0 or 1 (got ", p.qk_rotation, ")");
  c.require(std::isfinite(p.sm_scale) && p.sm_scale > 0.0f, SAGEATTN_STATUS_INVALID_ARGUMENT,
            "sm_scale must be finite and > 0 (got ", p.sm_scale, ")");
  check_masks(c, p);
  check_packing(c, p);
  check_tensor(c, "q", p.q);
  check_tensor(c, "k", p.k);
  check_tensor(c, "v", p.v);
  check_tensor(c, "out", p.out);
  c.require(reinterpret_cast<uintptr_t>(p.lse) % alignof(float) == 0,
            SAGEATTN_STATUS_INVALID_ARGUMENT, "lse must be 4-byte aligned");
  c.require(p.head_dim % kElementsPer16Bytes == 0, SAGEATTN_STATUS_UNSUPPORTED, "head_dim ",
            p.head_dim,
            " must be a multiple of 8 on this path (16-byte rows); zero-pad the head dim (the "
            "Python layer does this for you)");
  c.require(sm_arch >= 80, SAGEATTN_STATUS_UNSUPPORTED, "compute capability ", sm_arch / 10, ".",
            sm_arch % 10, " is not supported: the kernels need sm80 (Ampere) or newer");
  reason = c.failure().reason;
  return c.failure().status;
}

}  // namespace sageattn
