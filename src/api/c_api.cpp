// The C ABI: resolve the device, validate, lay out the workspace, launch the pre-pass and the
// attention kernel on the caller's stream. Nothing here allocates or synchronizes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "api/check.h"
#include "api/plan.h"
#include "api/tensor_map.h"
#include "api/workspace.h"
#include "common/kernel_args.h"
#include "common/tile_codes.h"
#include "common/tiling.h"
#include "mask/classify_tiles.h"
#include "quant/quantize_qk.h"
#include "sageattn/sageattn.h"
#include "sm80/attention_sm80.h"
#if defined(SAGEATTN_HAS_SM90)
#include "quant/prepass_sm90.h"
#include "sm90/attention_sm90.h"
#endif

namespace sageattn {
namespace {

void write_reason(const std::string& text, char* reason, size_t capacity) {
  if (reason == nullptr || capacity == 0) return;
  const size_t n = std::min(text.size(), capacity - 1);
  std::memcpy(reason, text.data(), n);
  reason[n] = '\0';
}

sageattn_status fail(sageattn_status status, const std::string& text, char* reason,
                     size_t capacity) {
  write_reason(text, reason, capacity);
  return status;
}

// 0 means "the current device"; reading two attributes costs well under a microsecond.
sageattn_status resolve_sm_arch(int requested, int& sm_arch, std::string& reason) {
  if (requested < 0) {
    reason = "sm_arch must be >= 0 (0 = current device)";
    return SAGEATTN_STATUS_INVALID_ARGUMENT;
  }
  if (requested > 0) {
    sm_arch = requested;
    return SAGEATTN_STATUS_OK;
  }
  int device = 0, major = 0, minor = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  if (err != cudaSuccess) {
    cudaGetLastError();  // the query failed, not a kernel: leave no sticky state behind
    reason = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    return SAGEATTN_STATUS_UNSUPPORTED;
  }
  sm_arch = major * 10 + minor;
  return SAGEATTN_STATUS_OK;
}

sageattn_status validate(const sageattn_params* params, Plan& plan, std::string& reason) {
  if (params == nullptr) {
    reason = "params is NULL";
    return SAGEATTN_STATUS_INVALID_ARGUMENT;
  }
  int sm_arch = 0;
  sageattn_status status = resolve_sm_arch(params->sm_arch, sm_arch, reason);
  if (status == SAGEATTN_STATUS_OK) status = check_params(*params, sm_arch, reason);
  if (status == SAGEATTN_STATUS_OK) status = make_plan(*params, sm_arch, plan, reason);
  return status;
}

Packing packing_of(const sageattn_params& p) {
  if (p.cu_seqlens_q == nullptr) return Packing{};
  return {p.cu_seqlens_q, p.cu_seqlens_kv, p.total_q, p.total_kv,
          static_cast<int>(packed_slots(p.total_q, p.batch)), static_cast<int>(packed_slots(p.total_kv, p.batch))};
}

template <typename T>
T* region(void* workspace, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(workspace) + offset);
}

// A caller's tensor into an argument struct's pointer and stride fields (const or not).
template <typename Pointer>
void copy_view(const sageattn_tensor& t, Pointer& data, int64_t& stride_batch, int64_t& stride_head,
               int64_t& stride_token) {
  data = t.data;
  stride_batch = t.stride_batch;
  stride_head = t.stride_head;
  stride_token = t.stride_token;
}

QuantizeArgs make_quantize_args(const sageattn_params& p, const Plan& plan, const WorkspaceLayout& layout,
                                void* workspace) {
  QuantizeArgs a{};
  copy_view(p.q, a.q, a.q_stride_batch, a.q_stride_head, a.q_stride_token);
  copy_view(p.k, a.k, a.k_stride_batch, a.k_stride_head, a.k_stride_token);
  a.batch = p.batch;
  a.heads_q = p.heads_q;
  a.heads_kv = p.heads_kv;
  a.seqlen_q = p.seqlen_q;
  a.seqlen_kv = p.seqlen_kv;
  a.head_dim = p.head_dim;
  a.padded_head_dim = plan.padded_head_dim;
  a.q_blocks = plan.q_blocks;
  a.k_blocks = plan.k_blocks;
  a.swizzle_rows = is_sm90_kernel(plan.kernel);
  a.per_warp = p.qk_granularity == SAGEATTN_QK_GRANULARITY_PER_WARP;
  a.smooth_k = p.smooth_k != 0;
  const ColumnSumChunks chunks = column_sum_chunks(p.seqlen_kv, p.cu_seqlens_kv != nullptr);
  a.column_sum_chunks = chunks.count;
  a.column_sum_chunk_tokens = chunks.tokens_per_chunk;
  a.q_int8 = layout.has_q_int8 ? region<int8_t>(workspace, layout.q_int8) : nullptr;
  a.k_int8 = region<int8_t>(workspace, layout.k_int8);
  a.q_scale = layout.has_q_int8 ? region<float>(workspace, layout.q_scale) : nullptr;
  a.k_scale = region<float>(workspace, layout.k_scale);
  a.k_column_sums = layout.has_k_column_sums ? region<float>(workspace, layout.k_column_sums) : nullptr;
  a.lse_correction =
      layout.has_lse_correction ? region<float>(workspace, layout.lse_correction) : nullptr;
  a.packing = packing_of(p);
  a.rotate = p.qk_rotation != 0;
  return a;
}

QuantizeVArgs make_quantize_v_args(const sageattn_params& p, const Plan& plan, const WorkspaceLayout& layout,
                                   void* workspace) {
  QuantizeVArgs a{};
  copy_view(p.v, a.v, a.v_stride_batch, a.v_stride_head, a.v_stride_token);
  a.batch = p.batch;
  a.heads_kv = p.heads_kv;
  a.seqlen_kv = p.seqlen_kv;
  a.head_dim = p.head_dim;
  a.tiles = plan.v_tiles;
  a.smooth_v = p.smooth_v != 0;
  const ColumnSumChunks chunks = column_sum_chunks(p.seqlen_kv, p.cu_seqlens_kv != nullptr);
  a.stat_chunks = chunks.count;
  a.stat_chunk_tokens = chunks.tokens_per_chunk;
  a.v16 = !plan.fp8_v;
  a.v_tiles = plan.v_tma ? nullptr : region<uint8_t>(workspace, layout.v_tiles);  // none: the kernel reads V
  if (plan.fp8_v) {
    a.stats = region<float>(workspace, layout.v_stats);
    a.v_scale = region<float>(workspace, layout.v_scale);
    a.v_mean = region<float>(workspace, layout.v_mean);
    a.v_fixup = region<unsigned int>(workspace, layout.v_fixup);
  }
  a.packing = packing_of(p);
  a.work_counter = region<unsigned int>(workspace, layout.work_counter);  // sm90 kernels only
  return a;
}

MaskView view_of(const sageattn_mask& m) {
  return {m.data, m.stride_batch, m.stride_head, m.stride_row, m.stride_column};
}

MaskTileArgs make_mask_tile_args(const sageattn_params& p, const Plan& plan, const WorkspaceLayout& layout,
                                 void* workspace) {
  MaskTileArgs a{};
  a.mask = view_of(p.mask);
  a.mask_type = p.mask_type;
  a.block_mask = view_of(p.block_mask);
  a.seqlen_q = p.seqlen_q;
  a.seqlen_kv = p.seqlen_kv;
  a.q_blocks = plan.q_blocks;
  a.kv_blocks = plan.mask_kv_blocks;
  a.code_batch = plan.code_batch;
  a.code_heads = plan.code_heads;
  a.codes = region<uint8_t>(workspace, layout.tile_codes);
  a.bits = plan.mask_bits ? region<uint32_t>(workspace, layout.mask_bits) : nullptr;
  return a;
}

// Where the kernels read their tile codes: the mask pass's output (broadcast dimensions of extent 1
// get stride 0), else the caller's block mask as it is, else nowhere (every tile plain).
void set_mask_args(const sageattn_params& p, const Plan& plan, const MaskTileArgs& codes, AttentionArgs& a) {
  if (plan.mask_pass) {
    const int64_t per_head = static_cast<int64_t>(plan.q_blocks) * plan.mask_kv_blocks;
    a.tile_codes = {codes.codes, plan.code_batch == 1 ? 0 : plan.code_heads * per_head,
                    plan.code_heads == 1 ? 0 : per_head, plan.mask_kv_blocks, 1};
    a.mask = view_of(p.mask);
    a.mask_type = p.mask_type;
    if (plan.mask_bits) {  // one 16-byte entry per (row, tile)
      const int64_t rows = static_cast<int64_t>(plan.q_blocks) * kMaskBlock * plan.mask_kv_blocks;
      a.mask_bits = {codes.bits, plan.code_batch == 1 ? 0 : plan.code_heads * rows, plan.code_heads == 1 ? 0 : rows,
                     plan.mask_kv_blocks, 1};
    }
  } else if (p.block_mask.data != nullptr) {
    a.tile_codes = view_of(p.block_mask);
  }
}

AttentionArgs make_attention_args(const sageattn_params& p, const QuantizeArgs& quant) {
  AttentionArgs a{};
  a.q_int8 = quant.q_int8;
  a.q_scale = quant.q_scale;
  copy_view(p.q, a.q, a.q_stride_batch, a.q_stride_head, a.q_stride_token);
  a.q_rotate = quant.rotate;
  a.q_per_warp = quant.per_warp;
  a.k_int8 = quant.k_int8;
  a.k_scale = quant.k_scale;
  copy_view(p.v, a.v, a.v_stride_batch, a.v_stride_head, a.v_stride_token);
  copy_view(p.out, a.out, a.out_stride_batch, a.out_stride_head, a.out_stride_token);
  a.lse = p.lse;
  a.lse_correction = quant.lse_correction;
  a.batch = p.batch;
  a.heads_q = p.heads_q;
  a.heads_kv = p.heads_kv;
  a.seqlen_q = p.seqlen_q;
  a.seqlen_kv = p.seqlen_kv;
  a.head_dim = p.head_dim;
  a.q_blocks = quant.q_blocks;
  a.k_blocks = quant.k_blocks;
  a.sm_scale = p.sm_scale;
  a.sm_scale_log2 = static_cast<float>(static_cast<double>(p.sm_scale) * kLog2e);
  a.packing = quant.packing;
  return a;
}

// The pre-pass and the attention kernel of the plan: 3 launches with K smoothing (2 without on the
// sm80 path): statistics, quantization, attention; one more (first) with an element mask.
cudaError_t launch_all(const sageattn_params& p, const Plan& plan, const WorkspaceLayout& layout, void* workspace,
                       cudaStream_t stream) {
  const sageattn_dtype dtype = static_cast<sageattn_dtype>(p.dtype);  // checked by check_params
  const QuantizeArgs quant = make_quantize_args(p, plan, layout, workspace);
  AttentionArgs args = make_attention_args(p, quant);
  const MaskTileArgs codes = plan.mask_pass ? make_mask_tile_args(p, plan, layout, workspace) : MaskTileArgs{};
  if (plan.mask_pass) {
    const cudaError_t err = launch_classify_tiles(codes, dtype, stream);
    if (err != cudaSuccess) return err;
  }
  set_mask_args(p, plan, codes, args);
  if (!is_sm90_kernel(plan.kernel)) {
    const cudaError_t err = launch_quantize_qk(quant, dtype, stream);
    if (err != cudaSuccess) return err;
    return launch_attention_sm80(args, dtype, p.is_causal != 0, plan.dependent_launch, stream);
  }
#if defined(SAGEATTN_HAS_SM90)
  const QuantizeVArgs v = make_quantize_v_args(p, plan, layout, workspace);
  const cudaError_t err = launch_prepass_sm90(quant, v, dtype, stream);
  if (err != cudaSuccess) return err;
  args.v_tiles = v.v_tiles;
  args.v_scale = v.v_scale;
  args.v_mean = v.v_mean;
  args.work_counter = v.work_counter;
  if (plan.v_tma) {
    const cudaError_t map_err = encode_v_tensor_map(p, args.v_map);
    if (map_err != cudaSuccess) return map_err;
  }
  return launch_attention_sm90(args, dtype, p.is_causal != 0, !plan.fp8_v, plan.padded_head_dim, stream);
#else
  return cudaErrorInvalidDeviceFunction;  // make_plan never selects a kernel this build lacks
#endif
}

}  // namespace
}  // namespace sageattn

using namespace sageattn;

extern "C" {

uint32_t sageattn_abi_version(void) { return SAGEATTN_ABI_VERSION; }

const char* sageattn_version(void) { return SAGEATTN_VERSION_STRING; }

const char* sageattn_compiled_archs(void) { return SAGEATTN_ARCH_STRING; }

sageattn_params sageattn_default_params(void) {
  sageattn_params p;
  std::memset(&p, 0, sizeof(p));
  p.abi_version = SAGEATTN_ABI_VERSION;
  p.dtype = SAGEATTN_DTYPE_FP16;
  p.smooth_k = 1;
  p.qk_granularity = SAGEATTN_QK_GRANULARITY_PER_THREAD;
  p.kernel = SAGEATTN_KERNEL_AUTO;
  p.smooth_v = 1;
  p.qk_rotation = 1;
  return p;
}

sageattn_status sageattn_check(const sageattn_params* params, char* reason, size_t capacity) {
  std::string text;
  Plan plan;
  const sageattn_status status = validate(params, plan, text);
  write_reason(text, reason, capacity);
  return status;
}

sageattn_status sageattn_selected_kernel(const sageattn_params* params, int32_t* kernel, char* reason,
                                         size_t capacity) {
  if (kernel == nullptr) return fail(SAGEATTN_STATUS_INVALID_ARGUMENT, "kernel is NULL", reason, capacity);
  std::string text;
  Plan plan;
  const sageattn_status status = validate(params, plan, text);
  if (status != SAGEATTN_STATUS_OK) return fail(status, text, reason, capacity);
  *kernel = plan.kernel;
  write_reason("", reason, capacity);
  return SAGEATTN_STATUS_OK;
}

sageattn_status sageattn_workspace_size(const sageattn_params* params, size_t* bytes, char* reason,
                                        size_t capacity) {
  std::string text;
  if (bytes == nullptr) return fail(SAGEATTN_STATUS_INVALID_ARGUMENT, "bytes is NULL", reason, capacity);
  *bytes = 0;
  Plan plan;
  const sageattn_status status = validate(params, plan, text);
  if (status != SAGEATTN_STATUS_OK) return fail(status, text, reason, capacity);
  *bytes = workspace_layout(*params, plan).total_bytes;
  write_reason("", reason, capacity);
  return SAGEATTN_STATUS_OK;
}

sageattn_status sageattn_forward(const sageattn_params* params, void* workspace,
                                 size_t workspace_bytes, void* stream, char* reason,
                                 size_t capacity) {
  std::string text;
  Plan plan;
  const sageattn_status status = validate(params, plan, text);
  if (status != SAGEATTN_STATUS_OK) return fail(status, text, reason, capacity);
  const sageattn_params& p = *params;
  const WorkspaceLayout layout = workspace_layout(p, plan);
  if (workspace == nullptr || workspace_bytes < layout.total_bytes) {
    return fail(SAGEATTN_STATUS_WORKSPACE_TOO_SMALL,
                "workspace must be at least " + std::to_string(layout.total_bytes) +
                    " bytes (got " + std::to_string(workspace_bytes) +
                    (workspace == nullptr ? ", NULL pointer)" : ")"),
                reason, capacity);
  }
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) {
    return fail(SAGEATTN_STATUS_INVALID_ARGUMENT, "workspace must be 256-byte aligned", reason,
                capacity);
  }
  const cudaError_t err = launch_all(p, plan, layout, workspace, static_cast<cudaStream_t>(stream));
  if (err != cudaSuccess) {
    return fail(SAGEATTN_STATUS_CUDA_ERROR,
                std::string("kernel launch failed: ") + cudaGetErrorString(err), reason, capacity);
  }
  write_reason("", reason, capacity);
  return SAGEATTN_STATUS_OK;
}

}  // extern "C"
