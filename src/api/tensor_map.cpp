#include "api/tensor_map.h"

#include <cuda.h>  // types only: the encoder is looked up at run time
#include <cudaTypedefs.h>

namespace sageattn {
namespace {

static_assert(sizeof(TensorMap) == sizeof(CUtensorMap) && alignof(TensorMap) == alignof(CUtensorMap),
              "TensorMap holds a CUtensorMap");

constexpr uint64_t kMaxStrideBytes = uint64_t{1} << 40;

PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  // Looked up once per process (a thread-safe static); the same for every device and stream.
  static const PFN_cuTensorMapEncodeTiled_v12000 function = [] {
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &entry, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();  // leave no sticky error behind
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(entry);
  }();
  return function;
}

bool stride_ok(int64_t stride_elements, int64_t extent) {
  if (extent <= 1) return true;  // never stepped over: replaced by any valid stride
  const uint64_t bytes = static_cast<uint64_t>(stride_elements) * 2;
  return stride_elements > 0 && bytes % 16 == 0 && bytes < kMaxStrideBytes;
}

}  // namespace

cudaError_t encode_tensor_map_4d(TensorMap& map, const void* base, sageattn_dtype dtype, const uint64_t (&dims)[4],
                                 const uint64_t (&strides_bytes)[3], const uint32_t (&box)[4]) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = encoder();
  if (encode == nullptr) return cudaErrorNotSupported;
  const cuuint64_t global_dims[4] = {dims[0], dims[1], dims[2], dims[3]};
  const cuuint64_t global_strides[3] = {strides_bytes[0], strides_bytes[1], strides_bytes[2]};
  const cuuint32_t box_dims[4] = {box[0], box[1], box[2], box[3]};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  const CUresult result =
      encode(reinterpret_cast<CUtensorMap*>(&map),
             dtype == SAGEATTN_DTYPE_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
             const_cast<void*>(base), global_dims, global_strides, box_dims, element_strides,
             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return result == CUDA_SUCCESS ? cudaSuccess : cudaErrorNotSupported;
}

// Experiment switch (scripts/bench_variants.sh style): 0 sends every 16-bit P.V call through the
// pre-pass copy of V, to compare the two paths on one machine.
#ifndef SAGEATTN_SM90_V_TMA
#define SAGEATTN_SM90_V_TMA 1
#endif

bool v_tensor_map_possible(const sageattn_params& p) {
  return SAGEATTN_SM90_V_TMA && p.cu_seqlens_q == nullptr && stride_ok(p.v.stride_token, p.seqlen_kv) &&
         stride_ok(p.v.stride_head, p.heads_kv) && stride_ok(p.v.stride_batch, p.batch);
}

cudaError_t encode_v_tensor_map(const sageattn_params& p, TensorMap& map) {
  const uint64_t dims[4] = {static_cast<uint64_t>(p.head_dim), static_cast<uint64_t>(p.seqlen_kv),
                            static_cast<uint64_t>(p.heads_kv), static_cast<uint64_t>(p.batch)};
  // A dimension of extent 1 is never stepped over; give it the packed stride (always valid).
  const uint64_t row_bytes = static_cast<uint64_t>(p.head_dim) * 2;
  uint64_t strides[3] = {static_cast<uint64_t>(p.v.stride_token) * 2, static_cast<uint64_t>(p.v.stride_head) * 2,
                         static_cast<uint64_t>(p.v.stride_batch) * 2};
  if (p.seqlen_kv <= 1) strides[0] = (row_bytes + 15) / 16 * 16;
  if (p.heads_kv <= 1) strides[1] = strides[0] * dims[1];
  if (p.batch <= 1) strides[2] = strides[1] * dims[2];
  const uint32_t box[4] = {kVMapBoxChannels, kVMapBoxTokens, 1, 1};
  return encode_tensor_map_4d(map, p.v.data, static_cast<sageattn_dtype>(p.dtype), dims, strides, box);
}

}  // namespace sageattn
