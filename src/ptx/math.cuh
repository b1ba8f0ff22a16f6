// Special-function unit wrappers.
#pragma once

namespace sageattn::ptx {

// 2^x on the MUFU unit (about 2 ulp; ex2(-inf) = +0). Softmax is computed in base 2 so that the
// dequantization scale, the softmax scale and log2(e) fold into one multiply before this.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace sageattn::ptx
