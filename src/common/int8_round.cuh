// INT8 rounding without the conversion pipe, shared by the pre-pass (quant/quantize_qk_item.cuh) and
// the sm90 kernel's Q quantization (sm90/q_quantize.cuh), which must round identically.
#pragma once
#include <cstdint>

namespace sageattn {

// rint(x * inv) of the exact product (docs/design/quantization.md), clamped to [-127, 127], as the
// low byte of fma(x, inv, 1.5 * 2^23): for |x * inv| < 2^22 the sum's only rounding is to an
// integer, half to even, and its mantissa holds that integer in two's complement. Callers pass
// inv = 127 / amax (rounded) and |x| <= amax, so |x * inv| rounds to at most 127 and the clamp
// never binds. One FFMA per value (a multiply and an add before session 22: the product rounded
// to float first, one instruction more per value in Q and K), instead of an F2I on the
// 16-per-clock conversion pipe and two integer clamps.
__device__ __forceinline__ uint32_t int8_byte_bits(float x, float inv) {
  return __float_as_uint(__fmaf_rn(x, inv, 12582912.f));
}

// Packs the low bytes of four words, first word lowest.
__device__ __forceinline__ uint32_t pack_low_bytes(uint32_t b0, uint32_t b1, uint32_t b2, uint32_t b3) {
  return __byte_perm(__byte_perm(b0, b1, 0x0040u), __byte_perm(b2, b3, 0x0040u), 0x5410u);
}

}  // namespace sageattn
