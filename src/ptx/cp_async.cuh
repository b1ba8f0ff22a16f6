// Asynchronous global -> shared copies (sm80+). Completion is tracked per thread in commit groups.
#pragma once
#include <cstdint>

namespace sageattn::ptx {

// Copies 16 bytes, or writes 16 zero bytes when `valid` is false (src-size 0: nothing is read, so a
// tail tile never holds stale shared memory that could turn into NaN through 0 * garbage).
__device__ __forceinline__ void cp_async_16_or_zero(uint32_t smem_addr, const void* global_ptr,
                                                    bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr),
               "l"(global_ptr), "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_16(uint32_t smem_addr, const void* global_ptr) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr), "l"(global_ptr));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most `kPending` of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// A hint: fetch the 128-byte line holding `global_ptr` into L2 (the hardware may drop it; no value
// changes). Callers pass addresses inside their tensors' lines only.
__device__ __forceinline__ void prefetch_l2(const void* global_ptr) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(global_ptr));
}

// Every 128-byte line holding a byte of [global_ptr, global_ptr + bytes) into L2, from the line of
// the first byte (a row need not start on a line: head dims that are not multiples of 64, strided
// tokens), so no address outside the lines of the range's own bytes is touched.
__device__ __forceinline__ void prefetch_l2_bytes(const void* global_ptr, int bytes) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(global_ptr);
  for (uintptr_t line = begin & ~uintptr_t{127}; line < begin + bytes; line += 128)
    prefetch_l2(reinterpret_cast<const void*>(line));
}

}  // namespace sageattn::ptx
