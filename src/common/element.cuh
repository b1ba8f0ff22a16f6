// Conversions between the 16-bit input dtypes and float, eight elements (one 16-byte vector) at a time.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace sageattn {

template <typename T>
struct Element;

template <>
struct Element<__half> {
  __device__ static float2 to_float2(uint32_t bits) {
    return __half22float2(*reinterpret_cast<const __half2*>(&bits));
  }
  __device__ static uint32_t from_float2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  // Per half of the pair: max(acc, |bits|) (a NaN is ignored, as fmaxf does).
  __device__ static uint32_t max_abs2(uint32_t acc, uint32_t bits) {
    const __half2 m =
        __hmax2(*reinterpret_cast<const __half2*>(&acc), __habs2(*reinterpret_cast<const __half2*>(&bits)));
    return *reinterpret_cast<const uint32_t*>(&m);
  }
};

template <>
struct Element<__nv_bfloat16> {
  __device__ static float2 to_float2(uint32_t bits) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits));
  }
  __device__ static uint32_t from_float2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  __device__ static uint32_t max_abs2(uint32_t acc, uint32_t bits) {
    const __nv_bfloat162 m = __hmax2(*reinterpret_cast<const __nv_bfloat162*>(&acc),
                                     __habs2(*reinterpret_cast<const __nv_bfloat162*>(&bits)));
    return *reinterpret_cast<const uint32_t*>(&m);
  }
};

// Unpacks a 16-byte vector of eight 16-bit elements.
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& v, float (&out)[8]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = Element<T>::to_float2(words[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

}  // namespace sageattn
