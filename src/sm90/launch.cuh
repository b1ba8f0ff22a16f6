// Instantiation and launch of the sm90 kernel for one dtype, P.V precision and head dim: causal
// {no, yes} x {no masks, block codes only, codes and a boolean mask as bits, codes and an additive
// mask, packed sequences}; head dim 64 without the three masked ones, whose calls the plan pads to
// 128 (api/plan.cpp).
#pragma once
#include <cuda_runtime.h>

#include "common/dependent_launch.h"
#include "sm90/attention_sm90.h"
#include "sm90/kernel.cuh"
#include "sm90/traits.cuh"

namespace sageattn::sm90 {

// One instantiation: its CTA shape (CtaShape) sets the threads, the shared memory and the items.
template <typename T, bool kCausal, bool kMasks, int kElement, bool kPacked, bool kPv16, int kD>
cudaError_t launch_one(const AttentionArgs& a, cudaStream_t stream) {
  using Shape = CtaShape<kPv16, kD>;
  auto kernel = attention_sm90_kernel<T, kCausal, kMasks, kElement, kPacked, kPv16, kD>;
  constexpr int kSharedBytes =
      PvTraits<kPv16, kD>::template kSharedBytes<Shape::kQBytes, kRingStagesOf<kMasks, Shape::kConsumers, kD>,
                                                 Shape::kStagedOutput>;
  // Per function and device; cheap to repeat, so set on every call (no global state).
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes);
  if (err != cudaSuccess) return err;
  // One CTA per SM taking items from the queue (SAGEATTN_SM90_PERSISTENT, item_queue.cuh), or one
  // CTA per work item. The SM count is two attribute reads (well under a microsecond).
  const int64_t items = work_items<Shape::kRows, kPacked, kSplitItems<kMasks, Shape::kConsumers>>(a);
  int64_t ctas = items;
  if (SAGEATTN_SM90_PERSISTENT) {
    int device = 0, sms = 0;
    err = cudaGetDevice(&device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return err;
    ctas = items < sms ? items : sms;
  }
  constexpr int64_t kMaxGridX = 2147483647;
  // Programmatically after the pre-pass's quantization grid (always the previous kernel): the
  // consumers quantize their Q rows while it finishes and wait for it before reading its output.
  return launch_kernel(kernel, dim3(static_cast<unsigned>(ctas < kMaxGridX ? ctas : kMaxGridX)), dim3(Shape::kThreads),
                       kSharedBytes, stream, true, a);
}

template <typename T, bool kCausal, bool kPv16, int kD>
cudaError_t launch(const AttentionArgs& a, cudaStream_t stream) {
  if (a.packing.cu_q != nullptr) return launch_one<T, kCausal, false, kNoElementMask, true, kPv16, kD>(a, stream);
  if (a.tile_codes.data == nullptr) return launch_one<T, kCausal, false, kNoElementMask, false, kPv16, kD>(a, stream);
  if constexpr (kD != 64) {
    if (a.mask.data == nullptr) return launch_one<T, kCausal, true, kNoElementMask, false, kPv16, kD>(a, stream);
    if (a.mask_bits.data != nullptr) return launch_one<T, kCausal, true, kElementBits, false, kPv16, kD>(a, stream);
    return launch_one<T, kCausal, true, kElementValues, false, kPv16, kD>(a, stream);
  } else {
    return cudaErrorInvalidValue;  // masks at head dim 64: the plan pads them to 128
  }
}

template <typename T, bool kPv16, int kD = 128>
cudaError_t launch_typed(const AttentionArgs& a, bool causal, cudaStream_t stream) {
  return causal ? launch<T, true, kPv16, kD>(a, stream) : launch<T, false, kPv16, kD>(a, stream);
}

}  // namespace sageattn::sm90
