// Instantiation and launch of the sm80 kernel for one dtype: head dim {64, 128, 256} x causal {no, yes} x
// {plain, masks, packed sequences}.
#pragma once
#include <cuda_runtime.h>

#include "common/dependent_launch.h"
#include "common/tiling.h"
#include "sm80/attention_sm80.h"
#include "sm80/kernel.cuh"
#include "sm80/traits.cuh"

// Experiment knob: 0 launches the attention grid after the pre-pass's end even where a programmatic
// launch is possible.
#ifndef SAGEATTN_SM80_DEPENDENT_LAUNCH
#define SAGEATTN_SM80_DEPENDENT_LAUNCH 1
#endif

namespace sageattn::sm80 {

template <int kHeadDim, typename T, bool kCausal>
cudaError_t launch(const AttentionArgs& a, bool programmatic, cudaStream_t stream) {
  using Tr = Traits<kHeadDim, T>;
  auto kernel = a.tile_codes.data != nullptr ? attention_sm80_kernel<Tr, kCausal, true, false>
                : a.packing.cu_q != nullptr  ? attention_sm80_kernel<Tr, kCausal, false, true>
                                             : attention_sm80_kernel<Tr, kCausal, false, false>;
  // Above 48 KB of dynamic shared memory a kernel must opt in; the attribute is per function and
  // per device, and setting it again is cheap, so it is set on every call (no global state).
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSharedBytes);
  if (err != cudaSuccess) return err;
  // Packed sequences: one block per position (kernel.cuh), all sequences along x.
  const dim3 grid = a.packing.cu_q != nullptr && a.tile_codes.data == nullptr
                        ? dim3(packed_positions(a.packing.total_q, a.batch, kQBlockRows), a.heads_q, 1)
                        : dim3(a.q_blocks, a.heads_q, a.batch);
  // Programmatically after the pre-pass's quantization grid (sm90+; always the previous kernel): the
  // warps quantize their Q rows while it finishes and wait for it before reading its output.
  return launch_kernel(kernel, grid, dim3(Tr::kThreads), Tr::kSharedBytes, stream,
                       programmatic && SAGEATTN_SM80_DEPENDENT_LAUNCH, a);
}

template <typename T>
cudaError_t launch_typed(const AttentionArgs& a, bool causal, bool programmatic, cudaStream_t stream) {
  switch (padded_head_dim(a.head_dim)) {
    case 64:
      return causal ? launch<64, T, true>(a, programmatic, stream) : launch<64, T, false>(a, programmatic, stream);
    case 128:
      return causal ? launch<128, T, true>(a, programmatic, stream) : launch<128, T, false>(a, programmatic, stream);
    default:
      return causal ? launch<256, T, true>(a, programmatic, stream) : launch<256, T, false>(a, programmatic, stream);
  }
}

}  // namespace sageattn::sm80
