/*
 * sageattn: 8-bit attention (INT8 Q.K^T, 16-bit or FP8 P.V) for NVIDIA GPUs. C ABI.
 *
 * This header is plain C (usable from C, C++, ctypes, cffi). It has no CUDA or torch dependency:
 * pointers are device pointers, the stream is passed as an opaque `void*` (a cudaStream_t).
 *
 * Contract of every entry point:
 *  - never allocates device memory and never synchronizes the device or the stream;
 *  - launches only on the stream it is given (a NULL stream means the legacy default stream: pass
 *    the stream you actually use, e.g. torch.cuda.current_stream().cuda_stream);
 *  - keeps no global state: several devices, streams and threads may call it concurrently;
 *  - returns a status; when `reason` is not NULL, a human-readable, NUL-terminated explanation is
 *    written into it (truncated to reason_capacity bytes).
 *
 * Tensors are described by a device pointer and int64 strides in elements; the last (head) dimension
 * must be contiguous. HND ([B, H, N, D]), NHD ([B, N, H, D]) and any other view whose last dimension is
 * contiguous are all just strides.
 *
 * Semantics (per batch b, query head h, kv head h' = h / (heads_q / heads_kv)):
 *   out[b,h,i,:] = softmax_j(sm_scale * q[b,h,i,:] . k[b,h',j,:] + mask(i,j)) @ v[b,h',:,:]
 * mask(i,j) is 0 or -infinity from is_causal, the boolean mask and the block mask (all that are
 * given apply), plus the additive mask's value when one is given.
 * Causal masking is bottom-right aligned (the FlashAttention-2 convention): query i may attend to
 * key j iff j <= i + (seqlen_kv - seqlen_q). A query row that may attend to no key (causal with
 * seqlen_q > seqlen_kv, or everything masked) gets an output of zeros and an LSE of -infinity.
 * lse[b,h,i] = log(sum_j exp(sm_scale * q.k_j)) in natural log, float32, laid out [B, Hq, Nq]
 * contiguous; it is the LSE of the true (unsmoothed) scores.
 */
#ifndef SAGEATTN_SAGEATTN_H
#define SAGEATTN_SAGEATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SAGEATTN_API __declspec(dllexport)
#else
#define SAGEATTN_API __attribute__((visibility("default")))
#endif

/* Bumped whenever sageattn_params changes layout; sageattn_params.abi_version must equal it. */
#define SAGEATTN_ABI_VERSION 4

/* Rows and keys covered by one entry of sageattn_params.block_mask. */
#define SAGEATTN_BLOCK_MASK_TILE 128

typedef enum sageattn_status {
  SAGEATTN_STATUS_OK = 0,
  SAGEATTN_STATUS_INVALID_ARGUMENT = 1, /* the call is malformed (null pointer, bad shape, bad stride) */
  SAGEATTN_STATUS_UNSUPPORTED = 2,      /* well-formed, but not supported by this build or device */
  SAGEATTN_STATUS_WORKSPACE_TOO_SMALL = 3,
  SAGEATTN_STATUS_CUDA_ERROR = 4 /* a CUDA runtime call or a kernel launch failed */
} sageattn_status;

typedef enum sageattn_dtype {
  SAGEATTN_DTYPE_FP16 = 0,
  SAGEATTN_DTYPE_BF16 = 1,
  /* FP8 E4M3 (OCP "e4m3fn": bias 7, 3 mantissa bits, no infinities, max finite 448). Valid ONLY as
     the pv_dtype of sageattn_reference_emulated_v2 (the FP8 P.V pipeline); q, k, v and out of
     sageattn_params stay fp16 or bf16, and every other entry point rejects it. */
  SAGEATTN_DTYPE_E4M3 = 2
} sageattn_dtype;

/* Which rows share one INT8 scale for Q and K. */
typedef enum sageattn_qk_granularity {
  /* One scale per group of rows that one MMA lane owns: within each 32-row warp slice of a 128-row
     Q block, rows with equal (row % 8); within each 64-token K block, tokens with equal
     ((token % 8) / 2). Each lane then needs exactly one Q and one K scale per tile. */
  SAGEATTN_QK_GRANULARITY_PER_THREAD = 0,
  /* One scale per 32-row warp slice of Q and one per 64-token block of K. */
  SAGEATTN_QK_GRANULARITY_PER_WARP = 1
} sageattn_qk_granularity;

typedef enum sageattn_kernel {
  /* Best kernel for the device and call: on sm90 (builds with 90a) at head dims 65..128
     SM90_WGMMA_PV16 for dense calls with seqlen_q <= 1536 (3072 causal) whose V a TMA tensor map
     can describe (faster there or within 3 %, and more accurate), SM90_WGMMA otherwise; at head
     dims <= 64 SM90_WGMMA when seqlen_q and seqlen_kv both reach 3072 (6144 causal; padded to
     128, still faster there), SM80_MMA otherwise; SM80_MMA on other GPUs and at head dims above
     128. */
  SAGEATTN_KERNEL_AUTO = 0,
  SAGEATTN_KERNEL_SM80_MMA = 1,  /* INT8 Q.K^T + 16-bit P.V with mma.sync; sm80 and newer */
  /* INT8 Q.K^T + FP8 (E4M3) P.V with wgmma, warp-specialized; sm90 (Hopper) only, and only in
     builds that include the sm_90a target. AUTO picks it on sm90 above 4096 query rows and for
     packed sequences. */
  SAGEATTN_KERNEL_SM90_WGMMA = 2,
  /* The accurate mode of SM90_WGMMA: the same kernel with a 16-bit P.V (P and V in the input dtype,
     FP32 accumulation, V neither quantized nor smoothed, as SM80_MMA): about 3x less error on
     Gaussian inputs; faster than SM90_WGMMA up to ~4K query rows, ~11% slower at 16K. Dense calls
     read V with a TMA tensor map (no V pass, no V workspace); packed sequences and V views a map
     cannot describe (a stride of 0) copy V into workspace tiles twice the size of the FP8 ones
     (docs/accuracy.md, docs/performance.md). Same requirements as SM90_WGMMA. */
  SAGEATTN_KERNEL_SM90_WGMMA_PV16 = 3,
  /* The fastest kernel with a 16-bit P.V: SM90_WGMMA_PV16 wherever AUTO would pick an sm90 kernel,
     else SM80_MMA (what AUTO picks there too). */
  SAGEATTN_KERNEL_AUTO_PV16 = 4
} sageattn_kernel;

/* The element mask of sageattn_params (SDPA's attn_mask). */
typedef enum sageattn_mask_type {
  SAGEATTN_MASK_NONE = 0,
  /* One byte per element, nonzero = the query may attend to the key (torch.bool, True = keep). */
  SAGEATTN_MASK_BOOL = 1,
  /* The dtype of q (fp16 or bf16), added to the scaled score sm_scale * q.k; -infinity masks the
     key. NaN and values <= -1e30 count as -infinity, values above 1e30 as 1e30, so no mask value
     makes a NaN (and finfo(dtype).min masks, as Hugging Face models use it). */
  SAGEATTN_MASK_ADDITIVE = 2,
  /* The same in float32 (SDPA accepts float32 masks with 16-bit inputs). */
  SAGEATTN_MASK_ADDITIVE_FP32 = 3
} sageattn_mask_type;

/* A mask view [batch, heads_q, rows, columns]; strides in elements, any of them may be 0 to
   broadcast (a [seqlen_q, seqlen_kv] mask shared by all heads has stride_batch = stride_head = 0). */
typedef struct sageattn_mask {
  const void* data;
  int64_t stride_batch;
  int64_t stride_head;
  int64_t stride_row;
  int64_t stride_column;
} sageattn_mask;

/* A [batch, heads, tokens, head_dim] view; strides in elements, head_dim stride is 1. */
typedef struct sageattn_tensor {
  void* data;
  int64_t stride_batch;
  int64_t stride_head;
  int64_t stride_token;
} sageattn_tensor;

typedef struct sageattn_params {
  uint32_t abi_version; /* = SAGEATTN_ABI_VERSION */
  int32_t batch;
  int32_t heads_q;
  int32_t heads_kv; /* heads_q % heads_kv == 0 (GQA / MQA) */
  int32_t seqlen_q;
  int32_t seqlen_kv;
  int32_t head_dim;  /* for q, k, v and out alike: a multiple of 8 up to 256; above 128 only on
                        SM80_MMA (AUTO picks it) and on GPUs with 128 KB of shared memory per
                        block (sm80, sm87, sm90, sm100; not sm86, sm89, sm120) */
  /* Enumerations are stored as int32_t, never as enum types: their size is then fixed for every
     compiler and foreign-function layer, and an out-of-range value is a checked error, not UB. */
  int32_t dtype; /* a sageattn_dtype: of q, k, v and out */

  sageattn_tensor q;   /* read only */
  sageattn_tensor k;   /* read only */
  sageattn_tensor v;   /* read only */
  sageattn_tensor out; /* written */
  float* lse;          /* optional [batch, heads_q, seqlen_q] float32 contiguous; NULL = not wanted */

  float sm_scale;      /* softmax scale, finite and > 0 (the usual default is 1/sqrt(head_dim)) */
  int32_t is_causal;   /* 0 or 1 */
  int32_t smooth_k;    /* 0 or 1: subtract the per-channel mean of K over tokens before quantizing */
  int32_t qk_granularity; /* a sageattn_qk_granularity */
  int32_t kernel;         /* a sageattn_kernel */
  /* Compute capability (major*10 + minor, e.g. 90) of the device that will run the call.
     0 = ask the CUDA runtime for the current device. Lets callers check support without a GPU. */
  int32_t sm_arch;
  /* 0 or 1: subtract the per-channel mean of V (over tokens) before FP8 quantization and add it
     back to the output (exact for every row with at least one allowed key). Applies to kernels with
     FP8 P.V (SM90_WGMMA); kernels with 16-bit P.V do not quantize V, where it would change nothing,
     and accept either value. Default 1. */
  int32_t smooth_v;
  /* Element mask: a sageattn_mask_type and a [batch, heads_q, seqlen_q, seqlen_kv] view. NONE
     requires mask.data == NULL (a mask is never ignored). Tiles the mask removes entirely are
     skipped; a mask costs one more launch (a pass over the mask that classifies its tiles). */
  int32_t mask_type;
  sageattn_mask mask;
  /* Block-sparse mask: one byte per (query block, key block) of SAGEATTN_BLOCK_MASK_TILE rows and
     keys, a [batch, heads_q, ceil(seqlen_q / 128), ceil(seqlen_kv / 128)] view; 0 = the block is
     masked (skipped, never computed), nonzero = computed (the other masks still apply inside it).
     data == NULL: no block mask. Needs no extra launch when it is the only mask. */
  sageattn_mask block_mask;
  /* Packed sequences (varlen, flash-attn's layout); cu_seqlens_q == NULL: dense batches, and then
     cu_seqlens_kv must be NULL and total_q, total_kv 0. Otherwise `batch` sequences are packed
     along the token axis of q and out ([total_q, heads_q, head_dim]) and of k and v
     ([total_kv, heads_kv, head_dim]), every stride_batch is 0, and sequence b is rows
     cu_seqlens_q[b] .. cu_seqlens_q[b + 1] - 1 of q against rows cu_seqlens_kv[b] ..
     cu_seqlens_kv[b + 1] - 1 of k and v: its own attention problem (its own K and V smoothing and
     scales, causal bottom-right within it). Both arrays are device int32 [batch + 1] (0 first,
     non-decreasing, last = total), read only by the kernels: no host synchronization.
     seqlen_q and seqlen_kv are upper bounds of the lengths, given by the caller (grids and the
     workspace are sized from them and from the totals). Invalid arrays give wrong output, never
     an out-of-bounds access: boundaries are clamped to [0, total], a sequence longer than its
     bound is cut to it (its later rows are not written). Sequences may be empty; queries with no
     key get zeros and LSE -infinity. lse, when wanted, is [heads_q, total_q] contiguous. Masks
     are not supported with packed sequences. */
  const int32_t* cu_seqlens_q;
  const int32_t* cu_seqlens_kv;
  int32_t total_q;
  int32_t total_kv;
  /* 0 or 1 (default 1): rotate every row of Q and of (smoothed) K by 8 x 8 Walsh-Hadamard blocks
     before INT8 quantization. Q.K^T is unchanged; channels with outliers are spread over their
     block, which halves the error on inputs with outlier channels (docs/accuracy.md) and costs
     the quantization pass a few adds per element (docs/design/quantization.md, "Rotation"). */
  int32_t qk_rotation;
} sageattn_params;

/* SAGEATTN_ABI_VERSION of the library. Foreign-function callers check it before anything that
   passes or returns sageattn_params (a struct of another layout would be read or written wrongly). */
SAGEATTN_API uint32_t sageattn_abi_version(void);

/* Library version string, e.g. "0.1.0". */
SAGEATTN_API const char* sageattn_version(void);

/* Space-separated list of the architectures this build has kernels for, e.g. "80 86 89 90a". */
SAGEATTN_API const char* sageattn_compiled_archs(void);

/* Zero-initialized params with abi_version, defaults (per-thread, smooth_k = 1, smooth_v = 1,
   kernel = AUTO). */
SAGEATTN_API sageattn_params sageattn_default_params(void);

/* Can this call run as described? OK, or the reason it cannot. Touches no device memory. */
SAGEATTN_API sageattn_status sageattn_check(const sageattn_params* params, char* reason,
                                            size_t reason_capacity);

/* Bytes of device workspace forward() needs for these params (the params must pass the checks). */
SAGEATTN_API sageattn_status sageattn_workspace_size(const sageattn_params* params, size_t* bytes,
                                                     char* reason, size_t reason_capacity);

/* The kernel forward() runs for these params: AUTO and AUTO_PV16 resolved for the device (or for
   params->sm_arch when it is set), other kernels as given. Same checks as sageattn_check; *kernel
   is written only on OK. Touches no device memory. */
SAGEATTN_API sageattn_status sageattn_selected_kernel(const sageattn_params* params, int32_t* kernel,
                                                      char* reason, size_t reason_capacity);

/* Runs attention on `stream`. `workspace` is device memory of at least workspace_size() bytes,
   256-byte aligned, that nothing else uses until the work on `stream` is done. */
SAGEATTN_API sageattn_status sageattn_forward(const sageattn_params* params, void* workspace,
                                              size_t workspace_bytes, void* stream, char* reason,
                                              size_t reason_capacity);

/* ---------------------------------------------------------------------------------------------
 * CPU reference (host memory, no GPU needed). Used by the tests as the ground truth and as an
 * exact emulation of the quantized pipeline.
 * Inputs are float32 arrays in [batch, heads, tokens, head_dim] contiguous layout (convert fp16 or
 * bf16 inputs to float32 first: the conversion is exact). Outputs: out [batch, heads_q, seqlen_q,
 * head_dim] and lse [batch, heads_q, seqlen_q] (lse may be NULL).
 * --------------------------------------------------------------------------------------------- */
typedef struct sageattn_reference_problem {
  int32_t batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim;
  /* To emulate a GPU call exactly, pass the float sm_scale of that call widened to double. */
  double sm_scale;
  int32_t is_causal;
  /* The emulations only: 1 = rotate Q and K as sageattn_params.qk_rotation = 1 (the library's
     default) does, 0 = no rotation (a zero-initialized problem). */
  int32_t qk_rotation;
} sageattn_reference_problem;

/* Exact attention in double precision. */
SAGEATTN_API sageattn_status sageattn_reference_exact(const sageattn_reference_problem* problem,
                                                      const float* q, const float* k, const float* v,
                                                      double* out, double* lse);

/* The quantized pipeline of SAGEATTN_KERNEL_SM80_MMA, emulated: the same K smoothing, the same INT8
   groups, rounding and scales, exact integer Q.K^T, the same dequantization constant, P rounded to
   `pv_dtype` (fp16 or bf16 only; E4M3 needs sageattn_reference_emulated_v2) as the kernel feeds it
   to the tensor core; softmax and P.V accumulated in double. Not bit-identical to the kernel: the
   kernel rounds P against a running row maximum (which may lag the final one, see
   src/sm80/online_softmax.cuh) and accumulates in fp32, so per-element roundings differ while their
   size is the same. */
SAGEATTN_API sageattn_status sageattn_reference_emulated(const sageattn_reference_problem* problem,
                                                         int32_t granularity /* sageattn_qk_granularity */,
                                                         int32_t smooth_k,
                                                         int32_t pv_dtype /* sageattn_dtype */,
                                                         const float* q, const float* k,
                                                         const float* v, double* out, double* lse);

/* sageattn_reference_emulated with the FP8 P.V pipeline and V smoothing (docs/design/quantization.md,
   "FP8 P.V"). pv_dtype FP16 or BF16: identical to sageattn_reference_emulated (smooth_v must be 0:
   V smoothing is defined only for FP8 P.V, other values give INVALID_ARGUMENT). pv_dtype E4M3: V is
   quantized per channel (over all tokens of its (batch, kv head)) to E4M3 with scale max|V - vbar|/448,
   vbar the channel mean when smooth_v = 1 (else 0); P tilde = e4m3(448 * exp2(x - m)) with m the row
   maximum of the base-2 scores; out = (sum_j P tilde_j * Vq_j) / l * scale + vbar with
   l = sum_j 448 * exp2(x_j - m), all in double. The LSE is computed as in
   sageattn_reference_emulated.
   A row with no allowed key outputs 0 (not vbar) and LSE -infinity. */
SAGEATTN_API sageattn_status sageattn_reference_emulated_v2(const sageattn_reference_problem* problem,
                                                            int32_t granularity /* sageattn_qk_granularity */,
                                                            int32_t smooth_k, int32_t smooth_v,
                                                            int32_t pv_dtype /* sageattn_dtype */,
                                                            const float* q, const float* k,
                                                            const float* v, double* out, double* lse);

/* sageattn_reference_emulated_v2 with an element mask, as the kernels apply SAGEATTN_MASK_ADDITIVE:
   `mask` is float32 [batch, heads_q, seqlen_q, seqlen_kv] contiguous (host memory), added to each
   base-2 score as float(mask * log2(e)); -infinity masks the key (give boolean masks as 0 / -inf;
   map NaN and values <= -1e30 to -infinity and cap values at 1e30 first, as the kernels do). NULL = no mask; is_causal
   still applies. A row left with no key outputs 0 and LSE -infinity. */
SAGEATTN_API sageattn_status sageattn_reference_emulated_masked(const sageattn_reference_problem* problem,
                                                                int32_t granularity /* sageattn_qk_granularity */,
                                                                int32_t smooth_k, int32_t smooth_v,
                                                                int32_t pv_dtype /* sageattn_dtype */,
                                                                const float* q, const float* k, const float* v,
                                                                const float* mask, double* out, double* lse);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SAGEATTN_SAGEATTN_H */
