// Kernel launch with an optional programmatic dependency on the previous kernel in the stream
// (ptx/grid_dependency.cuh): the launched kernel may start before that one finishes and must wait
// (grid_dependency_wait) before reading its results. Only for a previous kernel of our own whose
// CTAs call grid_dependents_launch or finish, never for the caller's work.
#pragma once
#include <cuda_runtime.h>

namespace sageattn {

template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                          bool after_previous_starts, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = after_previous_starts ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...);
}

}  // namespace sageattn
