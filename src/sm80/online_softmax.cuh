// Online softmax in base 2 over the S fragments of one warp (32 rows x 64 keys per tile).
// A lane holds rows g and g+8 of each m16 tile (g = lane / 4); the four lanes of a quad share rows,
// so row reductions are two xor-shuffles. Row sums stay per lane until the epilogue (one
// reduction per CTA instead of one per tile).
#pragma once
#include <cmath>
#include <cstdint>

#include "common/quad_reduce.cuh"
#include "ptx/math.cuh"
#include "sm80/traits.cuh"

namespace sageattn::sm80 {

template <class Tr>
struct OnlineSoftmax {
  static constexpr int kRows = Tr::kMTiles * 2;  // rows this lane holds
  // Probabilities may reach 2^kLazyRescaleLog2 = 256 against a stale maximum: exact in the fp32
  // accumulators, and fp16/bf16 keep their relative precision there (fp16 max is 65504).
  static constexpr float kLazyRescaleLog2 = 8.f;
  float row_max[kRows];      // reference max of x = s * c (base-2 logits), at most kLazyRescaleLog2
                             // below the true running max; -inf before any key
  float row_sum[kRows];      // this lane's share of sum(exp2(x - row_max))

  __device__ void init() {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      row_max[r] = -INFINITY;
      row_sum[r] = 0.f;
    }
  }


  // Tiles where every key is allowed for every row. c = q_scale * k_scale * tau * log2e is >= 0 and
  // the same for all scores of this lane, so max(s * c) = c * max(s): the row maximum costs one
  // integer max per score, and each probability one I2F, one FFMA, one FMNMX (the clamp below) and
  // one ex2.
  // (Folding the int->float conversion into the FFMA with the 1.5 * 2^23 magic-number trick was
  // tried and rejected: the folded constant 1.5 * 2^23 * c + m carries an absolute rounding error
  // of ~0.75 * c in the exponent, which overflows ex2 when scores are large (|x| ~ 6e4 inputs).)
  __device__ void update_unmasked(const int32_t (&s)[Tr::kMTiles][Tr::kNTiles][4], float c,
                                  float (&p)[Tr::kMTiles][Tr::kNTiles][4], float (&rescale)[kRows]) {
#pragma unroll
    for (int mt = 0; mt < Tr::kMTiles; ++mt) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = mt * 2 + half;
        int tile_max = s[mt][0][2 * half];
#pragma unroll
        for (int nt = 0; nt < Tr::kNTiles; ++nt)
          tile_max = max(tile_max, max(s[mt][nt][2 * half], s[mt][nt][2 * half + 1]));
        // Rounded down, so the maximum's own exponent argument is >= 0 (p >= 1, the row sum never 0)
        // whatever the magnitude.
        const float candidate = quad_max(__fmul_rd(static_cast<float>(tile_max), c));
        // Lazy rescaling: keep a stale maximum until a score exceeds it by kLazyRescaleLog2, so
        // O is rescaled on a handful of tiles per row instead of (nearly) every tile.
        float new_max = row_max[r];
        rescale[r] = 1.f;
        if (candidate > row_max[r] + kLazyRescaleLog2) {
          new_max = candidate;
          rescale[r] = ptx::exp2_approx(row_max[r] - new_max);
          row_max[r] = new_max;
        }
        // One FFMA and one ex2 per score, the argument clamped to kLazyRescaleLog2 + 1: with huge
        // logits (|x| >= 2^24, inputs near fp16's range) the FFMA's rounding can exceed the true
        // difference by whole units, and the clamp keeps p finite (<= 512). It replaced a per-row
        // branch to an exact two-step path (the clamp's FMNMX is cheaper than that branch: +3.3 to
        // +4.5 %, H100, same-build A/B, docs/performance.md).
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < Tr::kNTiles; ++nt) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float prob = ptx::exp2_approx(
                fminf(fmaf(static_cast<float>(s[mt][nt][2 * half + e]), c, -new_max), kLazyRescaleLog2 + 1.f));
            p[mt][nt][2 * half + e] = prob;
            sum += prob;
          }
        }
        row_sum[r] = row_sum[r] * rescale[r] + sum;
      }
    }
  }

  // x holds base-2 logits (masked entries -inf) on entry and probabilities exp2(x - max) on exit.
  // Returns, per row, the factor by which earlier O accumulators must be rescaled.
  __device__ void update(float (&x)[Tr::kMTiles][Tr::kNTiles][4], float (&rescale)[kRows]) {
#pragma unroll
    for (int mt = 0; mt < Tr::kMTiles; ++mt) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = mt * 2 + half;
        float tile_max = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < Tr::kNTiles; ++nt)
          tile_max = fmaxf(tile_max, fmaxf(x[mt][nt][2 * half], x[mt][nt][2 * half + 1]));
        const float new_max = fmaxf(row_max[r], quad_max(tile_max));
        // A row with no allowed key so far keeps max -inf; subtracting 0 instead keeps
        // exp2(-inf - (-inf)) = NaN out and still gives p = 0.
        const float offset = new_max == -INFINITY ? 0.f : new_max;
        rescale[r] = ptx::exp2_approx(row_max[r] - offset);
        row_max[r] = new_max;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < Tr::kNTiles; ++nt) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            // __fsub_rn: x stays the rounded product s * c (no FFMA contraction with the caller's
            // multiply), so x - max is exact and <= 0 against the maximum even for huge logits.
            const float p = ptx::exp2_approx(__fsub_rn(x[mt][nt][2 * half + e], offset));
            x[mt][nt][2 * half + e] = p;
            sum += p;
          }
        }
        row_sum[r] = row_sum[r] * rescale[r] + sum;
      }
    }
  }
};

}  // namespace sageattn::sm80
