// Q quantized inside the sm90 kernel: at the start of each work item, every consumer warpgroup turns
// its 64 query rows from the caller's 16-bit tensor into INT8 rows in shared memory, in the K-major,
// swizzled layout its wgmma descriptors read, and keeps its threads' dequantization
// factor in a register. Groups, rounding and scales are exactly the pre-pass's
// (quant/quantize_qk_item.cuh, docs/design/quantization.md), so the result is bit for bit the same;
// what it saves is the pre-pass's read of Q and the write and read of an INT8 copy of it, a quarter
// (FP8 P.V) to a third (16-bit P.V) of the pre-pass's memory traffic (docs/design/sm90_kernel.md,
// "Q in the kernel").
#pragma once
#include <cstdint>

#include "common/kernel_args.h"
#include "common/lane_q_rows.cuh"
#include "common/rotation.h"
#include "common/swizzled_rows.h"
#include "common/tiling.h"
#include "ptx/mbarrier.cuh"
#include "ptx/wgmma.cuh"
#include "sm90/traits.cuh"

namespace sageattn::sm90 {

// Quantizes rows row0 + warp * 16 + lane / 4 + {0, 8} (sequence rows; this consumer's 64 rows)
// of one Q head whose token 0 is at `head_rows` into `q_rows` (this consumer's 64 x kD-byte
// region of shared memory, swizzled: common/swizzled_rows.h) and returns the scale of this
// thread's group (0 for a group without a quantizable row). Rows at or past `seqlen` and columns
// at or past `head_dim` are zeros. Groups (per-thread): rows of one 32-row slice with equal row % 8,
// i.e. these two rows and the same two of the partner warp (warp ^ 1); per-warp: the whole slice.
// Every thread of the consumer warpgroup must call it: it synchronizes them on named barrier
// `barrier` (twice), and returns once the INT8 rows are visible to the warpgroup's wgmmas.
template <typename T, int kD>
__device__ __forceinline__ float quantize_q_rows(const T* head_rows, int64_t stride_token, int row0, int seqlen,
                                                 int head_dim, bool rotate, bool per_warp, unsigned char* q_rows,
                                                 float* exchange, int barrier) {
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int local_row = warp * 16 + lane / 4;  // and local_row + 8
  using Rows = LaneQRows<T, 2, kD / 32>;
  Rows rows;
  rows.load(head_rows, stride_token, row0 + warp * 16, seqlen, head_dim);
  // Head dims up to 128: the 64 values converted (and rotated) once for the maximum and the bytes,
  // which the consumer's registers hold at an item's start (nothing else of the item is live yet);
  // converting twice cost ~4 instructions per value of ~13. Head dim 256 (128 values) converts twice.
  typename Rows::template Kept<kD <= 128> kept;
  float m = rows.abs_max_keeping(rotate, kept);
  // The quad holds both rows whole; per-warp groups span the warp's 16 rows.
  m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
  m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
  if (per_warp) {
#pragma unroll
    for (int offset = 4; offset < 32; offset *= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
  }
  static_assert(kQExchangeFloats == 128, "one float per thread of the warpgroup");
  exchange[warp * 32 + lane] = m;
  ptx::named_barrier_sync(barrier, 128);
  const float amax = fmaxf(m, exchange[(warp ^ 1) * 32 + lane]);
  const bool quantizable = amax >= kMinQuantizableAmax;
  const float inv = quantizable ? 127.f / amax : 0.f;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = local_row + 8 * r;
#pragma unroll
    for (int j = 0; j < kD / 32; ++j) {
      // Byte column 8 (4 j + lane % 4): 16-byte chunk (4 j + lane % 4) / 2, where the descriptors'
      // swizzle puts it.
      const int offset = SwizzledRows<kD>::chunk_offset(64, row, (4 * j + lane % 4) / 2) + (lane % 2) * 8;
      *reinterpret_cast<uint2*>(q_rows + offset) = rows.int8_bytes_from(kept, r, j, rotate, inv);
    }
  }
  // The wgmmas read shared memory through the async proxy.
  ptx::fence_proxy_async_shared();
  ptx::named_barrier_sync(barrier, 128);
  if (!quantizable) return 0.f;
  // Q's scale absorbs the rotation's factor 8 (exact: a power of two).
  return rotate ? amax / 127.f * kRotationScale : amax / 127.f;
}

}  // namespace sageattn::sm90
