// Float -> FP8 E4M3 conversion (sm89+): round to nearest even, saturating to +-448 (satfinite), the
// rounding docs/design/quantization.md defines and src/reference/ emulates.
#pragma once
#include <cstdint>

namespace sageattn::ptx {

// Two floats -> two E4M3 bytes, `lo` in the low byte.
__device__ __forceinline__ uint16_t e4m3x2(float lo, float hi) {
  uint16_t packed;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(packed) : "f"(hi), "f"(lo));
  return packed;
}

// Four floats -> four E4M3 bytes in one 32-bit register, x0 in the low byte.
__device__ __forceinline__ uint32_t e4m3x4(float x0, float x1, float x2, float x3) {
  return static_cast<uint32_t>(e4m3x2(x0, x1)) | (static_cast<uint32_t>(e4m3x2(x2, x3)) << 16);
}

// Two halves (a packed f16x2, low half first) -> two E4M3 bytes, the low half in the low byte.
__device__ __forceinline__ uint16_t e4m3x2_from_f16x2(uint32_t halves) {
  uint16_t packed;
  asm("cvt.rn.satfinite.e4m3x2.f16x2 %0, %1;\n" : "=h"(packed) : "r"(halves));
  return packed;
}

}  // namespace sageattn::ptx
