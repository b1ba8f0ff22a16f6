// What every sm90 GPU gtest needs: whether this machine has a compute capability 9.0 GPU (the
// test binary is built for 90a only, so the tests skip elsewhere) and a CUDA-call assertion.
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

inline bool have_sm90() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    return false;
  }
  int device = 0;
  cudaGetDevice(&device);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, device);
  return prop.major == 9 && prop.minor == 0;
}

#define REQUIRE_SM90() \
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.0 GPU"

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << cudaGetErrorString(cudaGetLastError())
