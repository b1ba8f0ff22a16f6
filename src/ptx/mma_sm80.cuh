// Warp-level tensor-core MMAs (mma.sync), available on sm80 and newer.
// Fragment layouts are PTX's (ISA "Matrix fragments for mma.m16n8k32 / m16n8k16"): with
// g = lane / 4 and t = lane % 4, a lane holds accumulator rows g and g + 8 and columns 2t, 2t + 1.
#pragma once
#include <cstdint>

namespace sageattn::ptx {

// D = A(16x32 int8, row) * B(32x8 int8, col) + C, int32 accumulate.
__device__ __forceinline__ void mma_m16n8k32_s8(int32_t (&acc)[4], const uint32_t (&a)[4],
                                                const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(acc[0]), "+r"(acc[1]), "+r"(acc[2]), "+r"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// D = A(16x16 fp16, row) * B(16x8 fp16, col) + C, fp32 accumulate.
__device__ __forceinline__ void mma_m16n8k16_f16(float (&acc)[4], const uint32_t (&a)[4],
                                                 const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Same with bf16 operands.
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&acc)[4], const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

}  // namespace sageattn::ptx

namespace sageattn::ptx {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
// D = A(16x32 e4m3, row) * B(32x8 e4m3, col) + C, fp32 accumulate (sm89 and newer).
__device__ __forceinline__ void mma_m16n8k32_e4m3(float (&acc)[4], const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

}  // namespace sageattn::ptx
