// TMA tensor maps (host side). The sm90 kernel's 16-bit P.V reads V of a dense call straight from
// the caller's tensor with two TMA loads per tile instead of a pre-pass copy (docs/design/sm90_kernel.md,
// "16-bit P.V"): no V pass, no V workspace. The encoder comes from the driver at run time through
// the CUDA runtime (cudaGetDriverEntryPointByVersion), so the library does not link libcuda.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/kernel_args.h"
#include "sageattn/sageattn.h"

namespace sageattn {

// One V load: 64 channels (128 bytes, one 128-byte swizzle row) x 128 tokens, one head and batch.
constexpr int kVMapBoxChannels = 64;
constexpr int kVMapBoxTokens = 128;

// A 4-D tensor of 16-bit elements, dims innermost first (the innermost contiguous), strides in
// bytes of dims 1..3, into a map with the given box, 128-byte swizzle and zero fill out of bounds.
// cudaErrorNotSupported when the driver has no encoder or rejects the description.
cudaError_t encode_tensor_map_4d(TensorMap& map, const void* base, sageattn_dtype dtype, const uint64_t (&dims)[4],
                                 const uint64_t (&strides_bytes)[3], const uint32_t (&box)[4]);

// Whether p.v of a dense call can be described by a tensor map: every stride of a dimension longer
// than 1 a positive multiple of 16 bytes below 2^40 (rows are 16-byte aligned already; this rules
// out broadcast views with stride 0). A function of the params alone (no pointer), so the plan and
// the workspace size can depend on it.
bool v_tensor_map_possible(const sageattn_params& p);

// p.v as [head_dim, seqlen_kv, heads_kv, batch] with the box kVMapBoxChannels x kVMapBoxTokens.
cudaError_t encode_v_tensor_map(const sageattn_params& p, TensorMap& map);

}  // namespace sageattn
