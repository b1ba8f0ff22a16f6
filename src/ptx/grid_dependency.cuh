// Programmatic dependent launch (sm_90+): a kernel launched with programmatic stream serialization
// (common/dependent_launch.h) may start while the kernel before it in the stream still runs, once
// every CTA of that kernel has started (or called grid_dependents_launch). Each of its threads must
// call grid_dependency_wait before reading anything the previous kernel writes; work before that
// (loads of the caller's tensors) overlaps the previous kernel's tail and the launch gap.
// Both are no-ops for a kernel launched without the attribute, and compile to nothing below sm_90.
#pragma once

namespace sageattn::ptx {

__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Lets the next kernel (if launched programmatically) start as soon as every CTA of this grid has
// called it or exited; it changes nothing about when this grid's results become visible (the next
// kernel's grid_dependency_wait still waits for all of this grid to complete).
__device__ __forceinline__ void grid_dependents_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace sageattn::ptx
