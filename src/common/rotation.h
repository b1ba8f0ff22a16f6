// The rotation of Q and K rows before INT8 quantization (docs/design/quantization.md, "Rotation"):
// a Walsh-Hadamard transform on every aligned block of 8 channels. Q.K^T is unchanged up to the
// factor 8 (H8 H8^T = 8 I), which Q's stored scale absorbs exactly (kRotationScale, a power of two);
// a channel with outliers is spread over its block, so the row maximum that sets a group's INT8 step
// drops by up to sqrt(8). Blocks of 8 live in one thread's registers on the GPU (every lane holds 8
// consecutive channels): no shuffles, a few adds per element. Shared by the pre-pass and the CPU
// emulation so that both round identically (adds and subtracts only, in this order).
#pragma once

#if defined(__CUDACC__)
#define SAGEATTN_HOST_DEVICE __host__ __device__
#define SAGEATTN_UNROLL _Pragma("unroll")
#else
#define SAGEATTN_HOST_DEVICE
#define SAGEATTN_UNROLL
#endif

namespace sageattn {

constexpr int kRotationBlock = 8;
constexpr float kRotationScale = 0.125f;  // 1 / kRotationBlock

SAGEATTN_HOST_DEVICE inline void rotate_block8(float (&x)[kRotationBlock]) {
  SAGEATTN_UNROLL
  for (int half = 1; half < kRotationBlock; half *= 2)
    SAGEATTN_UNROLL
    for (int i = 0; i < kRotationBlock; i += 2 * half)
      SAGEATTN_UNROLL
      for (int j = i; j < i + half; ++j) {
        const float a = x[j], b = x[j + half];
        x[j] = a + b;
        x[j + half] = a - b;
      }
}

}  // namespace sageattn
