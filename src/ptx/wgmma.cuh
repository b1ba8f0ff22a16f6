// Warpgroup MMA (wgmma, sm_90a only): shared-memory matrix descriptors, the shapes the sm90
// kernel issues, and the fences that order them against ordinary register use.
//
// Accumulator layout (PTX ISA "wgmma .m64nNk32 register fragment D"): warp w of the warpgroup owns
// rows 16w..16w+15; with g = lane / 4 and t = lane % 4, element 4j + i of a thread is row
// 16w + g + 8 * (i / 2), column 8j + 2t + (i % 2). That is the mma.sync m16n8 accumulator repeated
// over N / 8 column blocks, so the softmax code of the sm80 kernel carries over.
// 8-bit register A fragment (k32): a0 = row g, columns 4t..4t+3; a1 = row g + 8, same columns;
// a2, a3 = the same rows at columns 16 + 4t..16 + 4t + 3.
#pragma once
#include <cstdint>

namespace sageattn::ptx {

// Matrix descriptor of a K-major tile with 128-byte rows and the 128-byte swizzle (16-byte chunk c
// of row r stored at chunk c ^ (r % 8)); the tile must start on a 1024-byte boundary. Eight rows
// form one 1024-byte swizzle atom, so the stride between 8-row groups is 1024 bytes; the leading
// byte offset is unused for swizzled K-major tiles (one k32 step of 8-bit data stays inside a
// row). Advancing the start address by 32 bytes selects the next k32 slice: the hardware applies
// the swizzle to the final address, so an offset inside the atom composes correctly.
__device__ __forceinline__ uint64_t smem_descriptor_sw128(uint32_t smem_addr, uint32_t leading_bytes,
                                                          uint32_t stride_bytes) {
  constexpr uint64_t kSwizzle128B = 1;
  return static_cast<uint64_t>((smem_addr & 0x3ffff) >> 4) | (static_cast<uint64_t>(leading_bytes >> 4) << 16) |
         (static_cast<uint64_t>(stride_bytes >> 4) << 32) | (kSwizzle128B << 62);
}
__device__ __forceinline__ uint64_t smem_descriptor_k_major_sw128(uint32_t smem_addr) {
  return smem_descriptor_sw128(smem_addr, 16, 1024);
}

// The same for a K-major tile of 64-byte rows with the 64-byte swizzle (16-byte chunk c of row r
// stored at chunk c ^ ((r / 2) % 4)); the tile must start on a 512-byte boundary. Eight rows form
// one 512-byte atom (the stride between 8-row groups); k32 slices advance the start address by 32
// bytes as above.
__device__ __forceinline__ uint64_t smem_descriptor_k_major_sw64(uint32_t smem_addr) {
  constexpr uint64_t kSwizzle64B = 2;
  return static_cast<uint64_t>((smem_addr & 0x3ffff) >> 4) | (static_cast<uint64_t>(16 >> 4) << 16) |
         (static_cast<uint64_t>(512 >> 4) << 32) | (kSwizzle64B << 62);
}
// K-major INT8 rows of kRowBytes (64 or 128) with the swizzle of their width.
template <int kRowBytes>
__device__ __forceinline__ uint64_t smem_descriptor_k_major(uint32_t smem_addr) {
  static_assert(kRowBytes == 64 || kRowBytes == 128, "64- or 128-byte rows");
  return kRowBytes == 128 ? smem_descriptor_k_major_sw128(smem_addr) : smem_descriptor_k_major_sw64(smem_addr);
}

// Matrix descriptor of an MN-major 16-bit tile with the 128-byte swizzle (the B operand of a
// transposed wgmma: N contiguous). Its 1024-byte swizzle atoms are 8 K-lines of 64 N-elements
// (128 bytes each, chunk c of line r at c ^ (r % 8)); atoms follow each other along K every 1024
// bytes (the stride byte offset) and along N every `panel_bytes` (the leading byte offset: the
// next 64 elements of N). Advancing the start address by 1024 bytes selects the next 8 K-lines.
__device__ __forceinline__ uint64_t smem_descriptor_mn_major_sw128(uint32_t smem_addr, uint32_t panel_bytes) {
  return smem_descriptor_sw128(smem_addr, panel_bytes, 1024);
}

// Orders this thread's ordinary shared-memory writes before later async-proxy reads (wgmma, bulk
// copies) of the same bytes. Not needed for tiles that arrive by bulk copy (the mbarrier orders them).
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// The compiler does not know that wgmma writes its accumulators asynchronously: pinning each
// register at the fence/wait points keeps reads and writes of them from moving across.
template <int N>
__device__ __forceinline__ void fence_operands(float (&regs)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(regs[i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_operands(int32_t (&regs)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(regs[i])::"memory");
}

#define SAGEATTN_WGMMA_D64                                                                           \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
  "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, "  \
  "%40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, "  \
  "%59, %60, %61, %62, %63}"
#define SAGEATTN_WGMMA_D32                                                                           \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
  "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define SAGEATTN_WGMMA_D128 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, " \
  "%39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, " \
  "%58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, " \
  "%77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, " \
  "%127}"
#define SAGEATTN_WGMMA_OUT8(c, d, b) \
  c(d[b + 0]), c(d[b + 1]), c(d[b + 2]), c(d[b + 3]), c(d[b + 4]), c(d[b + 5]), c(d[b + 6]), c(d[b + 7])
#define SAGEATTN_WGMMA_OUT64(c, d)                                                            \
  SAGEATTN_WGMMA_OUT8(c, d, 0), SAGEATTN_WGMMA_OUT8(c, d, 8), SAGEATTN_WGMMA_OUT8(c, d, 16),  \
      SAGEATTN_WGMMA_OUT8(c, d, 24), SAGEATTN_WGMMA_OUT8(c, d, 32), SAGEATTN_WGMMA_OUT8(c, d, 40), \
      SAGEATTN_WGMMA_OUT8(c, d, 48), SAGEATTN_WGMMA_OUT8(c, d, 56)
#define SAGEATTN_WGMMA_OUT128(c, d)                                                                  \
  SAGEATTN_WGMMA_OUT8(c, d, 0), SAGEATTN_WGMMA_OUT8(c, d, 8), SAGEATTN_WGMMA_OUT8(c, d, 16),            \
      SAGEATTN_WGMMA_OUT8(c, d, 24), SAGEATTN_WGMMA_OUT8(c, d, 32), SAGEATTN_WGMMA_OUT8(c, d, 40),      \
      SAGEATTN_WGMMA_OUT8(c, d, 48), SAGEATTN_WGMMA_OUT8(c, d, 56), SAGEATTN_WGMMA_OUT8(c, d, 64),      \
      SAGEATTN_WGMMA_OUT8(c, d, 72), SAGEATTN_WGMMA_OUT8(c, d, 80), SAGEATTN_WGMMA_OUT8(c, d, 88),      \
      SAGEATTN_WGMMA_OUT8(c, d, 96), SAGEATTN_WGMMA_OUT8(c, d, 104), SAGEATTN_WGMMA_OUT8(c, d, 112),    \
      SAGEATTN_WGMMA_OUT8(c, d, 120)
#define SAGEATTN_WGMMA_OUT32(c, d)                                                           \
  SAGEATTN_WGMMA_OUT8(c, d, 0), SAGEATTN_WGMMA_OUT8(c, d, 8), SAGEATTN_WGMMA_OUT8(c, d, 16), \
      SAGEATTN_WGMMA_OUT8(c, d, 24)

// D(64x128 s32) (+)= A(64x32 s8, smem) * B(32x128 s8, smem, K-major). accumulate = false overwrites D.
__device__ __forceinline__ void wgmma_m64n128k32_s8(int32_t (&d)[64], uint64_t desc_a, uint64_t desc_b,
                                                    bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 " SAGEATTN_WGMMA_D64 ", %64, %65, p;\n}\n"
      : SAGEATTN_WGMMA_OUT64("+r", d)
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)));
}

// The P.V wgmmas, A from registers, D (+)= A * B with f32 accumulators: one macro for every shape.
// name, regs (accumulators per thread = N / 2), the instruction's shape and types, the accumulator
// list and operands, the operand numbers of a0 (then a1-a3), the descriptor and the predicate, and
// the trailing immediates (scale-a, scale-b, and for 16-bit B its transpose flag).
#define SAGEATTN_WGMMA_REG_A(name, regs, shape, d_list, d_out, a0, a1, a2, a3, desc, pred, imm)  \
  __device__ __forceinline__ void name(float(&d)[regs], const uint32_t(&a)[4], uint64_t desc_b, \
                                       bool accumulate) {                                        \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" pred ", 0;\n"                             \
                 "wgmma.mma_async.sync.aligned." shape " " d_list                                \
                 ", {%" a0 ", %" a1 ", %" a2 ", %" a3 "}, %" desc ", p, " imm ";\n}\n"           \
                 : d_out("+f", d)                                                                \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b),                      \
                   "r"(static_cast<int>(accumulate)));                                           \
  }

// E4M3: A(64x32, registers) * B(32xN, smem, K-major), overloaded by the accumulator's size: N = 128
// (head dim 128), 64 (head dim 64) and 256 (head dim 256: the descriptor walks 32 groups of 8 channel
// rows, 1024 bytes apart, as at N = 128).
SAGEATTN_WGMMA_REG_A(wgmma_pv_e4m3, 64, "m64n128k32.f32.e4m3.e4m3", SAGEATTN_WGMMA_D64, SAGEATTN_WGMMA_OUT64, "64",
                     "65", "66", "67", "68", "69", "1, 1")
SAGEATTN_WGMMA_REG_A(wgmma_pv_e4m3, 32, "m64n64k32.f32.e4m3.e4m3", SAGEATTN_WGMMA_D32, SAGEATTN_WGMMA_OUT32, "32",
                     "33", "34", "35", "36", "37", "1, 1")
SAGEATTN_WGMMA_REG_A(wgmma_pv_e4m3, 128, "m64n256k32.f32.e4m3.e4m3", SAGEATTN_WGMMA_D128, SAGEATTN_WGMMA_OUT128,
                     "128", "129", "130", "131", "132", "133", "1, 1")

// f16 or bf16: A(64x16, registers) * B(16xN, smem, MN-major: transposed, so that V tiles keep the
// token-major layout of the caller's tensor), N = 128 or 64 (head dim 64: one MN-major panel).
// 16-bit register A fragment (k16): a0 = row g, columns 2t, 2t+1; a1 = row g + 8, same columns;
// a2, a3 = the same rows at columns 8 + 2t, 8 + 2t + 1: exactly the f32 accumulator's pairs of one
// 16-column slice, so P needs no shuffles. Unlike FP8, 16-bit wgmma accumulates in full FP32.
SAGEATTN_WGMMA_REG_A(wgmma_m64n128k16_f16, 64, "m64n128k16.f32.f16.f16", SAGEATTN_WGMMA_D64, SAGEATTN_WGMMA_OUT64,
                     "64", "65", "66", "67", "68", "69", "1, 1, 1")
SAGEATTN_WGMMA_REG_A(wgmma_m64n128k16_bf16, 64, "m64n128k16.f32.bf16.bf16", SAGEATTN_WGMMA_D64, SAGEATTN_WGMMA_OUT64,
                     "64", "65", "66", "67", "68", "69", "1, 1, 1")
SAGEATTN_WGMMA_REG_A(wgmma_m64n64k16_f16, 32, "m64n64k16.f32.f16.f16", SAGEATTN_WGMMA_D32, SAGEATTN_WGMMA_OUT32,
                     "32", "33", "34", "35", "36", "37", "1, 1, 1")
SAGEATTN_WGMMA_REG_A(wgmma_m64n64k16_bf16, 32, "m64n64k16.f32.bf16.bf16", SAGEATTN_WGMMA_D32, SAGEATTN_WGMMA_OUT32,
                     "32", "33", "34", "35", "36", "37", "1, 1, 1")
#undef SAGEATTN_WGMMA_REG_A

#undef SAGEATTN_WGMMA_OUT128
#undef SAGEATTN_WGMMA_OUT64
#undef SAGEATTN_WGMMA_OUT32
#undef SAGEATTN_WGMMA_D32
#undef SAGEATTN_WGMMA_OUT8
#undef SAGEATTN_WGMMA_D64
#undef SAGEATTN_WGMMA_D128

// Register reallocation between warpgroups (setmaxnreg): the producer gives registers back so
// that the consumers, which hold S, P and O in registers, can grow.
template <int kRegisters>
__device__ __forceinline__ void warpgroup_release_registers() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}
template <int kRegisters>
__device__ __forceinline__ void warpgroup_claim_registers() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}

}  // namespace sageattn::ptx
