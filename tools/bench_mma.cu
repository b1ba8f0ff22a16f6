// Throughput of the warp-level MMAs the sm80 kernel can use, on the current GPU. Development tool
// (not part of the library): answers "is INT8/FP8 mma.sync really 2x FP16 on this chip?".
//   nvcc -O3 -std=c++17 -Isrc -gencode=arch=compute_90a,code=sm_90a tools/bench_mma.cu -o bench_mma
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "ptx/mma_sm80.cuh"

constexpr int kChains = 8;        // independent accumulators per warp hide the MMA latency
constexpr int kIterations = 4096;

template <int kKind>
__global__ void __launch_bounds__(256) mma_loop(float* sink) {
  uint32_t a[4] = {threadIdx.x, threadIdx.x * 3u, threadIdx.x * 5u, threadIdx.x * 7u};
  uint32_t b[2] = {threadIdx.x * 11u, threadIdx.x * 13u};
  float facc[kChains][4] = {};
  int32_t iacc[kChains][4] = {};
  for (int it = 0; it < kIterations; ++it) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) {
      if constexpr (kKind == 0) sageattn::ptx::mma_m16n8k32_s8(iacc[c], a, b);
      if constexpr (kKind == 1) sageattn::ptx::mma_m16n8k16_f16(facc[c], a, b);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
      if constexpr (kKind == 2) sageattn::ptx::mma_m16n8k32_e4m3(facc[c], a, b);
#endif
    }
  }
  float total = 0.f;
  for (int c = 0; c < kChains; ++c)
    for (int i = 0; i < 4; ++i) total += facc[c][i] + static_cast<float>(iacc[c][i]);
  if (total == 12345.f) sink[threadIdx.x] = total;
}

template <int kKind>
double tops(int sms, int k_per_mma) {
  float* sink = nullptr;
  cudaMalloc(&sink, 1024 * sizeof(float));
  const int blocks = sms * 4;
  mma_loop<kKind><<<blocks, 256>>>(sink);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start);
  mma_loop<kKind><<<blocks, 256>>>(sink);
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0.f;
  cudaEventElapsedTime(&ms, start, stop);
  cudaFree(sink);
  const double mmas = double(blocks) * 8 * kIterations * kChains;  // 8 warps per block
  return mmas * 2.0 * 16 * 8 * k_per_mma / (ms * 1e-3) / 1e12;
}

int main() {
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  printf("%s: mma.sync s8 m16n8k32 %.0f TOPS, f16 m16n8k16 %.0f TFLOPS", prop.name,
         tops<0>(prop.multiProcessorCount, 32), tops<1>(prop.multiProcessorCount, 16));
  if (prop.major * 10 + prop.minor >= 89) printf(", e4m3 m16n8k32 %.0f TFLOPS", tops<2>(prop.multiProcessorCount, 32));
  printf("\n");
  return cudaGetLastError() == cudaSuccess ? 0 : 1;
}
