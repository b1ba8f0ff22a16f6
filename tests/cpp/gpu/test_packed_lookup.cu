// packed_block_at_warp (src/common/sequences.cuh), the pre-pass grids' lookup of a packed block's
// sequence: one coalesced read of the boundaries and a ballot, with the binary search kept for
// batches of 32 sequences or more. On increasing boundaries it must give what the definition gives
// (the last sequence whose first block position is at or before the position, computed here on the
// host) and what packed_block_at + sequence_side give on the device; on boundaries that lie it must
// stay in range (the kernels' no-fault guarantee). Skips without a compute capability 9.0 GPU (the
// test binary is built for 90a only).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/sequences.cuh"
#include "sm90_gpu.h"

namespace {

// Per position: the warp lookup (batch, block, first, length), then packed_block_at + sequence_side
// from lane 0 alone.
constexpr int kFields = 8;

__global__ void lookup_kernel(const int* cu, int total, int batch_count, int rows, int bound, int* out) {
  const int position = static_cast<int>(blockIdx.x);
  const sageattn::PackedLookup found = sageattn::packed_block_at_warp(cu, total, batch_count, rows, position, bound);
  if (threadIdx.x != 0) return;
  const sageattn::PackedBlock at = sageattn::packed_block_at(cu, total, batch_count, rows, position);
  const sageattn::SequenceSide side = sageattn::sequence_side(cu, total, at.batch, bound);
  int* o = out + position * kFields;
  o[0] = found.at.batch;
  o[1] = found.at.block;
  o[2] = found.side.first_token;
  o[3] = found.side.length;
  o[4] = at.batch;
  o[5] = at.block;
  o[6] = side.first_token;
  o[7] = side.length;
}

struct Lookup {
  int positions;
  std::vector<int> out;  // kFields per position
};

// Runs one warp per position over `positions` positions; the output starts poisoned (0x7f7f7f7f).
void run_lookup(const std::vector<int>& cu, int total, int rows, int bound, int positions, Lookup& result) {
  const int batch_count = static_cast<int>(cu.size()) - 1;
  int* d_cu = nullptr;
  int* d_out = nullptr;
  const size_t out_bytes = static_cast<size_t>(positions) * kFields * sizeof(int);
  CUDA_OK(cudaMalloc(&d_cu, cu.size() * sizeof(int)));
  CUDA_OK(cudaMalloc(&d_out, out_bytes));
  CUDA_OK(cudaMemcpy(d_cu, cu.data(), cu.size() * sizeof(int), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(d_out, 0x7f, out_bytes));
  lookup_kernel<<<positions, 32>>>(d_cu, total, batch_count, rows, bound, d_out);
  CUDA_OK(cudaGetLastError());
  CUDA_OK(cudaDeviceSynchronize());
  result.positions = positions;
  result.out.assign(static_cast<size_t>(positions) * kFields, 0);
  CUDA_OK(cudaMemcpy(result.out.data(), d_out, out_bytes, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaFree(d_cu));
  CUDA_OK(cudaFree(d_out));
}

TEST(PackedLookup, WarpLookupMatchesTheDefinitionAndTheBinarySearch) {
  REQUIRE_SM90();
  std::mt19937 rng(24);
  // 31 is the ballot's largest batch, 32 and up take the binary search.
  for (int batch_count : {1, 2, 7, 8, 31, 32, 33, 45}) {
    for (int rows : {64, 128, 512}) {
      std::uniform_int_distribution<int> length_of(0, 3 * rows + 7);
      std::vector<int> lengths(batch_count);
      for (int& length : lengths) length = length_of(rng) % 5 == 0 ? 0 : length_of(rng);  // empty ones too
      std::vector<int> cu(batch_count + 1, 0);
      for (int b = 0; b < batch_count; ++b) cu[b + 1] = cu[b] + lengths[b];
      const int total = cu.back();
      const int bound = *std::max_element(lengths.begin(), lengths.end());
      const int positions = sageattn::packed_positions(total, batch_count, rows) + 3;  // and a few past the end
      Lookup got;
      ASSERT_NO_FATAL_FAILURE(run_lookup(cu, total, rows, bound, positions, got));
      for (int position = 0; position < positions; ++position) {
        int expected = 0;  // the last sequence whose first position is at or before `position`
        for (int b = 0; b < batch_count; ++b)
          if (cu[b] / rows + b <= position) expected = b;
        const int* o = &got.out[static_cast<size_t>(position) * kFields];
        const std::string where = "batch " + std::to_string(batch_count) + ", rows " + std::to_string(rows) +
                                  ", position " + std::to_string(position);
        EXPECT_EQ(o[0], expected) << where;
        EXPECT_EQ(o[1], position - (cu[expected] / rows + expected)) << where;
        EXPECT_EQ(o[2], cu[expected]) << where;
        EXPECT_EQ(o[3], lengths[expected]) << where;
        for (int f = 0; f < 4; ++f) EXPECT_EQ(o[f], o[4 + f]) << where << ", field " << f;
      }
    }
  }
}

TEST(PackedLookup, LyingBoundariesStayInRange) {
  REQUIRE_SM90();
  std::mt19937 rng(7);
  for (int batch_count : {3, 8, 31, 40}) {
    const int total = 1000, rows = 128, bound = 300;
    std::uniform_int_distribution<int> boundary(-200, total + 200);  // unsorted, negative, past the total
    std::vector<int> cu(batch_count + 1);
    for (int& c : cu) c = boundary(rng);
    const int positions = sageattn::packed_positions(total, batch_count, rows) + 3;
    Lookup got;
    ASSERT_NO_FATAL_FAILURE(run_lookup(cu, total, rows, bound, positions, got));
    for (int position = 0; position < positions; ++position) {
      const int* o = &got.out[static_cast<size_t>(position) * kFields];
      const std::string where = "batch " + std::to_string(batch_count) + ", position " + std::to_string(position);
      EXPECT_GE(o[0], 0) << where;
      EXPECT_LT(o[0], batch_count) << where;
      EXPECT_GE(o[2], 0) << where;
      EXPECT_LE(o[2], total) << where;
      EXPECT_GE(o[3], 0) << where;
      EXPECT_LE(o[3], bound) << where;
      EXPECT_LE(o[2] + o[3], total) << where;
    }
  }
}

}  // namespace
