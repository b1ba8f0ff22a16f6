#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "common/mask.cuh"
#include "common/tile_codes.h"
#include "mask/classify_tiles.h"

namespace sageattn {
namespace {

// 8 warps: each reads whole 128-key rows of the tile (32 lanes x 4 keys), 16 rows per warp, so the
// loads of a warp are contiguous for the usual row-major masks.
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kKeysPerLane = kMaskBlock / 32;

// (keep, plain) of one mask element: plain = keep with nothing added.
template <typename T>
__device__ __forceinline__ void classify(const MaskTileArgs& a, const char* row_base, int key, bool& keep,
                                         bool& plain) {
  const int64_t index = key * a.mask.stride_column;
  if (a.mask_type == SAGEATTN_MASK_BOOL) {
    keep = row_base[index] != 0;
    plain = keep;
  } else {
    const float value = additive_mask_value<T>(a.mask_type, row_base, index);
    keep = value == value && value != -INFINITY;  // NaN and -inf mask the key (mask_term_log2 agrees)
    plain = value == 0.f;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) classify_tiles_kernel(const MaskTileArgs a) {
  const int64_t index = blockIdx.x;
  const int kv_block = static_cast<int>(index % a.kv_blocks);
  const int q_block = static_cast<int>(index / a.kv_blocks % a.q_blocks);
  const int64_t head_index = index / a.kv_blocks / a.q_blocks;
  const int head = static_cast<int>(head_index % a.code_heads);
  const int batch = static_cast<int>(head_index / a.code_heads);

  const MaskView& block = a.block_mask;
  if (block.data != nullptr &&
      static_cast<const uint8_t*>(block.data)[batch * block.stride_batch + head * block.stride_head +
                                              q_block * block.stride_row + kv_block * block.stride_column] == 0) {
    if (threadIdx.x == 0) a.codes[index] = kTileSkip;
    return;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t element_bytes = mask_element_bytes<T>(a.mask_type);
  const char* head_base = static_cast<const char*>(a.mask.data) +
                          (batch * a.mask.stride_batch + head * a.mask.stride_head) * element_bytes;
  bool any_keep = false, all_plain = true;
  for (int r = warp; r < kMaskBlock; r += kWarps) {
    const int row = q_block * kMaskBlock + r;
    if (row >= a.seqlen_q) break;
    const char* row_base = head_base + row * a.mask.stride_row * element_bytes;
#pragma unroll
    for (int j = 0; j < kKeysPerLane; ++j) {
      const int key = kv_block * kMaskBlock + lane * kKeysPerLane + j;
      if (key >= a.seqlen_kv) break;
      bool keep, plain;
      classify<T>(a, row_base, key, keep, plain);
      any_keep |= keep;
      all_plain &= plain;
    }
  }
  const int any = __syncthreads_or(any_keep);
  const int all = __syncthreads_and(all_plain);
  if (threadIdx.x == 0) a.codes[index] = !any ? kTileSkip : all ? kTilePlain : kTileElementMask;
}

}  // namespace

cudaError_t launch_classify_tiles(const MaskTileArgs& a, sageattn_dtype dtype, cudaStream_t stream) {
  // One CTA per code on a 1-D grid; check_params bounds the count by the grid limit.
  const unsigned blocks =
      static_cast<unsigned>(static_cast<int64_t>(a.code_batch) * a.code_heads * a.q_blocks * a.kv_blocks);
  if (dtype == SAGEATTN_DTYPE_BF16)
    classify_tiles_kernel<__nv_bfloat16><<<blocks, kThreads, 0, stream>>>(a);
  else
    classify_tiles_kernel<__half><<<blocks, kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace sageattn
