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
    if (!rotate) {
      // The values are the 16-bit inputs themselves: their maximum |value| is taken on packed pairs
      // before any conversion (exact: |x| and comparisons of 16-bit values are; a NaN is ignored as
      // fmaxf does), one instruction per two values instead of a conversion and a max per value.
      // Four partial maxima: a single chain would serialize 4 kRows kVectors instructions.
      uint32_t part[4] = {0u, 0u, 0u, 0u};
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int j = 0; j < kVectors; ++j) {
          part[0] = Element<T>::max_abs2(part[0], raw[r][j].x);
          part[1] = Element<T>::max_abs2(part[1], raw[r][j].y);
          part[2] = Element<T>::max_abs2(part[2], raw[r][j].z);
          part[3] = Element<T>::max_abs2(part[3], raw[r][j].w);
        }
      const uint32_t pair =
          Element<T>::max_abs2(Element<T>::max_abs2(part[0], part[1]), Element<T>::max_abs2(part[2], part[3]));
      const float2 f = Element<T>::to_float2(pair);
      return fmaxf(f.x, f.y);
    }
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

  // The values between the maximum and the bytes: with kKeep converted (and rotated) once and held
  // (kRows * kVectors * 8 floats, which fit the callers' registers at 64: ~4 instructions per value
  // fewer), else converted again for the bytes.
  template <bool kKeep>
  struct Kept {
    float x[kKeep ? kRows : 1][kKeep ? kVectors : 1][8];
  };

  // max |value| over this lane's rows, filling `kept`.
  template <bool kKeep>
  __device__ __forceinline__ float abs_max_keeping(bool rotate, Kept<kKeep>& kept) const {
    if constexpr (!kKeep) {
      return abs_max(rotate);
    } else {
      const float unrotated = rotate ? 0.f : abs_max(false);  // the maximum of the packed inputs
      all_values(rotate, kept.x);
      return rotate ? abs_max_of(kept.x) : unrotated;
    }
  }

  // Vector j of row r as 8 INT8 bytes, from `kept` (abs_max_keeping) or converted again.
  template <bool kKeep>
  __device__ __forceinline__ uint2 int8_bytes_from(const Kept<kKeep>& kept, int r, int j, bool rotate,
                                                   float inv) const {
    if constexpr (kKeep) return int8_bytes_of(kept.x[r][j], inv);
    else return int8_bytes(r, j, rotate, inv);
  }

  // Every value of this lane's rows as quantized, converted once for both the maximum
  // (abs_max_of) and the bytes (int8_bytes_of): abs_max and int8_bytes each convert and rotate.
  __device__ __forceinline__ void all_values(bool rotate, float (&x)[kRows][kVectors][8]) const {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int j = 0; j < kVectors; ++j) values(r, j, rotate, x[r][j]);
  }

  __device__ __forceinline__ static float abs_max_of(const float (&x)[kRows][kVectors][8]) {
    float m = 0.f;
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int j = 0; j < kVectors; ++j)
#pragma unroll
        for (int e = 0; e < 8; ++e) m = fmaxf(m, fabsf(x[r][j][e]));
    return m;
  }

  // 8 values as INT8 bytes (inv = 127 / the group's max |value|, 0 for a zero group).
  __device__ __forceinline__ static uint2 int8_bytes_of(const float (&x)[8], float inv) {
    uint32_t b[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) b[e] = int8_byte_bits(x[e], inv);
    return make_uint2(pack_low_bytes(b[0], b[1], b[2], b[3]), pack_low_bytes(b[4], b[5], b[6], b[7]));
  }

  // Vector j of row r as 8 INT8 bytes.
  __device__ __forceinline__ uint2 int8_bytes(int r, int j, bool rotate, float inv) const {
    float x[8];
    values(r, j, rotate, x);
    return int8_bytes_of(x, inv);
  }
};

}  // namespace sageattn
