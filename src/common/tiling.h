// Tile and quantization-group geometry shared by the pre-pass, the attention kernels, the workspace
// layout and the CPU emulation. docs/design/quantization.md explains why the groups look like this.
#pragma once
#include <cstdint>

namespace sageattn {

constexpr int kQBlockRows = 128;        // Q rows per attention CTA and per quantization block
constexpr int kWarpRows = 32;           // Q rows owned by one warp (two m16 MMA tiles)
constexpr int kKBlockTokens = 64;       // K/V tokens per attention tile and per quantization block
constexpr int kQGroupsPerWarp = 8;      // per-thread: rows with equal (row % 8) share a scale
constexpr int kQGroupsPerBlock = kQGroupsPerWarp * (kQBlockRows / kWarpRows);  // 32
constexpr int kKGroupsPerBlock = 4;     // per-thread: tokens with equal ((token % 8) / 2)
constexpr int kMaxHeadDim = 256;
// The sm90 kernel's largest head dim with the 16-bit P.V (zero-padded to 128); with the E4M3 P.V
// it runs head dims up to 256 (natively 256: sm90/traits.cuh, HeadDim).
constexpr int kSm90MaxHeadDim = 128;

// A group whose max |x| is below this quantizes to zero (scale 0): 127 / amax would overflow float
// near 3.7e-37, and scores built from such a group are below 1e-60, indistinguishable from 0.
constexpr float kMinQuantizableAmax = 1e-30f;

// K column sums (for smoothing) are reduced in two phases: partial sums over token chunks, then
// every consumer sums the (few) partials. Bounding the chunk count keeps that second read small.
constexpr int kMaxColumnSumChunks = 16;
constexpr int kMinColumnSumChunkTokens = 512;
// Packed sequences cut their chunks from the longest sequence (the caller's max_seqlen_k) with at
// least 2048 tokens each: every K item and V tile of the quantization grid adds its sequence's chunk
// partials (up to 3 loads per channel and chunk), and 512-token chunks gave a 7K-token sequence 15
// of them. H100, 8 sequences of 1-8K tokens, 16 heads, hd128 (scripts/bench_varlen.py --seed 2):
// quantization grid 207 -> 182 us, statistics grid 34 -> 29 us (chunks of 1024: 195-198 us, 4096:
// 189-191 us; docs/design/varlen.md). Dense calls keep 512: at 2048, B4 H32 1K lost 3 %.
constexpr int kMinPackedChunkTokens = 2048;

// K smoothing subtracts a per-channel mean of K (any constant vector leaves softmax unchanged; the
// mean keeps INT8's range for what varies). It is taken over one key in every aligned group of
// `stride` keys, at a pseudo-random position within the group (a fixed position would alias with
// RoPE channels whose period divides the stride), with the largest stride of 1, 2, 4 or 8 that
// still averages at least kKMeanMinSamples keys: every key below 512 keys, one in 2 from 512, one
// in 4 from 1024, one in 8 from 2048. The statistics pass reads that share of K.
// docs/design/quantization.md ("K smoothing", "The sample") has the error and the bytes.
constexpr int kKMeanMinSamples = 256;
// log2 of the stride, and the stride (keys are never negative: shifts and masks, not divisions,
// since a runtime divisor costs the kernels a division routine and registers).
inline constexpr int k_mean_sample_shift(int keys) {
  return keys >= 8 * kKMeanMinSamples ? 3 : keys >= 4 * kKMeanMinSamples ? 2 : keys >= 2 * kKMeanMinSamples ? 1 : 0;
}
inline constexpr int k_mean_sample_stride(int keys) { return 1 << k_mean_sample_shift(keys); }
// The sampled position (0 .. stride - 1) in group `group` of a sequence: the top log2(stride) bits
// of a multiplicative hash (its top 3 bits times stride / 8: stride 8 takes all three, 2 the first).
inline constexpr int k_mean_sample_offset(int group, int stride) {
  return static_cast<int>(((static_cast<uint32_t>(group) * 2654435761u) >> 29) * static_cast<uint32_t>(stride) >> 3);
}
inline constexpr bool k_mean_samples_all(int keys) { return k_mean_sample_shift(keys) == 0; }
// Key `key` of a sequence of `keys` keys contributes to the mean.
inline constexpr bool k_mean_sampled(int key, int keys) {
  const int shift = k_mean_sample_shift(keys), stride = 1 << shift;
  return (key & (stride - 1)) == k_mean_sample_offset(key >> shift, stride);
}
// How many keys of a sequence of `keys` keys contribute (the mean's divisor).
inline constexpr int k_mean_sample_count(int keys) {
  const int shift = k_mean_sample_shift(keys), stride = 1 << shift;
  return (keys >> shift) + ((keys & (stride - 1)) > k_mean_sample_offset(keys >> shift, stride) ? 1 : 0);
}

// The sm90 kernel's key/value tile: 128 tokens, i.e. two K quantization blocks. Its FP8 V tiles are
// [padded head dim][128 token slots] bytes, 128 x 128 at head dims 65-128.
constexpr int kSm90KeyTileTokens = 2 * kKBlockTokens;
constexpr int kFp8VTileChannels = 128;
constexpr int kFp8VTileBytes = kFp8VTileChannels * kSm90KeyTileTokens;
// Channels of the FP8 V statistics, scales and means per K/V head: 128 up to head dim 128 (zeros
// past the head dim), 256 at 256.
inline constexpr int fp8_v_channels(int padded_head_dim) {
  return padded_head_dim > kFp8VTileChannels ? padded_head_dim : kFp8VTileChannels;
}
constexpr float kE4m3MaxFinite = 448.0f;
// FP8 V's channel scale comes from the keys the K mean samples (k_mean_sampled), times this margin
// when that is not every key: max|V - vbar| over the sample, times 4, maps to 448 (E4M3 is a float
// format: the margin costs no precision above its subnormals). If that scale does not cover an
// element of a (sequence, kv head) (beyond 448 after scaling, or nonzero in a channel the sample
// found zero), the head takes the exact maxima over every token instead (docs/design/
// quantization.md, "FP8 P.V"). So the statistics pass reads V's sample, not V.
constexpr float kVSampleScaleMargin = 4.0f;
inline constexpr float v_scale_margin(int keys) { return k_mean_samples_all(keys) ? 1.0f : kVSampleScaleMargin; }

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;

// Padded head dim the kernels are instantiated for.
inline constexpr int padded_head_dim(int head_dim) { return head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : 256; }

inline constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Packed sequences (varlen): the per-token workspace buffers give each sequence of each head slots
// of kPackedSlotRows rows, starting at slot cu[b] / kPackedSlotRows + b. A sequence of length n
// needs max(1, ceil(n / 128)) slots (one even when empty: its V tile 0 carries the V scales), and
// floor(c / 128) + max(1, ceil(n / 128)) <= floor((c + n) / 128) + 1, so sequence b ends where
// sequence b + 1 may start and the last one ends by total / 128 + batch: no prefix sum needed.
constexpr int kPackedSlotRows = 128;
inline constexpr int64_t packed_slots(int64_t total_tokens, int64_t batch) {
  return total_tokens / kPackedSlotRows + batch;
}

// Token chunking of the K column-sum pre-pass.
struct ColumnSumChunks {
  int count;
  int tokens_per_chunk;  // multiple of kKBlockTokens
};

inline ColumnSumChunks column_sum_chunks(int seqlen_kv, bool packed = false) {
  int64_t count = ceil_div(seqlen_kv, packed ? kMinPackedChunkTokens : kMinColumnSumChunkTokens);
  if (count > kMaxColumnSumChunks) count = kMaxColumnSumChunks;
  if (count < 1) count = 1;
  int64_t per_chunk = ceil_div(ceil_div(seqlen_kv, count), kKBlockTokens) * kKBlockTokens;
  return {static_cast<int>(ceil_div(seqlen_kv, per_chunk)), static_cast<int>(per_chunk)};
}

}  // namespace sageattn
