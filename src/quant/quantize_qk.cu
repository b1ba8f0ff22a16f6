// The Q/K pre-pass of the sm80 path (and of every head dim the sm90 kernel does not run):
// K column sums (only with smoothing), then INT8 quantization of K (and of Q at head dim 256; the sm80
// kernel quantizes narrower Q itself, sm80/q_quantize.cuh). The sm90 path runs the
// same device functions fused with the FP8 V pre-pass (quant/prepass_sm90.cu).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "quant/k_column_sums.cuh"
#include "quant/quantize_qk.h"
#include "quant/quantize_qk_item.cuh"

namespace sageattn {
namespace {

constexpr int kColumnSumThreads = 256;

// Dense: blockIdx = (chunk, head, sequence); packed: (chunk position of all sequences, head, 0),
// common/sequences.cuh (packed_chunk_at).
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kColumnSumThreads) k_column_sums_kernel(const QuantizeArgs a) {
  __shared__ float partial[kColumnSumThreads / (kHeadDim / 8) * kHeadDim];
  int chunk = blockIdx.x, batch = blockIdx.z;
  SequenceSide side{0, a.seqlen_kv};  // a dense batch's (sequence_side without boundaries)
  if (a.packing.cu_kv != nullptr) {
    const PackedLookup found =
        packed_chunk_at(a.packing, a.batch, a.seqlen_kv, a.column_sum_chunks, a.column_sum_chunk_tokens, chunk);
    if (found.at.block < 0) return;  // uniform over the CTA
    chunk = found.at.block;
    batch = found.at.batch;
    side = found.side;
  }
  k_column_sums_block<T, kHeadDim, kColumnSumThreads>(a, chunk, blockIdx.y, batch, side, partial);
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kQuantizeThreads) quantize_qk_kernel(const QuantizeArgs a) {
  __shared__ QuantizeQkShared shared;
  ptx::grid_dependents_launch();  // the attention grid may start quantizing Q (it waits for us)
  quantize_qk_item<T, kHeadDim>(a, blockIdx.x, shared);
}

template <typename T, int kHeadDim>
cudaError_t launch(const QuantizeArgs& a, cudaStream_t stream) {
  if (a.smooth_k) {
    const dim3 grid = a.packing.cu_kv == nullptr
                          ? dim3(a.column_sum_chunks, a.heads_kv, a.batch)
                          : dim3(packed_positions(a.packing.total_kv, a.batch, a.column_sum_chunk_tokens), a.heads_kv, 1);
    k_column_sums_kernel<T, kHeadDim><<<grid, kColumnSumThreads, 0, stream>>>(a);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  if (qk_items(a) > 2147483647) return cudaErrorInvalidValue;  // one CTA per item, int item indices
  quantize_qk_kernel<T, kHeadDim><<<static_cast<unsigned>(qk_items(a)), kQuantizeThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_for_dtype(const QuantizeArgs& a, cudaStream_t stream) {
  switch (a.padded_head_dim) {
    case 64:
      return launch<T, 64>(a, stream);
    case 128:
      return launch<T, 128>(a, stream);
    default:
      return launch<T, 256>(a, stream);
  }
}

}  // namespace

cudaError_t launch_quantize_qk(const QuantizeArgs& args, sageattn_dtype dtype, cudaStream_t stream) {
  return dtype == SAGEATTN_DTYPE_BF16 ? launch_for_dtype<__nv_bfloat16>(args, stream)
                                      : launch_for_dtype<__half>(args, stream);
}

}  // namespace sageattn
