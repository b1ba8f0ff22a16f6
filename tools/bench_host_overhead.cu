// Host (CPU) cost per call of the C API and of its parts, on a tiny problem whose GPU time is
// negligible: what a framework pays per attention call before any GPU work. Development tool (not
// part of the library); issue 4 budgets the whole Python call at 30 us.
//   nvcc -O2 -std=c++17 -Iinclude tools/bench_host_overhead.cu -L<dir of libsageattn.so> -lsageattn \
//        -Xlinker -rpath=<that dir> -o bench_host_overhead && ./bench_host_overhead
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "sageattn/sageattn.h"

namespace {

__global__ void empty_kernel(int) {}
__global__ void empty_kernel_big_smem(int) {}

template <typename F>
double microseconds_per_call(F&& f, int reps = 2000) {
  for (int i = 0; i < 100; ++i) f();
  cudaDeviceSynchronize();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  const auto end = std::chrono::steady_clock::now();
  cudaDeviceSynchronize();
  return std::chrono::duration<double, std::micro>(end - start).count() / reps;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "error: %s\n", what);
    std::exit(1);
  }
}

}  // namespace

int main() {
  cudaStream_t stream;
  check(cudaStreamCreate(&stream) == cudaSuccess, "stream");
  const int tokens = 128;
  char reason[512];

  std::printf("host time per call (CPU microseconds, tiny problem)\n");
  std::printf("  %-52s %7.2f\n", "empty kernel launch",
              microseconds_per_call([&] { empty_kernel<<<1, 32, 0, stream>>>(0); }));
  std::printf("  %-52s %7.2f\n", "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)", microseconds_per_call([&] {
                cudaFuncSetAttribute(empty_kernel_big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 100000);
              }));
  std::printf("  %-52s %7.2f\n", "cudaGetLastError", microseconds_per_call([&] { cudaGetLastError(); }));
  int device = 0;
  std::printf("  %-52s %7.2f\n", "cudaGetDevice", microseconds_per_call([&] { cudaGetDevice(&device); }));

  for (int head_dim : {64, 128}) {
    void* qkv = nullptr;
    const size_t elements = static_cast<size_t>(tokens) * head_dim;
    check(cudaMalloc(&qkv, 4 * elements * 2) == cudaSuccess, "malloc");
    cudaMemset(qkv, 0, 4 * elements * 2);
    sageattn_params p = sageattn_default_params();
    p.batch = p.heads_q = p.heads_kv = 1;
    p.seqlen_q = p.seqlen_kv = tokens;
    p.head_dim = head_dim;
    p.sm_scale = 0.125f;
    sageattn_tensor* tensors[4] = {&p.q, &p.k, &p.v, &p.out};
    for (int i = 0; i < 4; ++i) {
      tensors[i]->data = static_cast<char*>(qkv) + i * elements * 2;
      tensors[i]->stride_batch = tensors[i]->stride_head = static_cast<int64_t>(elements);
      tensors[i]->stride_token = head_dim;
    }
    size_t bytes = 0;
    check(sageattn_workspace_size(&p, &bytes, reason, sizeof(reason)) == SAGEATTN_STATUS_OK, reason);
    void* workspace = nullptr;
    check(cudaMalloc(&workspace, bytes) == cudaSuccess, "workspace");
    // Time the real work, not an error path: the first call must succeed.
    check(sageattn_forward(&p, workspace, bytes, stream, reason, sizeof(reason)) == SAGEATTN_STATUS_OK, reason);
    check(cudaStreamSynchronize(stream) == cudaSuccess, "first forward");
    char label[96];
    std::snprintf(label, sizeof(label), "sageattn_workspace_size, head dim %d", head_dim);
    std::printf("  %-52s %7.2f\n", label,
                microseconds_per_call([&] { sageattn_workspace_size(&p, &bytes, reason, sizeof(reason)); }));
    std::snprintf(label, sizeof(label), "sageattn_forward, head dim %d", head_dim);
    std::printf("  %-52s %7.2f\n", label, microseconds_per_call([&] {
                  sageattn_forward(&p, workspace, bytes, stream, reason, sizeof(reason));
                }));
    check(cudaStreamSynchronize(stream) == cudaSuccess, "forward");
    cudaFree(workspace);
    cudaFree(qkv);
  }
  return 0;
}
