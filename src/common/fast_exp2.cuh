// 2^x on the FMA/ALU pipes, for scores that only need E4M3 precision (3 mantissa bits).
// The softmax of the FP8 kernel issues one ex2 per score on the quarter-rate MUFU pipe (16 per SM
// per clock); evaluating a share of the scores here moves that work to the full-rate pipes
// (design.md section 4). Measured slower or neutral so far (docs/performance.md), so off by default.
#pragma once

namespace sageattn {

// Relative error <= 1.74e-3 (measured max on the reduced range; bound 1.8e-3) for x in [-126, 127]; x below -126 (and -inf) gives exactly 0,
// like ex2.approx.ftz, so masked scores add nothing to the row sums. n = round(x) comes from the 1.5 * 2^23 magic add,
// f = x - n is in [-0.5, 0.5], 2^f is a degree-2 fit of the relative error, and 2^n is added to
// the exponent field as an integer.
__device__ __forceinline__ float exp2_poly(float x) {
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23
  const float clamped = fmaxf(x, -126.f);
  const float shifted = clamped + kRound;
  const float f = clamped - (shifted - kRound);
  const float p = fmaf(fmaf(0.23841732f, f, 0.70342604f), f, 1.00044226f);
  // The low mantissa bits of `shifted` hold n in two's complement: shifting them up by 23 gives
  // n << 23 modulo 2^32, the exponent increment.
  const float y = __int_as_float(__float_as_int(p) + (__float_as_int(shifted) << 23));
  return x < -126.f ? 0.f : y;
}

}  // namespace sageattn
