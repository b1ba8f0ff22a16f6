// Special-function unit wrappers and exact integer -> float conversion off the XU pipe.
#pragma once
#include <cstdint>

namespace sageattn::ptx {

// 2^x on the MUFU unit (about 2 ulp; ex2(-inf) = +0). Softmax is computed in base 2 so that the
// dequantization scale, the softmax scale and log2(e) fold into one multiply before this.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Exact int32 -> float for |v| < 2^22 without I2F: one integer add and one float add on the
// full-rate pipes instead of I2F (measured 60 per SM per clock vs 128 for FADD,
// tools/bench_softmax_ops.cu), leaving the ex2 unit (16 per clock) to the softmax. 0x4B400000 is 1.5 * 2^23: adding v to its bit pattern places v in the low
// mantissa bits, and subtracting 1.5 * 2^23 back is exact. INT8 Q.K^T sums at head dim 128 are
// bounded by 127 * 127 * 128 < 2^21.
__device__ __forceinline__ float small_int_to_float(int32_t v) {
  return __int_as_float(v + 0x4B400000) - 12582912.0f;
}

}  // namespace sageattn::ptx
