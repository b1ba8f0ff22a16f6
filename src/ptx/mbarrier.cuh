// Shared-memory barriers (mbarrier) and the bulk asynchronous copy that signals one (sm90).
//
// A stage of the producer/consumer pipeline has a "full" barrier (the producer's bulk copies
// complete its transaction count) and an "empty" barrier (consumers arrive once they no longer read
// the stage). Waiters track the phase parity: a fresh barrier is in phase 0, and waiting for
// parity 1 on it returns at once, which lets the producer treat every stage as empty at the start.
#pragma once
#include <cstdint>

namespace sageattn::ptx {

__device__ __forceinline__ void mbarrier_init(uint32_t bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}

// Makes initialized barriers visible to the async proxy (bulk copies) and to other threads.
__device__ __forceinline__ void mbarrier_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(bar)
               : "memory");
}

// Arrives and announces `bytes` more of asynchronous transactions for the current phase.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n}\n" ::"r"(bar),
               "r"(bytes)
               : "memory");
}

// A 64-bit load from shared memory at `addr`, kept where the code puts it: a plain load under a
// lane test may be if-converted into a load on every lane, which compute-sanitizer's racecheck then
// reports as racing with the next write (sm90/item_queue.cuh).
__device__ __forceinline__ int64_t ld_shared_s64(uint32_t addr) {
  int64_t value;
  asm volatile("ld.shared.s64 %0, [%1];\n" : "=l"(value) : "r"(addr) : "memory");
  return value;
}

__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// Copies `bytes` (a multiple of 16, both addresses 16-byte aligned) from global to shared memory
// with the bulk-copy engine; completion is counted on `bar`'s transaction count. One thread issues
// it, no registers are staged, and the copy bypasses L1.
__device__ __forceinline__ void bulk_copy_global_to_shared(uint32_t smem_dst, const void* global_src,
                                                           uint32_t bytes, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
          smem_dst),
      "l"(global_src), "r"(bytes), "r"(bar)
      : "memory");
}

// Copies `bytes` (a multiple of 16, both addresses 16-byte aligned) from shared to global memory
// with the bulk-copy engine, in this thread's current bulk group (bulk_commit_group); the source
// must stay unchanged until bulk_wait_read says the group has read it. Writes by generic stores
// must be fenced to the async proxy first (fence_proxy_async_shared, ptx/wgmma.cuh).
__device__ __forceinline__ void bulk_copy_shared_to_global(void* global_dst, uint32_t smem_src, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(global_dst), "r"(smem_src),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void bulk_commit_group() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Waits until at most kPending of this thread's committed bulk groups still read their shared
// memory sources (their global writes may still be in flight; the grid's end completes them).
template <int kPending>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(kPending) : "memory");
}

// Loads one box of a 4-D tensor map (TMA, sm90) into shared memory, coordinates innermost first
// (elements; out-of-bounds elements arrive as zeros); completion is counted on `bar`'s transaction
// count like bulk_copy_global_to_shared. `tensor_map` is the generic address of a CUtensorMap in
// kernel parameter space (a __grid_constant__ parameter) or global memory.
__device__ __forceinline__ void tma_load_4d(uint32_t smem_dst, const void* tensor_map, int c0, int c1, int c2, int c3,
                                            uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];\n" ::"r"(smem_dst),
      "l"(tensor_map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
}

}  // namespace sageattn::ptx

namespace sageattn::ptx {

// Named CTA barriers (ids 1..15; 0 is __syncthreads). `threads` counts both the waiting and the
// arriving threads, a multiple of 32. Used to hand the tensor cores from one consumer warpgroup to
// the other without a full-CTA barrier.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace sageattn::ptx
