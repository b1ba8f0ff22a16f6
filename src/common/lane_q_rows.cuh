// The Q rows one lane quantizes inside an attention kernel (sm80/q_quantize.cuh,
// sm90/q_quantize.cuh): rows row0 + lane / 4 + 8 r, the rows the lane's MMA accumulators hold, each
// as kVectors 16-byte vectors, vector j being the 8 columns from 8 (4 j + lane % 4) so that each
// load instruction of a quad reads 64 contiguous bytes of its row. Rows at or past `seqlen` and
// columns at or past `head_dim` are zeros. Rounding is the pre-pass's (int8_round.cuh).
#pragma once
#include <cstdint>

#include "common/element.cuh"
#include "common/int8_round.cuh"
#include "common/rotation.h"

namespace sageattn {

template <typename T, int kRows, int kVectors>
struct LaneQRows {
  uint4 raw[kRows][kVectors];

  // Issues every load before any use.
  __device__ __forceinline__ void load(const T* head_rows, int64_t stride_token, int row0, int seqlen, int head_dim) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = row0 + lane / 4 + 8 * r;
#pragma unroll
      for (int j = 0; j < kVectors; ++j) {
        const int col = 8 * (4 * j + lane % 4);
        raw[r][j] = make_uint4(0u, 0u, 0u, 0u);
        if (row < seqlen && col < head_dim)
          raw[r][j] = *reinterpret_cast<const uint4*>(head_rows + row * stride_token + col);
      }
    }
  }

  // The 8 values of vector j of row r as quantized: rotated when the call rotates Q and K.
  __device__ __forceinline__ void values(int r, int j, bool rotate, float (&x)[8]) const {
    unpack8<T>(raw[r][j], x);
    if (rotate) rotate_block8(x);
  }

  // max |value| over this lane's rows (0 for none).
  __device__ __forceinline__ float abs_max(bool rotate) const {
    float m = 0.f;
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int j = 0; j < kVectors; ++j) {
        float x[8];
        values(r, j, rotate, x);
#pragma unroll
        for (int e = 0; e < 8; ++e) m = fmaxf(m, fabsf(x[e]));
      }
    return m;
  }

  // Vector j of row r as 8 INT8 bytes (inv = 127 / the group's max |value|, 0 for a zero group).
  __device__ __forceinline__ uint2 int8_bytes(int r, int j, bool rotate, float inv) const {
    float x[8];
    values(r, j, rotate, x);
    uint32_t b[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) b[e] = int8_byte_bits(x[e], inv);
    return make_uint2(pack_low_bytes(b[0], b[1], b[2], b[3]), pack_low_bytes(b[4], b[5], b[6], b[7]));
  }
};

}  // namespace sageattn
