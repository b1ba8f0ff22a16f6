// The sm90 building blocks against host references, one wrapper at a time: wgmma (int8 with both
// operands from swizzled shared memory, at head dim 256 in two panels, e4m3 up to N = 256, f16 and
// bf16 with A from registers), the INT8 row layout (common/swizzled_rows.h), the bulk copy +
// mbarrier round trip, the L2 prefetch, stmatrix with the bulk store, a TMA box load (swizzle, zero
// fill), the E4M3 pack, the INT8 rounding, and the polynomial exp2 helper. A failure here names the
// broken piece; the end-to-end GPU suite only says "the output is wrong".
// Skips (GTEST_SKIP) without a compute capability 9.0 GPU, except the host-only layout test.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "common/fast_exp2.cuh"
#include "common/int8_round.cuh"
#include "common/swizzled_rows.h"
#include "ptx/convert.cuh"
#include "ptx/cp_async.cuh"
#include "ptx/ldmatrix.cuh"
#include "ptx/math.cuh"
#include "ptx/mbarrier.cuh"
#include "ptx/wgmma.cuh"
#include "sm90/traits.cuh"
#include "api/tensor_map.h"
#include "reference/reference.h"
#include "../int8_near_ties.h"
#include "sm90_gpu.h"

namespace {

constexpr int kTile = 128 * 128;  // bytes of one swizzled tile: 128 rows of 128 bytes

// Byte offset of (row, column byte) in a tile of 128-byte rows with the 128-byte swizzle.
int swizzled(int row, int byte) { return row * 128 + (((byte / 16) ^ (row % 8)) * 16) + byte % 16; }
// The same for 64-byte rows with the 64-byte swizzle (address bits 7-8 into bits 4-5).
int swizzled64(int row, int byte) { return row * 64 + (((byte / 16) ^ ((row / 2) % 4)) * 16) + byte % 16; }

// Byte offset of (row, byte col) in K-major INT8 tiles of `rows` rows of head dim kD that follow each
// other (row may lie past the first tile): what the sm90 wgmma descriptors read. Written out here, apart
// from common/swizzled_rows.h, so that a wrong layout there fails (SwizzledRowsMatchesPanelLayout)
// instead of agreeing with itself. kD = 64 or 128: rows of kD bytes with the swizzle of that width.
// kD = 256: no swizzle spans a 256-byte row, so a tile is two panels of [rows][128 bytes], bytes
// 0-127 of every row first, then bytes 128-255 of every row, each panel a 128-byte-swizzled tile.
template <int kD>
int64_t panel_layout(int rows, int64_t row, int col) {
  static_assert(kD == 64 || kD == 128 || kD == 256, "sm90 head dims");
  constexpr int kPanelRowBytes = kD == 64 ? 64 : 128;
  const int64_t tile = row / rows;
  const int in_tile = static_cast<int>(row - tile * rows);
  const int panel = col / kPanelRowBytes, byte = col % kPanelRowBytes;
  const int in_panel = kPanelRowBytes == 128 ? swizzled(in_tile, byte) : swizzled64(in_tile, byte);
  return tile * rows * kD + int64_t{panel} * rows * kPanelRowBytes + in_panel;
}

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  explicit DeviceBuffer(size_t n) { cudaMalloc(&ptr, n * sizeof(T)); }
  ~DeviceBuffer() { cudaFree(ptr); }
};

// ---- wgmma s8: S = Q . K^T over kD / 32 k32 steps, exactly as the kernel issues it ---------------

// Q [64][kD] and K [128][kD] INT8 tiles as panel_layout<kD> stores them; the descriptors and k32 steps
// are issue_qk's (sm90/kernel.cuh): rows of SwizzledRows<kD>::kRowBytes, step kk at
// HeadDim<kD>::step_offset of the operand's rows (the next panel after four steps at head dim 256).
// Head dim 256 takes 16 + 32 KB, exactly the 48 KB of static shared memory.
template <int kD>
__global__ void wgmma_s8_kernel(const int8_t* q_tile, const int8_t* k_tile, int32_t* out) {
  using Hd = sageattn::sm90::HeadDim<kD>;
  constexpr int kRowBytes = sageattn::SwizzledRows<kD>::kRowBytes;
  __shared__ __align__(1024) int8_t q_smem[64 * kD];
  __shared__ __align__(1024) int8_t k_smem[128 * kD];
  for (int i = threadIdx.x; i < 64 * kD; i += 128) q_smem[i] = q_tile[i];
  for (int i = threadIdx.x; i < 128 * kD; i += 128) k_smem[i] = k_tile[i];
  sageattn::ptx::fence_proxy_async_shared();  // generic writes -> async-proxy (wgmma) reads
  __syncthreads();
  const uint64_t q_desc = sageattn::ptx::smem_descriptor_k_major<kRowBytes>(sageattn::ptx::shared_address(q_smem));
  const uint64_t k_desc = sageattn::ptx::smem_descriptor_k_major<kRowBytes>(sageattn::ptx::shared_address(k_smem));
  int32_t acc[64];
  sageattn::ptx::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < Hd::kQkSteps; ++kk)
    sageattn::ptx::wgmma_m64n128k32_s8(acc, q_desc + Hd::step_offset(64, kk), k_desc + Hd::step_offset(128, kk),
                                       kk > 0);
  sageattn::ptx::wgmma_commit();
  sageattn::ptx::wgmma_wait<0>();
  sageattn::ptx::fence_operands(acc);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = 0; i < 64; ++i) {
    const int row = 16 * warp + lane / 4 + 8 * ((i / 2) % 2);
    const int col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
    out[row * 128 + col] = acc[i];
  }
}

template <int kD>
void check_wgmma_s8() {
  std::mt19937 rng(kD);
  std::uniform_int_distribution<int> dist(-127, 127);
  std::vector<int8_t> q(64 * kD), k(128 * kD), q_sw(q.size()), k_sw(k.size());
  for (auto& x : q) x = static_cast<int8_t>(dist(rng));
  for (auto& x : k) x = static_cast<int8_t>(dist(rng));
  for (int r = 0; r < 64; ++r)
    for (int c = 0; c < kD; ++c) q_sw[panel_layout<kD>(64, r, c)] = q[r * kD + c];
  for (int r = 0; r < 128; ++r)
    for (int c = 0; c < kD; ++c) k_sw[panel_layout<kD>(128, r, c)] = k[r * kD + c];
  DeviceBuffer<int8_t> dq(q.size()), dk(k.size());
  DeviceBuffer<int32_t> dout(64 * 128);
  CUDA_OK(cudaMemcpy(dq.ptr, q_sw.data(), q.size(), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dk.ptr, k_sw.data(), k.size(), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(dout.ptr, 0x7f, 64 * 128 * sizeof(int32_t)));  // poison
  wgmma_s8_kernel<kD><<<1, 128>>>(dq.ptr, dk.ptr, dout.ptr);
  CUDA_OK(cudaGetLastError());  // e.g. no kernel image for this GPU
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<int32_t> out(64 * 128);
  CUDA_OK(cudaMemcpy(out.data(), dout.ptr, out.size() * sizeof(int32_t), cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int r = 0; r < 64; ++r)
    for (int n = 0; n < 128; ++n) {
      int32_t want = 0;
      for (int c = 0; c < kD; ++c) want += int32_t{q[r * kD + c]} * int32_t{k[n * kD + c]};
      bad += out[r * 128 + n] != want;
    }
  EXPECT_EQ(bad, 0) << "of 8192 int32 results, head dim " << kD;
}

TEST(Sm90Ptx, WgmmaS8MatchesHostProduct) {
  REQUIRE_SM90();
  check_wgmma_s8<128>();
}

// Head dim 64: 64-byte rows, the 64-byte swizzle descriptor, two k32 steps.
TEST(Sm90Ptx, WgmmaS8Swizzle64MatchesHostProduct) {
  REQUIRE_SM90();
  check_wgmma_s8<64>();
}

// Head dim 256: eight k32 steps, the last four in the second panel of each operand (Q's at 8 KB, K's
// at 16 KB: the step offset depends on the operand's rows).
TEST(Sm90Ptx, WgmmaS8TwoPanels256MatchesHostProduct) {
  REQUIRE_SM90();
  check_wgmma_s8<256>();
}

// ---- the INT8 row layout: common/swizzled_rows.h against panel_layout (host only) ------------------

// The attention kernel's Q rows (sm90/q_quantize.cuh) and the pre-pass's K rows (quant/
// quantize_qk_item.cuh) are written through SwizzledRows<kD>::offset; the wgmmas above read
// panel_layout. Checks every (row, col) of two consecutive tiles, that each tile is a permutation of
// its own bytes (no two bytes on one place, none outside), and that each k32 step offset of the
// descriptors (HeadDim::step_offset, in 16-byte units) lands on row 0 of its slice, which the
// swizzle leaves in place.
template <int kD>
void check_swizzled_rows(int rows) {
  using Rows = sageattn::SwizzledRows<kD>;
  const int tile_bytes = rows * kD;
  std::vector<int> hits(2 * tile_bytes, 0);
  int bad = 0, outside = 0;
  for (int row = 0; row < 2 * rows; ++row)
    for (int col = 0; col < kD; ++col) {
      const int got = Rows::offset(rows, row, col);
      if (got != panel_layout<kD>(rows, row, col) && ++bad <= 5)
        ADD_FAILURE() << "head dim " << kD << ", " << rows << " rows: (" << row << ", " << col << ") at " << got
                      << ", want " << panel_layout<kD>(rows, row, col);
      const int tile_start = row / rows * tile_bytes;  // each tile covers its own bytes
      if (got < tile_start || got >= tile_start + tile_bytes)
        ++outside;
      else
        ++hits[got];
    }
  EXPECT_EQ(bad, 0) << "head dim " << kD << ", " << rows << " rows";
  EXPECT_EQ(outside, 0) << "head dim " << kD << ", " << rows << " rows";
  EXPECT_EQ(std::count(hits.begin(), hits.end(), 1), 2 * tile_bytes) << "head dim " << kD << ", " << rows << " rows";
  for (int kk = 0; kk < kD / 32; ++kk)
    EXPECT_EQ(int64_t{sageattn::sm90::HeadDim<kD>::step_offset(rows, kk)} * 16, panel_layout<kD>(rows, 0, 32 * kk))
        << "head dim " << kD << ", " << rows << " rows, k32 step " << kk;
}

TEST(Sm90Ptx, SwizzledRowsMatchesPanelLayout) {
  for (const int rows : {64, 128}) {
    check_swizzled_rows<64>(rows);
    check_swizzled_rows<128>(rows);
    check_swizzled_rows<256>(rows);
  }
  // Workspace rows: the int64_t instantiation past 2^31 bytes (row 20'000'000 of head dim 256 starts
  // at 5.12e9), two tiles from a tile boundary.
  constexpr int64_t kFarRow = 20'000'000;
  for (const int rows : {64, 128}) {
    int bad = 0;
    for (int64_t row = kFarRow; row < kFarRow + 2 * rows; ++row)
      for (int col = 0; col < 256; ++col) {
        const int64_t got = sageattn::SwizzledRows<256>::offset(rows, row, col);
        static_assert(std::is_same_v<decltype(sageattn::SwizzledRows<256>::offset(rows, row, col)), int64_t>);
        bad += got != panel_layout<256>(rows, row, col) || got < (int64_t{1} << 31);
      }
    EXPECT_EQ(bad, 0) << rows << " rows";
  }
}

// ---- P.V wgmmas (A from registers): shared output and check -----------------------------------------

// Row width of the P.V tests' output arrays: at least 128, so that the N = 64 wgmmas leave columns
// unwritten (their NaN poison must survive), and all of N = 256.
constexpr int out_width(int n) { return n > 128 ? n : 128; }

// The f32 accumulator fragment of a 64 x 2N wgmma (ptx/wgmma.cuh) to a row-major
// [64][out_width(2N)] array (its first 2N columns).
template <int N>
__device__ void store_accumulator(float (&acc)[N], float* out) {
  constexpr int kWidth = out_width(2 * N);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = 0; i < N; ++i) {
    const int row = 16 * warp + lane / 4 + 8 * ((i / 2) % 2);
    const int col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
    out[row * kWidth + col] = acc[i];
  }
}

// Copies the device result [64][W] back, W = v's row width, and counts the elements of its first
// `columns` columns that differ from p[64][128] . v[128][W] summed in double (the inputs of these
// tests make every product and partial sum exact in float).
int product_mismatches(const float* device_out, const std::vector<float>& p, const std::vector<float>& v,
                       int columns) {
  const int width = static_cast<int>(v.size() / 128);
  std::vector<float> out(64 * width);
  if (cudaMemcpy(out.data(), device_out, out.size() * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess)
    return -1;
  int bad = 0;
  for (int r = 0; r < 64; ++r)
    for (int n = 0; n < columns; ++n) {
      double want = 0.0;
      for (int kk = 0; kk < 128; ++kk) want += double(p[r * 128 + kk]) * v[kk * width + n];
      bad += out[r * width + n] != static_cast<float>(want);
    }
  return bad;
}

// ---- wgmma e4m3: O = P . V with P in the register fragment, V^T swizzled in shared memory ----------

// A fragment of 8-bit k32 (PTX ISA): a0 = row g, k 4t..4t+3; a1 = row g + 8; a2, a3 = k + 16.
// kN: 128 (m64n128k32), 64 (m64n64k32, head dim 64: V^T rows 0..63 of the tile) or 256 output columns
// (m64n256k32, head dim 256: a V^T tile of 256 rows, 32 KB, the descriptor's 8-row groups 1024 bytes
// apart as at 128).
template <int kN>
__global__ void wgmma_e4m3_kernel(const uint8_t* p, const uint8_t* vt_tile, float* out) {
  __shared__ __align__(1024) uint8_t v_smem[kN * 128];
  for (int i = threadIdx.x; i < kN * 128; i += 128) v_smem[i] = vt_tile[i];
  sageattn::ptx::fence_proxy_async_shared();
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  uint32_t a[4][4];
  for (int kk = 0; kk < 4; ++kk)
    for (int reg = 0; reg < 4; ++reg) {
      const int row = 16 * warp + g + 8 * (reg % 2);
      const int k0 = 32 * kk + 16 * (reg / 2) + 4 * t;
      uint32_t word = 0;
      for (int b = 0; b < 4; ++b) word |= uint32_t{p[row * 128 + k0 + b]} << (8 * b);
      a[kk][reg] = word;
    }
  const uint64_t v_desc = sageattn::ptx::smem_descriptor_k_major_sw128(sageattn::ptx::shared_address(v_smem));
  float acc[kN / 2];
  sageattn::ptx::wgmma_fence();
  for (int kk = 0; kk < 4; ++kk) sageattn::ptx::wgmma_pv_e4m3(acc, a[kk], v_desc + 2 * kk, kk > 0);
  sageattn::ptx::wgmma_commit();
  sageattn::ptx::wgmma_wait<0>();
  sageattn::ptx::fence_operands(acc);
  store_accumulator(acc, out);
}

template <int kN>
void check_wgmma_e4m3() {
  constexpr int kW = out_width(kN);  // output and v row width; the V^T tile's rows past kN stay unread
  // Small integers are exact in E4M3 and every partial sum stays an exact small integer, so the
  // tensor core's reduced-precision FP8 accumulation cannot hide a layout error behind rounding.
  std::mt19937 rng(kN == 128 ? 2 : kN == 64 ? 3 : 7);
  std::uniform_int_distribution<int> dist(-4, 4);
  std::vector<float> p(64 * 128), v(128 * kW);  // p[row][k], v[k][n]
  std::vector<uint8_t> p_bits(p.size()), vt_sw(kW * 128);
  for (size_t i = 0; i < p.size(); ++i) p_bits[i] = sageattn::reference::float_to_e4m3_bits(p[i] = float(dist(rng)));
  for (int kk = 0; kk < 128; ++kk)
    for (int n = 0; n < kW; ++n) {
      v[kk * kW + n] = float(dist(rng));
      vt_sw[swizzled(n, kk)] = sageattn::reference::float_to_e4m3_bits(v[kk * kW + n]);  // K-major: row n
    }
  DeviceBuffer<uint8_t> dp(p_bits.size()), dv(vt_sw.size());
  DeviceBuffer<float> dout(64 * kW);
  CUDA_OK(cudaMemcpy(dp.ptr, p_bits.data(), p_bits.size(), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dv.ptr, vt_sw.data(), vt_sw.size(), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(dout.ptr, 0xff, 64 * kW * sizeof(float)));  // NaN poison
  wgmma_e4m3_kernel<kN><<<1, 128>>>(dp.ptr, dv.ptr, dout.ptr);
  CUDA_OK(cudaGetLastError());  // e.g. no kernel image for this GPU
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(product_mismatches(dout.ptr, p, v, kN), 0) << "of " << 64 * kN << " fp32 results";
  if (kN < kW) {  // the columns the narrow wgmma does not write keep the NaN poison
    std::vector<float> out(64 * kW);
    CUDA_OK(cudaMemcpy(out.data(), dout.ptr, out.size() * sizeof(float), cudaMemcpyDeviceToHost));
    int written = 0;
    for (int r = 0; r < 64; ++r)
      for (int n = kN; n < kW; ++n) written += !std::isnan(out[r * kW + n]);
    EXPECT_EQ(written, 0);
  }
}

TEST(Sm90Ptx, WgmmaE4m3RegisterAMatchesHostProduct) {
  REQUIRE_SM90();
  check_wgmma_e4m3<128>();
}

// Head dim 64: m64n64k32 (32 accumulators per thread) on the first 64 rows of a V^T tile.
TEST(Sm90Ptx, WgmmaE4m3N64RegisterAMatchesHostProduct) {
  REQUIRE_SM90();
  check_wgmma_e4m3<64>();
}

// Head dim 256: m64n256k32 (128 accumulators per thread) on a V^T tile of 256 channel rows.
TEST(Sm90Ptx, WgmmaE4m3N256RegisterAMatchesHostProduct) {
  REQUIRE_SM90();
  check_wgmma_e4m3<256>();
}

// ---- wgmma f16 / bf16: O = P . V with P in the register fragment, V MN-major in two swizzled panels --

// The 16-bit A fragment (k16): register r = row g + 8 (r % 2), k = 8 (r / 2) + 2t, +1. V is stored
// as the kernel's 16-bit V stages: panels of 64 n (n / 64) of [128 k][128 bytes], chunk c of line k
// at c ^ (k % 8); k16 step kk starts 16 lines (2048 bytes) further. The descriptor is the attention
// kernel's (smem_descriptor_mn_major_sw128), or with its two byte offsets swapped (`swapped`, a
// diagnostic: it tells a descriptor error from a layout error).
// kN: 128 output columns (two panels, m64n128k16) or 64 (head dim 64: panel 0, m64n64k16).
template <bool kBf16, int kN>
__global__ void wgmma_16bit_kernel(const uint16_t* p, const uint8_t* v_tile, bool swapped, float* out) {
  __shared__ __align__(1024) uint8_t v_smem[2 * kTile];
  for (int i = threadIdx.x; i < 2 * kTile; i += 128) v_smem[i] = v_tile[i];
  sageattn::ptx::fence_proxy_async_shared();
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  uint32_t a[8][4];
  for (int kk = 0; kk < 8; ++kk)
    for (int reg = 0; reg < 4; ++reg) {
      const int row = 16 * warp + g + 8 * (reg % 2);
      const int k0 = 16 * kk + 8 * (reg / 2) + 2 * t;
      a[kk][reg] = uint32_t{p[row * 128 + k0]} | (uint32_t{p[row * 128 + k0 + 1]} << 16);
    }
  const uint32_t v_addr = sageattn::ptx::shared_address(v_smem);
  const uint64_t v_desc = swapped ? sageattn::ptx::smem_descriptor_sw128(v_addr, 1024, kTile)
                                  : sageattn::ptx::smem_descriptor_mn_major_sw128(v_addr, kTile);
  float acc[kN / 2];
  for (int i = 0; i < kN / 2; ++i) acc[i] = 0.f;
  sageattn::ptx::wgmma_fence();
  for (int kk = 0; kk < 8; ++kk) {
    const uint64_t desc = v_desc + kk * (2048 >> 4);
    if constexpr (kN == 128) {
      if (kBf16)
        sageattn::ptx::wgmma_m64n128k16_bf16(acc, a[kk], desc, true);
      else
        sageattn::ptx::wgmma_m64n128k16_f16(acc, a[kk], desc, true);
    } else {
      if (kBf16)
        sageattn::ptx::wgmma_m64n64k16_bf16(acc, a[kk], desc, true);
      else
        sageattn::ptx::wgmma_m64n64k16_f16(acc, a[kk], desc, true);
    }
  }
  sageattn::ptx::wgmma_commit();
  sageattn::ptx::wgmma_wait<0>();
  sageattn::ptx::fence_operands(acc);
  store_accumulator(acc, out);
}

template <bool kBf16, int kN = 128>
void check_wgmma_16bit() {
  // Values with few significant bits (k / 8 for small k) are exact in fp16 and bf16, and their
  // products and sums are exact in FP32, so any layout error shows as a mismatch.
  std::mt19937 rng(kBf16 ? 5 : 4);
  std::uniform_int_distribution<int> dist(-16, 16);
  auto bits = [](float x) {
    return kBf16 ? sageattn::reference::float_to_bf16_bits(x) : sageattn::reference::float_to_fp16_bits(x);
  };
  std::vector<float> p(64 * 128), v(128 * 128);  // p[row][k], v[k][n]
  std::vector<uint16_t> p_bits(p.size());
  std::vector<uint8_t> v_sw(2 * kTile);
  for (size_t i = 0; i < p.size(); ++i) p_bits[i] = bits(p[i] = dist(rng) / 8.f);
  for (int kk = 0; kk < 128; ++kk)
    for (int n = 0; n < 128; ++n) {
      const uint16_t b = bits(v[kk * 128 + n] = dist(rng) / 8.f);
      const int offset = (n / 64) * kTile + swizzled(kk, 2 * (n % 64));  // MN-major: line kk of panel n / 64
      v_sw[offset] = static_cast<uint8_t>(b & 0xff);
      v_sw[offset + 1] = static_cast<uint8_t>(b >> 8);
    }
  DeviceBuffer<uint16_t> dp(p_bits.size());
  DeviceBuffer<uint8_t> dv(v_sw.size());
  DeviceBuffer<float> dout(64 * 128);
  CUDA_OK(cudaMemcpy(dp.ptr, p_bits.data(), p_bits.size() * sizeof(uint16_t), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dv.ptr, v_sw.data(), v_sw.size(), cudaMemcpyHostToDevice));
  auto mismatches = [&](bool swapped) {
    cudaMemset(dout.ptr, 0xff, 64 * 128 * sizeof(float));  // NaN poison
    wgmma_16bit_kernel<kBf16, kN><<<1, 128>>>(dp.ptr, dv.ptr, swapped, dout.ptr);
    if (cudaDeviceSynchronize() != cudaSuccess) return -1;
    return product_mismatches(dout.ptr, p, v, kN);
  };
  const int bad = mismatches(false);
  EXPECT_EQ(bad, 0) << "of " << 64 * kN << " fp32 results; with the descriptor's byte offsets swapped: "
                    << mismatches(true);
}

TEST(Sm90Ptx, WgmmaF16RegisterAMatchesHostProduct) {
  REQUIRE_SM90();
  check_wgmma_16bit<false>();
}

TEST(Sm90Ptx, WgmmaBf16RegisterAMatchesHostProduct) {
  REQUIRE_SM90();
  check_wgmma_16bit<true>();
}

// Head dim 64: m64n64k16 on the first panel (32 accumulators per thread).
TEST(Sm90Ptx, WgmmaF16N64RegisterAMatchesHostProduct) {
  REQUIRE_SM90();
  check_wgmma_16bit<false, 64>();
}

TEST(Sm90Ptx, WgmmaBf16N64RegisterAMatchesHostProduct) {
  REQUIRE_SM90();
  check_wgmma_16bit<true, 64>();
}

// ---- bulk copy + mbarrier: 16 KB global -> shared -> global ---------------------------------------

// One 16 KB asynchronous copy into shared memory that completes on an mbarrier (`issue(smem, bar)`,
// run by thread 0, starts it), then the tile copied out to `dst` as it landed.
template <typename Issue>
__device__ void async_tile_to_global(uint8_t* dst, Issue issue) {
  __shared__ __align__(1024) uint8_t smem[kTile];
  __shared__ __align__(8) uint64_t barrier;
  const uint32_t bar = sageattn::ptx::shared_address(&barrier);
  if (threadIdx.x == 0) {
    sageattn::ptx::mbarrier_init(bar, 1);
    sageattn::ptx::mbarrier_init_fence();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    sageattn::ptx::mbarrier_arrive_expect_tx(bar, kTile);
    issue(sageattn::ptx::shared_address(smem), bar);
  }
  sageattn::ptx::mbarrier_wait(bar, 0);
  for (int i = threadIdx.x; i < kTile; i += blockDim.x) dst[i] = smem[i];
}

__global__ void bulk_copy_kernel(const uint8_t* src, uint8_t* dst) {
  async_tile_to_global(dst, [&](uint32_t smem, uint32_t bar) {
    sageattn::ptx::bulk_copy_global_to_shared(smem, src, kTile, bar);
  });
}

TEST(Sm90Ptx, BulkCopyLandsEveryByte) {
  REQUIRE_SM90();
  std::vector<uint8_t> src(kTile);
  std::mt19937 rng(3);
  for (auto& b : src) b = static_cast<uint8_t>(rng());
  DeviceBuffer<uint8_t> dsrc(kTile), ddst(kTile);
  CUDA_OK(cudaMemcpy(dsrc.ptr, src.data(), kTile, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(ddst.ptr, 0, kTile));
  bulk_copy_kernel<<<1, 256>>>(dsrc.ptr, ddst.ptr);
  CUDA_OK(cudaGetLastError());  // e.g. no kernel image for this GPU
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint8_t> dst(kTile);
  CUDA_OK(cudaMemcpy(dst.data(), ddst.ptr, kTile, cudaMemcpyDeviceToHost));
  EXPECT_EQ(std::memcmp(src.data(), dst.data(), kTile), 0);
}

// ---- L2 prefetch: the kernel's Q-row prefetch pattern (sm90/kernel.cuh, prefetch_next_q_rows) -----

// Rows of `row_bytes` at a stride that is not a multiple of 128: each thread prefetches its rows
// (ptx::prefetch_l2_bytes, as the kernel does), then copies them. The prefetch is only a hint, so
// what can fail is a fault (a line outside the buffer's pages) or a changed value.
__global__ void prefetch_rows_kernel(const uint8_t* src, uint8_t* dst, int rows, int row_bytes, int stride) {
  for (int r = threadIdx.x; r < rows; r += blockDim.x)
    sageattn::ptx::prefetch_l2_bytes(src + static_cast<int64_t>(r) * stride, row_bytes);
  __syncthreads();
  for (int r = threadIdx.x; r < rows; r += blockDim.x)
    for (int b = 0; b < row_bytes; ++b) dst[r * row_bytes + b] = src[static_cast<int64_t>(r) * stride + b];
}

TEST(Sm90Ptx, PrefetchL2ChangesNothingOnUnalignedRows) {
  REQUIRE_SM90();
  constexpr int kRows = 193, kRowBytes = 130, kStride = 390;  // head dim 65 in fp16, 3 heads per token
  const int bytes = (kRows - 1) * kStride + kRowBytes;
  std::vector<uint8_t> src(bytes);
  std::mt19937 rng(5);
  for (auto& b : src) b = static_cast<uint8_t>(rng());
  DeviceBuffer<uint8_t> dsrc(bytes), ddst(kRows * kRowBytes);
  CUDA_OK(cudaMemcpy(dsrc.ptr, src.data(), bytes, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(ddst.ptr, 0xff, kRows * kRowBytes));
  prefetch_rows_kernel<<<1, 64>>>(dsrc.ptr + 2, ddst.ptr, kRows - 1, kRowBytes, kStride);  // odd start too
  CUDA_OK(cudaGetLastError());
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint8_t> dst(kRows * kRowBytes), after(bytes);
  CUDA_OK(cudaMemcpy(dst.data(), ddst.ptr, dst.size(), cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(after.data(), dsrc.ptr, bytes, cudaMemcpyDeviceToHost));
  EXPECT_EQ(std::memcmp(src.data(), after.data(), bytes), 0);
  for (int r = 0; r < kRows - 1; ++r)
    ASSERT_EQ(std::memcmp(dst.data() + r * kRowBytes, src.data() + 2 + r * kStride, kRowBytes), 0) << "row " << r;
  for (int b = (kRows - 1) * kRowBytes; b < kRows * kRowBytes; ++b) ASSERT_EQ(dst[b], 0xff);  // never written
}

// ---- stmatrix + bulk store: the epilogue of the two-consumer kernel (sm90/kernel.cuh) ------------

// A warpgroup holds a 64 x 128 tile of 16-bit values in the m64n128 accumulator layout (thread
// (warp, g, t): rows 16 warp + g + 8 r, columns 8 j + 2 t + e), writes it to shared memory with
// stmatrix x4 at rows `pitch` bytes apart, and lanes 0-15 of each warp bulk-copy the first
// `row_bytes` of the warp's rows below `rows` to `dst` (rows `stride` bytes apart). Value of
// (row, column): row * 128 + column + 1, never 0.
__global__ void staged_rows_kernel(uint8_t* dst, int rows, int row_bytes, int stride, int pitch) {
  extern __shared__ __align__(16) uint8_t staging_raw[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint32_t staging = sageattn::ptx::shared_address(staging_raw) + warp * 16 * pitch;
  auto pair = [&](int j, int r) {
    const int row = 16 * warp + lane / 4 + 8 * r, col = 8 * j + 2 * (lane % 4);
    return static_cast<uint32_t>(row * 128 + col + 1) | static_cast<uint32_t>(row * 128 + col + 2) << 16;
  };
  const uint32_t lane_row = staging + ((lane / 8) % 2 * 8 + lane % 8) * pitch + (lane / 16) * 16;
  for (int j = 0; j < 16; j += 2) {
    const uint32_t packed[4] = {pair(j, 0), pair(j, 1), pair(j + 1, 0), pair(j + 1, 1)};
    sageattn::ptx::stmatrix_x4(lane_row + j * 16, packed);
  }
  sageattn::ptx::fence_proxy_async_shared();
  __syncwarp();
  if (lane < 16) {
    const int row = 16 * warp + lane;
    if (row < rows)
      sageattn::ptx::bulk_copy_shared_to_global(dst + static_cast<int64_t>(row) * stride, staging + lane * pitch,
                                                row_bytes);
    sageattn::ptx::bulk_commit_group();
    sageattn::ptx::bulk_wait_read<0>();
  }
}

TEST(Sm90Ptx, StmatrixAndBulkStoreWriteAccumulatorRows) {
  REQUIRE_SM90();
  // Head dim 96 of 128 staged columns, 57 of 64 rows, rows 3 x 96 elements apart (NHD, 3 heads).
  constexpr int kRows = 57, kDim = 96, kStride = 3 * kDim * 2, kPitch = 272;
  const int bytes = 64 * kStride;
  DeviceBuffer<uint8_t> ddst(bytes);
  CUDA_OK(cudaMemset(ddst.ptr, 0, bytes));  // 0 is no value's code
  staged_rows_kernel<<<1, 128, 64 * kPitch>>>(ddst.ptr, kRows, kDim * 2, kStride, kPitch);
  CUDA_OK(cudaGetLastError());
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint16_t> out(bytes / 2);
  CUDA_OK(cudaMemcpy(out.data(), ddst.ptr, bytes, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int row = 0; row < 64; ++row)
    for (int e = 0; e < kStride / 2; ++e) {
      const uint16_t want = row < kRows && e < kDim ? static_cast<uint16_t>(row * 128 + e + 1) : 0;
      if (out[row * (kStride / 2) + e] != want && ++bad <= 5)
        ADD_FAILURE() << "row " << row << " element " << e << ": " << out[row * (kStride / 2) + e] << ", want " << want;
    }
  EXPECT_EQ(bad, 0);
}

// ---- TMA: one 64 x 128 box of a 4-D tensor map, 128-byte swizzled, zeros out of bounds -------------

__global__ void tma_box_kernel(const __grid_constant__ sageattn::TensorMap map, int c0, int c1, int c2, int c3,
                               uint8_t* dst) {
  async_tile_to_global(dst, [&](uint32_t smem, uint32_t bar) {
    sageattn::ptx::tma_load_4d(smem, &map, c0, c1, c2, c3, bar);
  });
}

TEST(Sm90Ptx, TmaBoxIsSwizzledAndZeroFilled) {
  REQUIRE_SM90();
  // V as the kernel maps it, [head_dim, tokens, heads, batch] innermost first, from an NHD tensor
  // [batch][tokens][heads][head_dim] (strides not monotonic), head_dim 40 < the box's 64 channels
  // and 100 tokens < 128: the box's missing channels and tokens must arrive as zeros.
  constexpr int kDim = 40, kTokens = 100, kHeads = 3, kBatch = 2;
  std::vector<uint16_t> v(static_cast<size_t>(kBatch) * kTokens * kHeads * kDim);
  std::mt19937 rng(6);
  for (auto& x : v) x = static_cast<uint16_t>(rng() | 1u);  // nonzero bit patterns
  DeviceBuffer<uint16_t> dv(v.size());
  DeviceBuffer<uint8_t> dout(kTile);
  CUDA_OK(cudaMemcpy(dv.ptr, v.data(), v.size() * sizeof(uint16_t), cudaMemcpyHostToDevice));
  const uint64_t dims[4] = {kDim, kTokens, kHeads, kBatch};
  const uint64_t strides[3] = {kHeads * kDim * 2, kDim * 2, uint64_t{kTokens} * kHeads * kDim * 2};
  const uint32_t box[4] = {64, 128, 1, 1};
  sageattn::TensorMap map{};
  CUDA_OK(sageattn::encode_tensor_map_4d(map, dv.ptr, SAGEATTN_DTYPE_FP16, dims, strides, box));
  for (const int c0 : {0, 64}) {
    for (const int c1 : {0, 64}) {
      const int head = 2, batch = 1;
      CUDA_OK(cudaMemset(dout.ptr, 0xff, kTile));  // poison
      tma_box_kernel<<<1, 128>>>(map, c0, c1, head, batch, dout.ptr);
      CUDA_OK(cudaGetLastError());
      CUDA_OK(cudaDeviceSynchronize());
      std::vector<uint8_t> out(kTile);
      CUDA_OK(cudaMemcpy(out.data(), dout.ptr, kTile, cudaMemcpyDeviceToHost));
      int bad = 0;
      for (int row = 0; row < 128; ++row)
        for (int ch = 0; ch < 64; ++ch) {
          const int token = c1 + row, channel = c0 + ch;
          const uint16_t want = token < kTokens && channel < kDim
                                    ? v[((static_cast<size_t>(batch) * kTokens + token) * kHeads + head) * kDim + channel]
                                    : 0;
          uint16_t got;
          std::memcpy(&got, out.data() + swizzled(row, 2 * ch), 2);
          bad += got != want;
        }
      EXPECT_EQ(bad, 0) << "box at channel " << c0 << ", token " << c1 << " (of 8192 elements)";
    }
  }
}

// ---- element conversions ------------------------------------------------------------------------

__global__ void e4m3_kernel(const float* in, uint16_t* out, int n_pairs) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n_pairs) out[i] = sageattn::ptx::e4m3x2(in[2 * i], in[2 * i + 1]);
}

TEST(Sm90Ptx, E4m3PackMatchesReferenceRounding) {
  REQUIRE_SM90();
  // Every float16 bit pattern (covers all binades E4M3 can reach, ties, saturation, NaN) plus
  // random floats around the E4M3 range and the documented edge cases.
  std::vector<float> in;
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t sign = (h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023;
    float f;
    if (exp == 0) {  // half subnormals: man * 2^-24, normal floats far below E4M3's 2^-9
      f = std::ldexp(static_cast<float>(man), -24);
      if (sign) f = -f;
    } else {
      const uint32_t bits = exp == 31 ? (sign | 0x7f800000u | (man << 13)) : (sign | ((exp - 15 + 127) << 23) | (man << 13));
      std::memcpy(&f, &bits, 4);
    }
    in.push_back(f);
  }
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> dist(-500.f, 500.f);
  for (int i = 0; i < 65536; ++i) in.push_back(dist(rng));
  // Full-precision floats across E4M3's subnormal and normal binades (2^-12 .. 2^9): the rounding of
  // bits below float16's precision (sticky bits) only shows with these.
  std::uniform_real_distribution<float> log2_dist(-12.f, 9.f);
  for (int i = 0; i < 65536; ++i) {
    const float f = std::exp2(log2_dist(rng));
    in.push_back(i % 2 ? -f : f);
  }
  for (float f : {448.f, 464.f, 464.0001f, -464.f, 480.f, 0.f, -0.f, 1.f / 512, 1.f / 1024, 3.f / 1024})
    in.push_back(f);
  if (in.size() % 2) in.push_back(1.f);
  const int pairs = static_cast<int>(in.size() / 2);
  DeviceBuffer<float> din(in.size());
  DeviceBuffer<uint16_t> dout(pairs);
  CUDA_OK(cudaMemcpy(din.ptr, in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice));
  e4m3_kernel<<<(pairs + 255) / 256, 256>>>(din.ptr, dout.ptr, pairs);
  CUDA_OK(cudaGetLastError());  // e.g. no kernel image for this GPU
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint16_t> out(pairs);
  CUDA_OK(cudaMemcpy(out.data(), dout.ptr, pairs * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int i = 0; i < pairs; ++i) {
    const uint8_t lo = out[i] & 0xff, hi = out[i] >> 8;
    const uint8_t want_lo = sageattn::reference::float_to_e4m3_bits(in[2 * i]);
    const uint8_t want_hi = sageattn::reference::float_to_e4m3_bits(in[2 * i + 1]);
    auto same = [](uint8_t a, uint8_t b) { return a == b || ((a & 0x7f) == 0x7f && (b & 0x7f) == 0x7f); };
    bad += !same(lo, want_lo) + !same(hi, want_hi);
  }
  EXPECT_EQ(bad, 0) << "of " << in.size() << " conversions";
}

__global__ void int8_round_kernel(const float* x, const float* inv, uint32_t* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = sageattn::int8_byte_bits(x[i], inv[i]);
}

// The INT8 rounding of the pre-pass and of the kernels' Q quantization (common/int8_round.cuh)
// against the emulation's (reference quantize_int8): random groups with their maxima (+-127), and
// products near half-integers (int8_near_ties.h), some of which round otherwise when the product is
// rounded to float first (the definition rounds the exact product).
TEST(Sm90Ptx, Int8RoundingMatchesReference) {
  REQUIRE_SM90();
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> amax_dist(1e-3f, 1e3f), unit(-1.f, 1.f);
  std::vector<float> x, inv;
  for (int i = 0; i < 100000; ++i) {
    const float amax = amax_dist(rng), s = sageattn::reference::int8_inverse_scale(amax);
    x.push_back(unit(rng) * amax);
    inv.push_back(s);
    x.push_back(i % 2 ? amax : -amax);
    inv.push_back(s);
  }
  int exact_decides = 0;
  for (const auto& [v, s] : sageattn_test::int8_near_ties(5, 100000)) {
    x.push_back(v);
    inv.push_back(s);
    exact_decides += sageattn_test::float_product_rounds_otherwise(v, s);
  }
  ASSERT_GE(exact_decides, 100);
  const int n = static_cast<int>(x.size());
  DeviceBuffer<float> dx(n), dinv(n);
  DeviceBuffer<uint32_t> dout(n);
  CUDA_OK(cudaMemcpy(dx.ptr, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dinv.ptr, inv.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  int8_round_kernel<<<(n + 255) / 256, 256>>>(dx.ptr, dinv.ptr, dout.ptr, n);
  CUDA_OK(cudaGetLastError());
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint32_t> out(n);
  CUDA_OK(cudaMemcpy(out.data(), dout.ptr, n * sizeof(uint32_t), cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int i = 0; i < n; ++i)
    bad += static_cast<int8_t>(out[i] & 0xffu) != sageattn::reference::quantize_int8(x[i], inv[i]);
  EXPECT_EQ(bad, 0) << "of " << n << " values (" << exact_decides << " where the exact product decides)";
}

__global__ void poly_exp2_kernel(const float* exp_in, float* exp_out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) exp_out[i] = sageattn::exp2_poly(exp_in[i]);
}

TEST(Sm90Ptx, PolyExp2IsWithinBound) {
  REQUIRE_SM90();
  constexpr int kN = 1 << 23;
  std::vector<float> exp_in(kN);
  for (int i = 0; i < kN; ++i) exp_in[i] = -140.f + 150.f * static_cast<float>(i) / kN;  // [-140, 10)
  exp_in[0] = -INFINITY;
  DeviceBuffer<float> dexp_in(kN), dexp_out(kN);
  CUDA_OK(cudaMemcpy(dexp_in.ptr, exp_in.data(), kN * sizeof(float), cudaMemcpyHostToDevice));
  poly_exp2_kernel<<<kN / 256, 256>>>(dexp_in.ptr, dexp_out.ptr, kN);
  CUDA_OK(cudaGetLastError());  // e.g. no kernel image for this GPU
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<float> exp_out(kN);
  CUDA_OK(cudaMemcpy(exp_out.data(), dexp_out.ptr, kN * sizeof(float), cudaMemcpyDeviceToHost));
  int bad_exp = 0;
  double worst = 0.0;
  for (int i = 0; i < kN; ++i) {
    const float x = exp_in[i];
    if (x < -126.f) {
      bad_exp += exp_out[i] != 0.f;
    } else {
      const double rel = std::fabs(exp_out[i] / std::exp2(static_cast<double>(x)) - 1.0);
      worst = std::max(worst, rel);
      bad_exp += !(rel <= 1.8e-3);
    }
  }
  EXPECT_EQ(bad_exp, 0) << "worst relative error " << worst;
}

}  // namespace
