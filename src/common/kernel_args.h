// Plain argument structs passed by value to the kernels. Strides are in elements.
#pragma once
#include <cstdint>

namespace sageattn {

struct QuantizeArgs {
  const void* q;
  int64_t q_stride_batch, q_stride_head, q_stride_token;
  const void* k;
  int64_t k_stride_batch, k_stride_head, k_stride_token;
  int batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim;
  int q_blocks;  // ceil(seqlen_q / kQBlockRows)
  int k_blocks;  // ceil(seqlen_kv / kKBlockTokens)
  bool per_warp;
  bool smooth_k;
  int column_sum_chunks, column_sum_chunk_tokens;

  int8_t* q_int8;        // [B, Hq, q_blocks * 128, padded_head_dim]
  int8_t* k_int8;        // [B, Hkv, k_blocks * 64, padded_head_dim]
  float* q_scale;        // [B, Hq, q_blocks, kQGroupsPerBlock]
  float* k_scale;        // [B, Hkv, k_blocks, kKGroupsPerBlock]
  float* k_column_sums;  // [B, Hkv, column_sum_chunks, padded_head_dim]; used when smooth_k
  float* lse_correction; // [B, Hq, seqlen_q] = dot(q, mean(K)); NULL when not needed
};

struct AttentionArgs {
  const int8_t* q_int8;
  const int8_t* k_int8;
  const float* q_scale;
  const float* k_scale;
  const void* v;
  int64_t v_stride_batch, v_stride_head, v_stride_token;
  void* out;
  int64_t out_stride_batch, out_stride_head, out_stride_token;
  float* lse;                   // NULL when not wanted
  const float* lse_correction;  // NULL when no smoothing correction applies
  int batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim;
  int q_blocks, k_blocks;
  float sm_scale;         // tau
  float sm_scale_log2;    // tau * log2(e)
};

}  // namespace sageattn
