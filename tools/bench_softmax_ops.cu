// Throughput of the per-score instructions of the sm90 softmax, per SM per clock, on the current
// GPU. Development tool (not part of the library): which pipe bounds the softmax (ex2 and the
// E4M3 pack are both suspected to run on the quarter-rate XU pipe).
// H100 80GB HBM3 (2026-11-26): ex2.approx.ftz 16.0, cvt e4m3x2 23.8, cvt f16x2 31.1, i2f (I2FP.F32.S32)
// 60.1, ffma 121.3 per SM per clock; ex2.approx.f16x2 7.9 instructions (15.8 results) per SM per
// clock: on sm_90 it is two MUFU.EX2.F16 and a PRMT (cuobjdump), so packed halves do not double
// the exponential rate.
//   nvcc -O3 -std=c++17 -Isrc -gencode=arch=compute_90a,code=sm_90a tools/bench_softmax_ops.cu -o bench_ops
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "ptx/convert.cuh"
#include "ptx/math.cuh"

constexpr int kChains = 8;
constexpr int kIterations = 4096;

enum Kind { kEx2, kE4m3Pack, kF16Pack, kI2F, kFfma, kEx2AndPack, kEx2F16x2, kI2FRn, kHadd2, kE4m3FromF16x2 };

template <int kKind>
__global__ void __launch_bounds__(256) op_loop(float* sink) {
  float x[kChains];
  uint32_t acc = 0;
  __half2 h[kChains];
#pragma unroll
  for (int c = 0; c < kChains; ++c) x[c] = 1e-3f * static_cast<float>(threadIdx.x + c);
#pragma unroll
  for (int c = 0; c < kChains; ++c) h[c] = __floats2half2_rn(-x[c], x[c]);
  for (int it = 0; it < kIterations; ++it) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) {
      if constexpr (kKind == kEx2) x[c] = sageattn::ptx::exp2_approx(x[c]);
      if constexpr (kKind == kE4m3Pack) acc += sageattn::ptx::e4m3x2(x[c], x[c] + 1.f), x[c] += 1e-7f;
      if constexpr (kKind == kF16Pack) {
        __half2 h = __floats2half2_rn(x[c], x[c] + 1.f);
        acc += *reinterpret_cast<uint32_t*>(&h);
        x[c] += 1e-7f;
      }
      if constexpr (kKind == kI2F) x[c] += static_cast<float>(static_cast<int>(acc) + c), acc += 1u;
      if constexpr (kKind == kFfma) x[c] = fmaf(x[c], 0.999f, 1e-3f);
      if constexpr (kKind == kEx2F16x2) h[c] = h2exp2(h[c]);  // two results per instruction
      if constexpr (kKind == kI2FRn) x[c] += __int2float_rn(static_cast<int>(acc) + c), acc += 1u;
      if constexpr (kKind == kHadd2) {
        __half2 sum = *reinterpret_cast<__half2*>(&acc);
        sum = __hadd2(sum, __float2half2_rn(1e-3f));
        acc = *reinterpret_cast<uint32_t*>(&sum);
      }
      if constexpr (kKind == kE4m3FromF16x2) {
        __half2 pair = __floats2half2_rn(x[c], x[c] + 1.f);
        acc += sageattn::ptx::e4m3x2_from_f16x2(*reinterpret_cast<uint32_t*>(&pair)), x[c] += 1e-7f;
      }
      if constexpr (kKind == kEx2AndPack) {
        x[c] = sageattn::ptx::exp2_approx(x[c]);
        if (c % 2) acc += sageattn::ptx::e4m3x2(x[c - 1], x[c]);
      }
    }
  }
  float total = static_cast<float>(acc);
  for (int c = 0; c < kChains; ++c) total += x[c] + __low2float(h[c]) + __high2float(h[c]);
  if (total == 12345.f) sink[threadIdx.x] = total;
}

template <int kKind>
void report(const char* name, int sms, double clock_ghz) {
  float* sink = nullptr;
  cudaMalloc(&sink, 1024 * sizeof(float));
  const int blocks = sms * 8;
  op_loop<kKind><<<blocks, 256>>>(sink);  // warm-up
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start);
  op_loop<kKind><<<blocks, 256>>>(sink);
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0.f;
  cudaEventElapsedTime(&ms, start, stop);
  const double ops = static_cast<double>(blocks) * 256 * kIterations * kChains;
  const double per_sm_clk = ops / (ms * 1e-3) / sms / (clock_ghz * 1e9);
  std::printf("%-22s %8.1f thread-ops per SM per clock (%.3f ms)\n", name, per_sm_clk, ms);
  cudaFree(sink);
}

int main() {
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  int clock_khz = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0);
  const double ghz = clock_khz * 1e-6;
  std::printf("%s, %d SMs, nominal clock %.3f GHz (per-clock figures assume it)\n", prop.name,
              prop.multiProcessorCount, ghz);
  report<kEx2>("ex2.approx.ftz", prop.multiProcessorCount, ghz);
  report<kE4m3Pack>("cvt e4m3x2 (+add)", prop.multiProcessorCount, ghz);
  report<kF16Pack>("cvt f16x2 (+add)", prop.multiProcessorCount, ghz);
  report<kI2F>("i2f (+add)", prop.multiProcessorCount, ghz);
  report<kFfma>("ffma", prop.multiProcessorCount, ghz);
  report<kEx2AndPack>("ex2 + e4m3 per 2", prop.multiProcessorCount, ghz);
  // The loops below run other instructions besides the one named (see op_loop): compare SASS.
  report<kEx2F16x2>("ex2.approx.f16x2 (x2)", prop.multiProcessorCount, ghz);
  report<kI2FRn>("i2f.rn (+add)", prop.multiProcessorCount, ghz);
  report<kHadd2>("hadd2 (1 chain)", prop.multiProcessorCount, ghz);
  report<kE4m3FromF16x2>("f16x2 + e4m3x2.f16x2", prop.multiProcessorCount, ghz);
  return 0;
}
