// Instantiation and launch of the sm90 kernel for one dtype and P.V precision: causal {no, yes} x
// {no masks, block codes only, codes and a boolean mask as bits, codes and an additive mask, packed
// sequences}.
#pragma once
#include <cuda_runtime.h>

#include "sm90/attention_sm90.h"
#include "sm90/kernel.cuh"
#include "sm90/traits.cuh"

namespace sageattn::sm90 {

template <typename T, bool kCausal, bool kPv16>
cudaError_t launch(const AttentionArgs& a, cudaStream_t stream) {
  auto kernel = a.packing.cu_q != nullptr    ? attention_sm90_kernel<T, kCausal, false, kNoElementMask, true, kPv16>
                : a.tile_codes.data == nullptr ? attention_sm90_kernel<T, kCausal, false, kNoElementMask, false, kPv16>
                : a.mask.data == nullptr       ? attention_sm90_kernel<T, kCausal, true, kNoElementMask, false, kPv16>
                : a.mask_bits.data != nullptr  ? attention_sm90_kernel<T, kCausal, true, kElementBits, false, kPv16>
                                               : attention_sm90_kernel<T, kCausal, true, kElementValues, false, kPv16>;
  constexpr int kSharedBytes = PvTraits<kPv16>::kSharedBytes;
  // Per function and device; cheap to repeat, so set on every call (no global state).
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes);
  if (err != cudaSuccess) return err;
  // One CTA per work item, or (SAGEATTN_SM90_PERSISTENT) one per SM looping over the items.
  const int64_t items = static_cast<int64_t>(a.q_blocks) * a.heads_q * a.batch;
  int64_t ctas = items;
  if (SAGEATTN_SM90_PERSISTENT) {
    int device = 0, sms = 0;
    err = cudaGetDevice(&device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return err;
    ctas = items < sms ? items : sms;
  }
  constexpr int64_t kMaxGridX = 2147483647;
  kernel<<<static_cast<unsigned>(ctas < kMaxGridX ? ctas : kMaxGridX), kThreads, kSharedBytes, stream>>>(a);
  return cudaGetLastError();
}

template <typename T, bool kPv16>
cudaError_t launch_typed(const AttentionArgs& a, bool causal, cudaStream_t stream) {
  return causal ? launch<T, true, kPv16>(a, stream) : launch<T, false, kPv16>(a, stream);
}

}  // namespace sageattn::sm90
