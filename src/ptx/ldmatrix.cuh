// ldmatrix: a warp loads four 8x8 matrices of 16-bit elements (8 rows of 16 bytes each) from shared
// memory straight into MMA fragment order. Lanes 8i..8i+7 give the row addresses of matrix i.
// Int8 tiles use it too: a 16-byte row is 16 int8 values and lane (g, t) receives bytes 4t..4t+3 of
// row g, which is exactly the m16n8k32 s8 fragment.
#pragma once
#include <cstdint>

namespace sageattn::ptx {

__device__ __forceinline__ uint32_t shared_address(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t smem_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr));
}

// Transposed: lane (g, t) receives elements [2t][g] and [2t+1][g] of each matrix, which turns a
// row-major [token][channel] V tile into the column-major B operand of P.V.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t smem_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr));
}

// stmatrix (sm90), the inverse of ldmatrix_x4: lanes 8i..8i+7 give the row addresses of matrix i,
// and lane (g, t) stores its register i as elements 2t, 2t + 1 of row g of matrix i, which is the
// MMA accumulator's layout (16-bit values packed in pairs). One instruction writes 512 bytes.
__device__ __forceinline__ void stmatrix_x4(uint32_t smem_addr, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_addr), "r"(r[0]),
               "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

}  // namespace sageattn::ptx
