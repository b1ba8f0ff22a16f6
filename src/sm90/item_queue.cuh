// Persistent CTAs of the sm90 kernel (SAGEATTN_SM90_PERSISTENT): one CTA per SM, each taking work
// items from a global counter as it finishes them, so the next item's K/V loads start while the
// current item's last P.V and epilogue run, and no CTA waits for another to exit and a new one to
// launch. Measured on H100 (docs/design/sm90_kernel.md, "Persistent CTAs and the work queue"): an
// item costs ~8 us beyond its key tiles (1.7 us each, 192 rows) with one CTA per item.
//
// Handing out items dynamically (not round-robin) keeps the hardware dispatch's balance on causal
// items, whose costs differ by up to the number of key tiles: static round-robin measured 9-32 %
// slower causal at 1K-4K. Items past the first gridDim.x come from `work_counter` (zeroed by the
// pre-pass's quantization grid, which ends before this grid reads it), in index order, so the
// orders of work_item (row blocks of a head together; causal and packed calls longest first) hold.
//
// One thread fetches (the K producer thread, of the first ring with split items: it runs furthest
// ahead) and posts each next index in a two-entry ring in shared memory; the other producer threads
// and every consumer warp read it when they finish the item. Full barrier: the fetcher's arrival;
// empty barrier: one arrival per reader.
#pragma once
#include <cstdint>

#include "ptx/mbarrier.cuh"

namespace sageattn::sm90 {

struct ItemQueue {
  uint32_t barriers;  // shared address of 4 mbarriers: full[0], full[1], empty[0], empty[1]
  int64_t* slots;     // 2 entries in shared memory

  __device__ uint32_t full(int s) const { return barriers + 8 * s; }
  __device__ uint32_t empty(int s) const { return barriers + 8 * (2 + s); }

  // One thread, before the CTA's first __syncthreads.
  __device__ void init(int readers) const {
    for (int s = 0; s < 2; ++s) {
      ptx::mbarrier_init(full(s), 1);
      ptx::mbarrier_init(empty(s), readers);
    }
  }

  // The fetcher, once it has issued its k-th item's last tile load (the consumers are then at most
  // kStages tiles from the item's end): takes and posts the index of item k + 1. Taking it earlier,
  // at the item's start, claims the next item an item too soon: measured 5 % slower on dense
  // causal calls (H100, B1 H16 N12893), whose items differ in length.
  __device__ int64_t post(uint32_t k, unsigned int* counter) const {
    const int s = static_cast<int>(k & 1u);
    const int64_t next = static_cast<int64_t>(gridDim.x) + atomicAdd(counter, 1u);
    ptx::mbarrier_wait(empty(s), ((k >> 1) & 1u) ^ 1u);  // the readers took what item k - 2 posted here
    slots[s] = next;
    ptx::mbarrier_arrive(full(s));  // release: the readers' wait (acquire) sees the slot
    return next;
  }

  // A reader after its k-th item: the index of item k + 1. `whole_warp`: every lane of the warp
  // calls it and waits; lane 0 alone reads the slot and frees it (its arrival releases its own
  // read, which is all the fetcher's next write of the slot must follow), and the warp gets the
  // index by a shuffle. With every lane reading the slot before a __syncwarp and lane 0's arrival,
  // compute-sanitizer's racecheck reported the reads of lanes 1-31 as racing with that write. The
  // wait stays on every lane: a wait under `lane == 0` changed the consumers' register allocation
  // (250-330 bytes of spills instead of 50-80) and cost 8-15 % (H100). Else a single thread waits,
  // reads and arrives for itself.
  __device__ int64_t take(uint32_t k, bool whole_warp) const {
    const int s = static_cast<int>(k & 1u);
    ptx::mbarrier_wait(full(s), (k >> 1) & 1u);
    if (!whole_warp) {
      const int64_t next = slots[s];
      ptx::mbarrier_arrive(empty(s));
      return next;
    }
    const bool leader = threadIdx.x % 32 == 0;
    const uint32_t slot = static_cast<uint32_t>(__cvta_generic_to_shared(slots + s));
    const int64_t next = __shfl_sync(0xffffffffu, leader ? ptx::ld_shared_s64(slot) : 0, 0);
    if (leader) ptx::mbarrier_arrive(empty(s));
    return next;
  }
};

}  // namespace sageattn::sm90
