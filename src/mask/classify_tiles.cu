#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/mask.cuh"
#include "common/tile_codes.h"
#include "mask/classify_tiles.h"

namespace sageattn {
namespace {

// One CTA per tile; thread t reads half t % 2 (64 keys) of row t / 2 with 16-byte loads, so a
// warp reads 16 rows x 128 keys and every thread has 4 to 16 loads in flight (a byte-mask tile is
// 16 KB; one 4-byte load per lane and row ran at 0.7 TB/s on H200).
constexpr int kThreads = 2 * kMaskBlock;
constexpr int kKeysPerThread = kMaskBlock / 2;

// (keep, plain) of one mask value: plain = keep with nothing added. The kernels' rule decides what
// an additive value masks (additive_keeps: NaN, -inf and values <= -1e30).
__device__ __forceinline__ void classify(int mask_type, float value, bool& keep, bool& plain) {
  if (mask_type == SAGEATTN_MASK_BOOL) {
    keep = plain = value != 0.f;
  } else {
    keep = additive_keeps(value);
    plain = value == 0.f;
  }
}

// The element type of a mask type (T: the dtype of q, for SAGEATTN_MASK_ADDITIVE).
template <typename T, int kType>
using MaskElement = std::conditional_t<kType == SAGEATTN_MASK_BOOL, uint8_t,
                                       std::conditional_t<kType == SAGEATTN_MASK_ADDITIVE_FP32, float, T>>;

template <int kType, typename E>
__device__ __forceinline__ float as_value(E element) {
  if constexpr (kType == SAGEATTN_MASK_BOOL) return element != 0 ? 1.f : 0.f;
  else return static_cast<float>(element);
}

// kType: the mask type (a template parameter so that the 16-byte chunks stay in registers).
template <typename T, int kType>
__global__ void __launch_bounds__(kThreads) classify_tiles_kernel(const MaskTileArgs a) {
  using E = MaskElement<T, kType>;
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
  constexpr int64_t element_bytes = sizeof(E);
  const int row = q_block * kMaskBlock + static_cast<int>(threadIdx.x) / 2;
  const int first_key = kv_block * kMaskBlock + (threadIdx.x % 2) * kKeysPerThread;
  const char* first = static_cast<const char*>(a.mask.data) +
                      (batch * a.mask.stride_batch + head * a.mask.stride_head + row * a.mask.stride_row +
                       first_key * a.mask.stride_column) * element_bytes;
  uint64_t keep_bits = 0;  // bit j: key first_key + j is kept (0 outside the sequence)
  bool any_keep = false, all_plain = true;
  // A mask broadcast over rows (row stride 0, e.g. key padding) has one distinct row: the first
  // row's two threads read it and the others copy their bits.
  const bool one_row = a.mask.stride_row == 0;
  if ((!one_row || threadIdx.x < 2) && row < a.seqlen_q && first_key < a.seqlen_kv) {
    const bool vector = a.mask.stride_column == 1 && first_key + kKeysPerThread <= a.seqlen_kv &&
                        reinterpret_cast<uintptr_t>(first) % 16 == 0;
    if (vector) {
      // 64 values: 4 (bool), 8 (16-bit) or 16 (float32) chunks of 16 bytes, all loaded first.
      constexpr int kChunks = kKeysPerThread * sizeof(E) / 16;
      constexpr int kPerChunk = 16 / sizeof(E);
      uint4 chunks[kChunks];
#pragma unroll
      for (int c = 0; c < kChunks; ++c) chunks[c] = reinterpret_cast<const uint4*>(first)[c];
#pragma unroll
      for (int j = 0; j < kKeysPerThread; ++j) {
        const uint32_t word = (&chunks[j / kPerChunk].x)[(j % kPerChunk) * sizeof(E) / 4];
        E element;
        const uint32_t part = word >> (8 * ((j % kPerChunk) * sizeof(E) % 4));
        memcpy(&element, &part, sizeof(E));
        bool keep, plain;
        classify(kType, as_value<kType>(element), keep, plain);
        keep_bits |= static_cast<uint64_t>(keep) << j;
        any_keep |= keep;
        all_plain &= plain;
      }
    } else {
      for (int j = 0; j < kKeysPerThread && first_key + j < a.seqlen_kv; ++j) {
        const E element = reinterpret_cast<const E*>(first)[j * a.mask.stride_column];
        bool keep, plain;
        classify(kType, as_value<kType>(element), keep, plain);
        keep_bits |= static_cast<uint64_t>(keep) << j;
        any_keep |= keep;
        all_plain &= plain;
      }
    }
  }
  if (one_row) {
    __shared__ uint64_t first_row_bits[2];
    if (threadIdx.x < 2) first_row_bits[threadIdx.x] = keep_bits;
    __syncthreads();
    if (threadIdx.x >= 2 && row < a.seqlen_q) keep_bits = first_row_bits[threadIdx.x % 2];
  }
  if (a.bits != nullptr) {  // words 2h and 2h + 1 of the row's entry: keys 64h .. 64h + 63
    const int64_t entry = (head_index * a.q_blocks * kMaskBlock + row) * a.kv_blocks + kv_block;
    reinterpret_cast<uint2*>(a.bits)[2 * entry + threadIdx.x % 2] =
        make_uint2(static_cast<uint32_t>(keep_bits), static_cast<uint32_t>(keep_bits >> 32));
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
  const bool bf16 = dtype == SAGEATTN_DTYPE_BF16;
  switch (a.mask_type) {
    case SAGEATTN_MASK_BOOL:
      classify_tiles_kernel<__half, SAGEATTN_MASK_BOOL><<<blocks, kThreads, 0, stream>>>(a);
      break;
    case SAGEATTN_MASK_ADDITIVE_FP32:
      classify_tiles_kernel<__half, SAGEATTN_MASK_ADDITIVE_FP32><<<blocks, kThreads, 0, stream>>>(a);
      break;
    default:
      if (bf16)
        classify_tiles_kernel<__nv_bfloat16, SAGEATTN_MASK_ADDITIVE><<<blocks, kThreads, 0, stream>>>(a);
      else
        classify_tiles_kernel<__half, SAGEATTN_MASK_ADDITIVE><<<blocks, kThreads, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace sageattn
