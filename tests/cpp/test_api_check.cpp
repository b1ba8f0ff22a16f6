// sageattn_check / sageattn_workspace_size / sageattn_default_params without a GPU: sm_arch is given
// explicitly (80 or 90) and the tensors are dummy, suitably aligned device addresses that are never
// dereferenced (sageattn_forward is never called on them).
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "sageattn/sageattn.h"

namespace {

// HND-contiguous strides for [batch, heads, tokens, head_dim].
sageattn_tensor dummy_tensor(uintptr_t address, int heads, int tokens, int head_dim) {
  sageattn_tensor t{};
  t.data = reinterpret_cast<void*>(address);
  t.stride_token = head_dim;
  t.stride_head = static_cast<int64_t>(tokens) * head_dim;
  t.stride_batch = static_cast<int64_t>(heads) * tokens * head_dim;
  return t;
}

sageattn_params valid_params(int seqlen_q = 100, int seqlen_kv = 130, int head_dim = 64, int sm_arch = 90) {
  sageattn_params p = sageattn_default_params();
  p.batch = 2;
  p.heads_q = 8;
  p.heads_kv = 2;
  p.seqlen_q = seqlen_q;
  p.seqlen_kv = seqlen_kv;
  p.head_dim = head_dim;
  p.dtype = SAGEATTN_DTYPE_FP16;
  p.q = dummy_tensor(0x10000000u, p.heads_q, seqlen_q, head_dim);
  p.k = dummy_tensor(0x20000000u, p.heads_kv, seqlen_kv, head_dim);
  p.v = dummy_tensor(0x30000000u, p.heads_kv, seqlen_kv, head_dim);
  p.out = dummy_tensor(0x40000000u, p.heads_q, seqlen_q, head_dim);
  p.lse = nullptr;
  p.sm_scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  p.is_causal = 0;
  p.smooth_k = 1;
  p.qk_granularity = SAGEATTN_QK_GRANULARITY_PER_THREAD;
  p.kernel = SAGEATTN_KERNEL_AUTO;
  p.sm_arch = sm_arch;
  return p;
}

struct CheckResult {
  sageattn_status status;
  std::string reason;
};

CheckResult check(const sageattn_params& p) {
  char reason[512];
  std::memset(reason, 'X', sizeof reason);
  const sageattn_status status = sageattn_check(&p, reason, sizeof reason);
  EXPECT_NE(std::memchr(reason, '\0', sizeof reason), nullptr) << "reason is not NUL-terminated";
  return {status, std::string(reason, strnlen(reason, sizeof reason))};
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Applies `mutate` to valid params and expects `expected` from check, a non-empty reason for any
// failure, and the same status from workspace_size.
void expect_status(const std::function<void(sageattn_params&)>& mutate, sageattn_status expected,
                   const std::string& what) {
  sageattn_params p = valid_params();
  mutate(p);
  const CheckResult r = check(p);
  EXPECT_EQ(r.status, expected) << what << " (reason: " << r.reason << ")";
  if (expected != SAGEATTN_STATUS_OK) {
    EXPECT_FALSE(r.reason.empty()) << what;
  }
  size_t bytes = 0;
  EXPECT_EQ(sageattn_workspace_size(&p, &bytes, nullptr, 0), expected) << what << ": workspace_size";
}

using Mutation = std::function<void(sageattn_params&)>;
const sageattn_status kInvalid = SAGEATTN_STATUS_INVALID_ARGUMENT;
const sageattn_status kUnsupported = SAGEATTN_STATUS_UNSUPPORTED;

// The four tensors, for checks that must hold for each of them.
struct TensorField {
  const char* name;
  sageattn_tensor sageattn_params::*member;
};
const TensorField kTensors[] = {{"q", &sageattn_params::q},
                                {"k", &sageattn_params::k},
                                {"v", &sageattn_params::v},
                                {"out", &sageattn_params::out}};

TEST(ApiDefaults, DefaultParams) {
  const sageattn_params p = sageattn_default_params();
  EXPECT_EQ(p.abi_version, static_cast<uint32_t>(SAGEATTN_ABI_VERSION));
  EXPECT_EQ(p.qk_rotation, 1);
  EXPECT_EQ(p.qk_granularity, SAGEATTN_QK_GRANULARITY_PER_THREAD);
  EXPECT_EQ(p.smooth_k, 1);
  EXPECT_EQ(p.kernel, SAGEATTN_KERNEL_AUTO);
  EXPECT_EQ(p.is_causal, 0);
  EXPECT_EQ(p.lse, nullptr);
  EXPECT_EQ(p.q.data, nullptr);
  EXPECT_EQ(p.mask_type, SAGEATTN_MASK_NONE);
  EXPECT_EQ(p.mask.data, nullptr);
  EXPECT_EQ(p.block_mask.data, nullptr);
}

TEST(ApiCheck, Masks) {
  const void* kMaskData = reinterpret_cast<const void*>(0x60000000u);
  auto with_mask = [kMaskData](int type, uintptr_t offset = 0) {
    return [kMaskData, type, offset](sageattn_params& p) {
      p.mask_type = type;
      p.mask.data = static_cast<const char*>(kMaskData) + offset;
      p.mask.stride_row = p.seqlen_kv;
      p.mask.stride_column = 1;
    };
  };
  const sageattn_status ok = SAGEATTN_STATUS_OK;
  expect_status(with_mask(SAGEATTN_MASK_BOOL, 1), ok, "bool mask, any address");
  expect_status(with_mask(SAGEATTN_MASK_ADDITIVE, 2), ok, "additive mask, 2-byte aligned");
  expect_status(with_mask(SAGEATTN_MASK_ADDITIVE_FP32, 4), ok, "fp32 mask, 4-byte aligned");
  expect_status(with_mask(SAGEATTN_MASK_ADDITIVE, 1), kInvalid, "additive mask, odd address");
  expect_status(with_mask(SAGEATTN_MASK_ADDITIVE_FP32, 2), kInvalid, "fp32 mask, 2-byte aligned");
  expect_status(with_mask(4), kInvalid, "mask type 4");
  expect_status(with_mask(-1), kInvalid, "mask type -1");
  expect_status(with_mask(SAGEATTN_MASK_NONE), kInvalid, "data without a type: never ignored");
  expect_status([](sageattn_params& p) { p.mask_type = SAGEATTN_MASK_BOOL; }, kInvalid, "type without data");
  expect_status(
      [&](sageattn_params& p) {
        with_mask(SAGEATTN_MASK_BOOL)(p);
        p.mask.stride_head = -1;
      },
      kInvalid, "negative mask stride");
  expect_status([kMaskData](sageattn_params& p) { p.block_mask.data = kMaskData; }, ok, "block mask alone");
  expect_status(
      [kMaskData](sageattn_params& p) {
        p.block_mask.data = kMaskData;
        p.block_mask.stride_column = -1;
      },
      kInvalid, "negative block mask stride");
  // The mask pass runs one CTA per 128 x 128 tile: 65535 heads x 2^13 x 2^13 tiles exceed 2^31 - 1.
  expect_status(
      [&](sageattn_params& p) {
        with_mask(SAGEATTN_MASK_BOOL)(p);
        p.heads_q = 65535;
        p.heads_kv = 1;
        p.seqlen_q = p.seqlen_kv = 1 << 20;
      },
      kUnsupported, "mask pass grid");
}

TEST(ApiCheck, ValidParamsPassWithEmptyReason) {
  for (int arch : {80, 90}) {
    for (int head_dim : {8, 64, 72, 128}) {
      for (int causal : {0, 1}) {
        sageattn_params p = valid_params(100, 130, head_dim, arch);
        p.is_causal = causal;
        const CheckResult r = check(p);
        EXPECT_EQ(r.status, SAGEATTN_STATUS_OK) << "arch " << arch << " hd " << head_dim << ": " << r.reason;
        EXPECT_EQ(r.reason, "");
      }
    }
  }
  // Every option value, GQA/MQA, one token, lse present, explicit kernel, bf16, NHD strides.
  const sageattn_status ok = SAGEATTN_STATUS_OK;
  expect_status([](sageattn_params& p) { p.qk_granularity = SAGEATTN_QK_GRANULARITY_PER_WARP; }, ok, "per-warp");
  expect_status([](sageattn_params& p) { p.smooth_k = 0; }, SAGEATTN_STATUS_OK, "smooth_k 0");
  expect_status([](sageattn_params& p) { p.dtype = SAGEATTN_DTYPE_BF16; }, SAGEATTN_STATUS_OK, "bf16");
  expect_status([](sageattn_params& p) { p.kernel = SAGEATTN_KERNEL_SM80_MMA; }, ok, "sm80 kernel");
  expect_status([](sageattn_params& p) { p.heads_kv = 1; }, SAGEATTN_STATUS_OK, "MQA");
  expect_status([](sageattn_params& p) { p.heads_kv = 8; }, SAGEATTN_STATUS_OK, "MHA");
  expect_status([](sageattn_params& p) { p.seqlen_q = p.seqlen_kv = 1; }, SAGEATTN_STATUS_OK, "one token");
  expect_status([](sageattn_params& p) { p.lse = reinterpret_cast<float*>(0x50000004u); }, SAGEATTN_STATUS_OK,
                "lse 4-byte aligned");
  expect_status(
      [](sageattn_params& p) {
        // NHD: [B, N, H, D] for q/out, [B, N, Hkv, D] for k/v.
        for (const TensorField& f : kTensors) {
          sageattn_tensor& t = p.*f.member;
          const bool is_kv = f.member == &sageattn_params::k || f.member == &sageattn_params::v;
          const int heads = is_kv ? p.heads_kv : p.heads_q;
          const int tokens = is_kv ? p.seqlen_kv : p.seqlen_q;
          t.stride_head = p.head_dim;
          t.stride_token = static_cast<int64_t>(heads) * p.head_dim;
          t.stride_batch = static_cast<int64_t>(tokens) * heads * p.head_dim;
        }
      },
      SAGEATTN_STATUS_OK, "NHD strides");
}

TEST(ApiCheck, AbiVersion) {
  expect_status([](sageattn_params& p) { p.abi_version = SAGEATTN_ABI_VERSION + 1; }, kInvalid, "abi + 1");
  expect_status([](sageattn_params& p) { p.abi_version = 0; }, kInvalid, "abi 0");
}

TEST(ApiCheck, Sizes) {
  expect_status([](sageattn_params& p) { p.batch = 0; }, kInvalid, "batch 0");
  expect_status([](sageattn_params& p) { p.batch = -1; }, kInvalid, "batch -1");
  expect_status([](sageattn_params& p) { p.heads_q = 0; }, kInvalid, "heads_q 0");
  expect_status([](sageattn_params& p) { p.heads_kv = 0; }, kInvalid, "heads_kv 0");
  expect_status([](sageattn_params& p) { p.heads_kv = -2; }, kInvalid, "heads_kv -2");
  expect_status([](sageattn_params& p) { p.seqlen_q = 0; }, kInvalid, "seqlen_q 0");
  expect_status([](sageattn_params& p) { p.seqlen_kv = 0; }, kInvalid, "seqlen_kv 0");
  expect_status([](sageattn_params& p) { p.seqlen_kv = -7; }, kInvalid, "seqlen_kv -7");
  expect_status([](sageattn_params& p) { p.heads_kv = 3; }, kInvalid, "heads_q % heads_kv");
  expect_status([](sageattn_params& p) { p.heads_kv = 16; }, kInvalid, "heads_kv > heads_q");
}

TEST(ApiCheck, GridAndIndexLimits) {
  // Batch and heads index CUDA grid dimensions y/z (at most 65535); token indices are int32 with
  // padding to whole tiles, so lengths stop at 2^30.
  expect_status([](sageattn_params& p) { p.batch = 65535; }, SAGEATTN_STATUS_OK, "batch 65535");
  expect_status([](sageattn_params& p) { p.batch = 65536; }, kUnsupported, "batch 65536");
  expect_status([](sageattn_params& p) { p.heads_q = 65536; p.heads_kv = 1; }, kUnsupported, "heads 65536");
  expect_status([](sageattn_params& p) { p.seqlen_q = 1 << 30; }, SAGEATTN_STATUS_OK, "seqlen_q 2^30");
  expect_status([](sageattn_params& p) { p.seqlen_q = (1 << 30) + 1; }, kUnsupported, "seqlen_q 2^30+1");
  expect_status([](sageattn_params& p) { p.seqlen_kv = 2147483647; }, kUnsupported, "seqlen_kv 2^31-1");
  // Within every per-dimension limit, but 65535 * 65535 * 8 blocks of 128 rows exceed the 1-D grid.
  expect_status([](sageattn_params& p) { p.batch = 65535; p.heads_q = 65535; p.heads_kv = 65535; p.seqlen_q = 1024; },
                kUnsupported, "quantize grid");
  // The pre-pass grid holds one block per 128 rows of q, of k and of v (the sm90 kernel's FP8 V
  // tiles, counted whatever the GPU): 65535 * (1 + 2 * 16000) blocks fit, 65535 * (1 + 2 * 20000)
  // do not, although q and k alone (65535 * 20001) would.
  expect_status([](sageattn_params& p) { p.batch = 65535; p.heads_q = p.heads_kv = 1; p.seqlen_q = 128; p.seqlen_kv = 128 * 16000; },
                SAGEATTN_STATUS_OK, "grid with v tiles, fits");
  expect_status([](sageattn_params& p) { p.batch = 65535; p.heads_q = p.heads_kv = 1; p.seqlen_q = 128; p.seqlen_kv = 128 * 20000; },
                kUnsupported, "grid with v tiles, too large");
}

bool built_with_sm90() {
  const std::string archs = std::string(" ") + sageattn_compiled_archs() + " ";
  return archs.find(" 90a ") != std::string::npos;
}

TEST(ApiCheck, HeadDim) {
  expect_status([](sageattn_params& p) { p.head_dim = 0; }, kInvalid, "head_dim 0");
  expect_status([](sageattn_params& p) { p.head_dim = -64; }, kInvalid, "head_dim -64");
  // 129..256 run on the sm80 kernel's 256 variant where a block may have 128 KB of shared memory,
  // and on the sm90 kernel's native 256 (E4M3 P.V, with or without a mask).
  for (int head_dim : {136, 192, 256}) {
    for (int arch : {80, 87, 90, 100}) {
      sageattn_params p = valid_params(100, 130, head_dim, arch);
      EXPECT_EQ(check(p).status, SAGEATTN_STATUS_OK) << "head_dim " << head_dim << " sm" << arch;
    }
    for (int arch : {86, 89, 120}) {
      sageattn_params p = valid_params(100, 130, head_dim, arch);
      const CheckResult r = check(p);
      EXPECT_EQ(r.status, kUnsupported) << "head_dim " << head_dim << " sm" << arch;
      EXPECT_NE(r.reason.find("shared memory"), std::string::npos) << r.reason;
    }
    if (built_with_sm90()) {
      static const uint8_t keep[1] = {1};
      sageattn_params p = valid_params(100, 130, head_dim, 90);
      p.kernel = SAGEATTN_KERNEL_SM90_WGMMA;
      EXPECT_EQ(check(p).status, SAGEATTN_STATUS_OK) << "SM90_WGMMA, head_dim " << head_dim;
      p.block_mask = {keep, 0, 0, 0, 0};
      EXPECT_EQ(check(p).status, SAGEATTN_STATUS_OK) << "SM90_WGMMA with a mask, head_dim " << head_dim;
    }
    // The 16-bit P.V stops at 128.
    sageattn_params pv16 = valid_params(100, 130, head_dim, 90);
    pv16.kernel = SAGEATTN_KERNEL_SM90_WGMMA_PV16;
    const CheckResult r = check(pv16);
    EXPECT_EQ(r.status, kUnsupported) << "SM90_WGMMA_PV16, head_dim " << head_dim;
    EXPECT_NE(r.reason.find("up to 128"), std::string::npos) << r.reason;
    sageattn_params p = valid_params(100, 130, head_dim, 90);
    p.kernel = SAGEATTN_KERNEL_AUTO_PV16;  // the sm80 kernel's 256 variant, as AUTO
    EXPECT_EQ(check(p).status, SAGEATTN_STATUS_OK) << "AUTO_PV16, head_dim " << head_dim;
  }
  // Beyond 256: well formed, no kernel.
  for (int head_dim : {264, 512}) {
    sageattn_params p = valid_params(100, 130, head_dim);
    EXPECT_EQ(check(p).status, kUnsupported) << "head_dim " << head_dim;
  }
  {
    sageattn_params p = valid_params(100, 130, 256);
    p.head_dim = 257;  // strides stay multiples of 8
    EXPECT_EQ(check(p).status, kUnsupported) << "head_dim 257";
  }
  // In range but not a multiple of 8: the 16-byte vector loads cannot be used.
  for (int head_dim : {1, 7, 12, 100, 127}) {
    sageattn_params p = valid_params(100, 130, 128);
    p.head_dim = head_dim;  // keep 128-element strides so only head_dim is at fault
    const CheckResult r = check(p);
    EXPECT_EQ(r.status, kUnsupported) << "head_dim " << head_dim;
  }
}

TEST(ApiCheck, Enums) {
  expect_status([](sageattn_params& p) { p.dtype = static_cast<sageattn_dtype>(2); }, kInvalid, "dtype 2");
  expect_status([](sageattn_params& p) { p.dtype = static_cast<sageattn_dtype>(-1); }, kInvalid, "dtype -1");
  expect_status([](sageattn_params& p) { p.qk_granularity = static_cast<sageattn_qk_granularity>(2); }, kInvalid,
                "granularity 2");
  expect_status([](sageattn_params& p) { p.qk_granularity = static_cast<sageattn_qk_granularity>(-1); }, kInvalid,
                "granularity -1");
  expect_status([](sageattn_params& p) { p.kernel = static_cast<sageattn_kernel>(5); }, kInvalid, "kernel 5");
  expect_status([](sageattn_params& p) { p.kernel = static_cast<sageattn_kernel>(-1); }, kInvalid, "kernel -1");
}

TEST(ApiCheck, Flags) {
  expect_status([](sageattn_params& p) { p.is_causal = 2; }, kInvalid, "is_causal 2");
  expect_status([](sageattn_params& p) { p.is_causal = -1; }, kInvalid, "is_causal -1");
  expect_status([](sageattn_params& p) { p.smooth_k = 2; }, kInvalid, "smooth_k 2");
  expect_status([](sageattn_params& p) { p.smooth_k = -1; }, kInvalid, "smooth_k -1");
  expect_status([](sageattn_params& p) { p.smooth_v = 2; }, kInvalid, "smooth_v 2");
  expect_status([](sageattn_params& p) { p.smooth_v = -1; }, kInvalid, "smooth_v -1");
  expect_status([](sageattn_params& p) { p.smooth_v = 0; }, SAGEATTN_STATUS_OK, "smooth_v 0");
  expect_status([](sageattn_params& p) { p.qk_rotation = 2; }, kInvalid, "qk_rotation 2");
  expect_status([](sageattn_params& p) { p.qk_rotation = -1; }, kInvalid, "qk_rotation -1");
  expect_status([](sageattn_params& p) { p.qk_rotation = 0; }, SAGEATTN_STATUS_OK, "qk_rotation 0");
}

TEST(ApiKernel, Sm90WgmmaRunsOnlyOnComputeCapability90) {
  for (sageattn_kernel kernel : {SAGEATTN_KERNEL_SM90_WGMMA, SAGEATTN_KERNEL_SM90_WGMMA_PV16}) {
    const std::string name = kernel == SAGEATTN_KERNEL_SM90_WGMMA ? "SM90_WGMMA " : "SM90_WGMMA_PV16 ";
    for (int arch : {80, 86, 89, 100, 120}) {
      sageattn_params p = valid_params(100, 130, 128, arch);
      p.kernel = kernel;
      const CheckResult r = check(p);
      EXPECT_EQ(r.status, kUnsupported) << "sm_arch " << arch;
      EXPECT_NE(r.reason.find(name), std::string::npos) << r.reason;
    }
    sageattn_params p = valid_params(100, 130, 128, 90);
    p.kernel = kernel;
    const CheckResult r = check(p);
    if (built_with_sm90()) {
      EXPECT_EQ(r.status, SAGEATTN_STATUS_OK) << r.reason;
    } else {
      EXPECT_EQ(r.status, kUnsupported);
      EXPECT_NE(r.reason.find("90a"), std::string::npos) << r.reason;
    }
  }
  // AUTO_PV16 runs everywhere AUTO does.
  for (int arch : {80, 86, 89, 90, 100, 120}) {
    sageattn_params p = valid_params(100, 130, 128, arch);
    p.kernel = SAGEATTN_KERNEL_AUTO_PV16;
    EXPECT_EQ(check(p).status, SAGEATTN_STATUS_OK) << "AUTO_PV16 on sm_arch " << arch;
  }
}

// sageattn_selected_kernel: the kernel forward() runs, AUTO and AUTO_PV16 resolved (src/api/plan.cpp).
int32_t selected(const sageattn_params& p) {
  int32_t kernel = -1;
  char reason[256];
  EXPECT_EQ(sageattn_selected_kernel(&p, &kernel, reason, sizeof reason), SAGEATTN_STATUS_OK) << reason;
  return kernel;
}

TEST(ApiKernel, SelectedKernelResolvesAuto) {
  const bool sm90 = built_with_sm90();
  const int32_t fp8 = sm90 ? SAGEATTN_KERNEL_SM90_WGMMA : SAGEATTN_KERNEL_SM80_MMA;
  const int32_t pv16 = sm90 ? SAGEATTN_KERNEL_SM90_WGMMA_PV16 : SAGEATTN_KERNEL_SM80_MMA;
  struct Case {
    int seqlen_q, seqlen_kv, head_dim, sm_arch;
    sageattn_kernel kernel;
    int32_t expected;
  };
  const Case cases[] = {
      {1536, 1536, 128, 90, SAGEATTN_KERNEL_AUTO, pv16},      // 16-bit P.V up to 1536 query rows
      {1537, 1537, 128, 90, SAGEATTN_KERNEL_AUTO, fp8},       // FP8 P.V above (causal: below)
      {4097, 77, 96, 90, SAGEATTN_KERNEL_AUTO, fp8},          // padded to 128: still sm90
      {1024, 1024, 64, 90, SAGEATTN_KERNEL_AUTO, fp8},        // head dim <= 64: sm90 when both are long
      {8192, 77, 64, 90, SAGEATTN_KERNEL_AUTO, SAGEATTN_KERNEL_SM80_MMA},   // ... not for short keys
      {1023, 8192, 64, 90, SAGEATTN_KERNEL_AUTO, SAGEATTN_KERNEL_SM80_MMA}, // ... nor short queries
      {8192, 8192, 64, 90, SAGEATTN_KERNEL_AUTO_PV16, pv16},  // 16-bit P.V: native 64 from 3072
      {3072, 3072, 64, 90, SAGEATTN_KERNEL_AUTO_PV16, pv16},
      {3071, 8192, 64, 90, SAGEATTN_KERNEL_AUTO_PV16, SAGEATTN_KERNEL_SM80_MMA},
      {100, 130, 256, 90, SAGEATTN_KERNEL_AUTO, fp8},  // above 128: the native 256 (E4M3 P.V)
      {100, 130, 136, 90, SAGEATTN_KERNEL_AUTO, fp8},
      {100, 130, 256, 90, SAGEATTN_KERNEL_AUTO_PV16, SAGEATTN_KERNEL_SM80_MMA},  // 16-bit P.V: sm80's variant
      {100, 130, 256, 80, SAGEATTN_KERNEL_AUTO, SAGEATTN_KERNEL_SM80_MMA},
      {8192, 8192, 128, 90, SAGEATTN_KERNEL_AUTO_PV16, pv16},
      {8192, 8192, 128, 80, SAGEATTN_KERNEL_AUTO, SAGEATTN_KERNEL_SM80_MMA},
      {8192, 8192, 128, 89, SAGEATTN_KERNEL_AUTO_PV16, SAGEATTN_KERNEL_SM80_MMA},
      {100, 130, 128, 80, SAGEATTN_KERNEL_SM80_MMA, SAGEATTN_KERNEL_SM80_MMA},  // explicit: as given
  };
  for (const Case& c : cases) {
    sageattn_params p = valid_params(c.seqlen_q, c.seqlen_kv, c.head_dim, c.sm_arch);
    p.kernel = c.kernel;
    EXPECT_EQ(selected(p), c.expected) << c.seqlen_q << " x " << c.seqlen_kv << ", head_dim " << c.head_dim
                                       << ", sm_arch " << c.sm_arch << ", kernel " << c.kernel;
  }
  // Causal calls keep the 16-bit P.V up to 3072 query rows.
  sageattn_params causal = valid_params(3072, 3072, 128, 90);
  causal.is_causal = 1;
  EXPECT_EQ(selected(causal), pv16) << "causal, 3072 query rows";
  causal.seqlen_q = causal.seqlen_kv = 3073;
  EXPECT_EQ(selected(causal), fp8) << "causal, 3073 query rows";
  // Causal head dim 64: the native sm90 kernel from 2048 query rows and keys.
  sageattn_params causal64 = valid_params(2047, 2047, 64, 90);
  causal64.is_causal = 1;
  EXPECT_EQ(selected(causal64), SAGEATTN_KERNEL_SM80_MMA) << "causal, head dim 64, 2047";
  causal64.seqlen_q = causal64.seqlen_kv = 2048;
  EXPECT_EQ(selected(causal64), fp8) << "causal, head dim 64, 2048";
  // With a block mask head dim 64 pads to 128 (the native kernel has no masked instantiations):
  // sm90 only from 3072 query rows and keys, where the padded kernel measured faster than sm80.
  static const uint8_t keep[1] = {1};
  sageattn_params masked64 = valid_params(2048, 2048, 64, 90);
  masked64.block_mask = {keep, 0, 0, 0, 0};
  EXPECT_EQ(selected(masked64), SAGEATTN_KERNEL_SM80_MMA) << "block mask, head dim 64, 2048";
  masked64.seqlen_q = masked64.seqlen_kv = 3072;
  EXPECT_EQ(selected(masked64), fp8) << "block mask, head dim 64, 3072";
  // With a mask head dims above 128 run the native 256 as well.
  sageattn_params masked256 = valid_params(8192, 8192, 256, 90);
  masked256.block_mask = {keep, 0, 0, 0, 0};
  EXPECT_EQ(selected(masked256), fp8) << "block mask, head dim 256";
  // Invalid params: the check's status and reason, *kernel untouched; NULL output rejected.
  sageattn_params bad = valid_params();
  bad.sm_scale = -1.f;
  int32_t kernel = 12345;
  char reason[256];
  EXPECT_EQ(sageattn_selected_kernel(&bad, &kernel, reason, sizeof reason), kInvalid);
  EXPECT_EQ(kernel, 12345);
  EXPECT_NE(std::string(reason).find("sm_scale"), std::string::npos) << reason;
  const sageattn_params good = valid_params();
  EXPECT_EQ(sageattn_selected_kernel(&good, nullptr, reason, sizeof reason), kInvalid);
}

size_t workspace_bytes(const sageattn_params& p) {
  size_t bytes = 0;
  char reason[256];
  EXPECT_EQ(sageattn_workspace_size(&p, &bytes, reason, sizeof reason), SAGEATTN_STATUS_OK) << reason;
  return bytes;
}

TEST(ApiKernel, Sm80WorkspaceHoldsInt8QOnlyAtHeadDim256) {
  // The sm80 kernel quantizes Q itself up to head dim 128 (sm80/q_quantize.cuh); at 256 the pre-pass
  // writes INT8 Q rows (2 batches x 4 heads x two 128-row blocks x 256 bytes) and their scales.
  auto bytes_at = [](int head_dim) {
    sageattn_params p = valid_params(200, 300, head_dim, 80);
    p.heads_kv = 1;
    p.heads_q = 4;
    p.kernel = SAGEATTN_KERNEL_SM80_MMA;
    return workspace_bytes(p);
  };
  const size_t hd128 = bytes_at(128), hd256 = bytes_at(256);
  // Everything else per channel doubles; K scales and region alignment add at most a few KB.
  const size_t q_int8 = 2 * 4 * 2 * 128 * 256, q_scales = 2 * 4 * 2 * 32 * 4;
  EXPECT_GE(hd256, 2 * hd128 + q_int8 - 4096);
  EXPECT_LE(hd256, 2 * hd128 + q_int8 + q_scales + 4096);
}

TEST(ApiKernel, Sm90WorkspaceAtHeadDim64HoldsHalfRows) {
  if (!built_with_sm90()) GTEST_SKIP() << "build without 90a";
  // Head dim 64 without a mask: 64-byte K rows and V tiles of 64 channels (HeadDim, sm90/traits.cuh);
  // head dim 72 pads to 128. 2 batches x 2 K/V heads, 1024 keys: 8 tiles of 128 tokens per head.
  sageattn_params p = valid_params(1024, 1024, 64, 90);
  p.kernel = SAGEATTN_KERNEL_SM90_WGMMA;
  const size_t hd64 = workspace_bytes(p);
  sageattn_params wide = valid_params(1024, 1024, 72, 90);
  wide.kernel = SAGEATTN_KERNEL_SM90_WGMMA;
  const size_t hd128 = workspace_bytes(wide);
  // K column sums: 2 chunks of 512 keys per head (common/tiling.h, column_sum_chunks).
  const size_t k_rows = 2 * 2 * 1024, column_sums = 2 * 2 * 2 * 64 * sizeof(float);
  EXPECT_EQ(hd128 - hd64, k_rows * 64 + k_rows * 64 + column_sums) << "K rows, V tiles, K column sums";
  // The 16-bit P.V at head dim 64 too (V read by a tensor map: no V tiles).
  p.kernel = wide.kernel = SAGEATTN_KERNEL_SM90_WGMMA_PV16;
  EXPECT_EQ(workspace_bytes(wide) - workspace_bytes(p), k_rows * 64 + column_sums) << "K rows, K column sums";
  // A mask pads head dim 64 to 128 as before (the native kernel has no masked instantiations).
  static const uint8_t keep[1] = {1};
  sageattn_params masked = p;
  masked.block_mask = {keep, 0, 0, 0, 0};
  wide.block_mask = masked.block_mask;
  EXPECT_EQ(workspace_bytes(masked), workspace_bytes(wide));
}

TEST(ApiKernel, Sm90WorkspaceAtHeadDim256HoldsWideRows) {
  if (!built_with_sm90()) GTEST_SKIP() << "build without 90a";
  // Head dim 256 (E4M3 P.V): 256-byte K rows, V tiles of 256 channels and V statistics,
  // scales and means of 256 channels (fp8_v_channels, common/tiling.h) instead of 128. 2 batches x
  // 2 K/V heads, 1024 keys (2 chunks of 512 for the statistics).
  sageattn_params p = valid_params(1024, 1024, 256, 90);
  p.kernel = SAGEATTN_KERNEL_SM90_WGMMA;
  sageattn_params narrow = valid_params(1024, 1024, 128, 90);
  narrow.kernel = SAGEATTN_KERNEL_SM90_WGMMA;
  const size_t k_rows = 2 * 2 * 1024, heads = 2 * 2, chunks = 2;
  const size_t column_sums = heads * chunks * 128 * sizeof(float);
  const size_t v_stats = heads * chunks * 3 * 128 * sizeof(float), v_scale_mean = 2 * heads * 128 * sizeof(float);
  EXPECT_EQ(workspace_bytes(p) - workspace_bytes(narrow),
            k_rows * 128 + k_rows * 128 + column_sums + v_stats + v_scale_mean)
      << "K rows, V tiles, K column sums, V statistics, scales and means";
}

TEST(ApiKernel, Sm90WorkspaceHoldsFp8VTiles) {
  if (!built_with_sm90()) GTEST_SKIP() << "build without 90a";
  // 300 keys: 3 tiles of 128 tokens; K padded to 384 rows (6 blocks of 64) instead of 320 (5).
  sageattn_params p = valid_params(100, 300, 128, 90);
  p.batch = 2;
  p.heads_kv = 1;
  p.heads_q = 4;
  p.kernel = SAGEATTN_KERNEL_SM80_MMA;
  const size_t sm80 = workspace_bytes(p);
  p.kernel = SAGEATTN_KERNEL_SM90_WGMMA;
  const size_t sm90 = workspace_bytes(p);
  const size_t fp8_v = 2 * 1 * 3 * 128 * 128;
  const size_t extra_k_rows = 2 * 1 * 64 * 128;
  // Both kernels quantize Q themselves at this head dim: no INT8 Q rows in either workspace.
  EXPECT_GE(sm90, sm80 + fp8_v + extra_k_rows);
  // The 16-bit P.V reads V with a tensor map: no V tiles, statistics, scales or means ...
  p.kernel = SAGEATTN_KERNEL_SM90_WGMMA_PV16;
  const size_t sm90_pv16 = workspace_bytes(p);
  EXPECT_GE(sm90_pv16, sm80 + extra_k_rows);
  // plus the padding block's K scales (one region)
  EXPECT_LE(sm90_pv16, sm80 + extra_k_rows + 256);
  // ... unless V's strides rule the map out (a head dimension broadcast with stride 0): then the
  // pre-pass copies V into 32 KB tiles, twice the FP8 ones.
  {
    sageattn_params broadcast = p;
    broadcast.heads_kv = 2;
    broadcast.v.stride_head = 0;
    sageattn_params plain = broadcast;
    plain.v.stride_head = broadcast.v.stride_token * broadcast.seqlen_kv;
    const size_t without_map = workspace_bytes(broadcast);
    EXPECT_EQ(without_map, workspace_bytes(plain) + 2 * 2 * 3 * 128 * 128 * 2) << "2 batches x 2 heads x 3 tiles";
  }
  // AUTO on sm90 picks the 16-bit variant at head dim 128 up to 1536 query rows (non-causal),
  // AUTO_PV16 always ...
  p.kernel = SAGEATTN_KERNEL_AUTO;
  EXPECT_EQ(workspace_bytes(p), sm90_pv16);
  p.kernel = SAGEATTN_KERNEL_AUTO_PV16;
  EXPECT_EQ(workspace_bytes(p), sm90_pv16);
  {
    sageattn_params long_q = p;
    long_q.seqlen_q = 1537;
    long_q.kernel = SAGEATTN_KERNEL_SM90_WGMMA;
    const size_t fp8 = workspace_bytes(long_q);
    long_q.kernel = SAGEATTN_KERNEL_SM90_WGMMA_PV16;
    const size_t pv16 = workspace_bytes(long_q);
    ASSERT_NE(fp8, pv16);
    long_q.kernel = SAGEATTN_KERNEL_AUTO;
    EXPECT_EQ(workspace_bytes(long_q), fp8) << "AUTO above 1536 query rows: FP8 P.V";
    long_q.seqlen_q = 1536;
    long_q.kernel = SAGEATTN_KERNEL_SM90_WGMMA_PV16;
    const size_t pv16_1536 = workspace_bytes(long_q);
    long_q.kernel = SAGEATTN_KERNEL_AUTO;
    EXPECT_EQ(workspace_bytes(long_q), pv16_1536) << "AUTO at 1536 query rows: 16-bit P.V";
  }
  // Head dim 64: the sm80 kernel's native 64 unless queries and keys both reach 1024 (2048 causal),
  // then the sm90 kernel's native 64 (FP8 P.V).
  {
    sageattn_params hd64 = p;
    hd64.head_dim = 64;
    for (int causal : {0, 1})
      for (int seqlen_q : {100, 1023, 1024, 2047, 2048})
        for (int seqlen_kv : {300, 1023, 1024, 2048}) {
          hd64.is_causal = causal;
          hd64.seqlen_q = seqlen_q;
          hd64.seqlen_kv = seqlen_kv;
          const int min_len = causal ? 2048 : 1024;
          const bool sm90 = seqlen_q >= min_len && seqlen_kv >= min_len;
          hd64.kernel = sm90 ? SAGEATTN_KERNEL_SM90_WGMMA : SAGEATTN_KERNEL_SM80_MMA;
          const size_t expected = workspace_bytes(hd64);
          hd64.kernel = SAGEATTN_KERNEL_AUTO;
          EXPECT_EQ(workspace_bytes(hd64), expected)
              << "AUTO at head dim 64, causal " << causal << ", " << seqlen_q << " x " << seqlen_kv;
        }
  }
  // ... and on sm80 both pick the mma.sync one.
  p.sm_arch = 80;
  EXPECT_EQ(workspace_bytes(p), sm80);
  p.kernel = SAGEATTN_KERNEL_AUTO;
  EXPECT_EQ(workspace_bytes(p), sm80);
}

TEST(ApiCheck, SmScale) {
  expect_status([](sageattn_params& p) { p.sm_scale = 0.0f; }, kInvalid, "sm_scale 0");
  expect_status([](sageattn_params& p) { p.sm_scale = -0.0f; }, kInvalid, "sm_scale -0");
  expect_status([](sageattn_params& p) { p.sm_scale = -0.125f; }, kInvalid, "sm_scale < 0");
  expect_status([](sageattn_params& p) { p.sm_scale = std::numeric_limits<float>::quiet_NaN(); }, kInvalid,
                "sm_scale NaN");
  expect_status([](sageattn_params& p) { p.sm_scale = std::numeric_limits<float>::infinity(); }, kInvalid,
                "sm_scale inf");
  expect_status([](sageattn_params& p) { p.sm_scale = 1e-30f; }, SAGEATTN_STATUS_OK, "tiny sm_scale");
  expect_status([](sageattn_params& p) { p.sm_scale = 100.0f; }, SAGEATTN_STATUS_OK, "large sm_scale");
}

TEST(ApiCheck, TensorPointersAndStrides) {
  for (const TensorField& f : kTensors) {
    const std::string name = f.name;
    const auto member = f.member;
    expect_status([member](sageattn_params& p) { (p.*member).data = nullptr; }, kInvalid, name + " NULL");
    expect_status([member](sageattn_params& p) { (p.*member).stride_token = -(p.*member).stride_token; }, kInvalid,
                  name + " negative token stride");
    expect_status([member](sageattn_params& p) { (p.*member).stride_head = -8; }, kInvalid,
                  name + " negative head stride");
    expect_status([member](sageattn_params& p) { (p.*member).stride_batch = -(p.*member).stride_batch; }, kInvalid,
                  name + " negative batch stride");
    // Well formed, but the kernels' 16-byte loads need 16-byte aligned rows.
    for (uintptr_t offset : {2u, 8u}) {
      sageattn_params p = valid_params();
      (p.*member).data = static_cast<char*>((p.*member).data) + offset;
      const CheckResult r = check(p);
      EXPECT_EQ(r.status, kUnsupported) << name << " misaligned by " << offset;
      const std::string reason = lower(r.reason);
      EXPECT_TRUE(reason.find("align") != std::string::npos || reason.find("pad") != std::string::npos)
          << name << ": " << r.reason;
    }
    // A padded row pitch that is a multiple of 8 elements is fine; one that is not is unsupported.
    expect_status([member](sageattn_params& p) { (p.*member).stride_token = p.head_dim + 8; }, SAGEATTN_STATUS_OK,
                  name + " padded token stride");
    expect_status([member](sageattn_params& p) { (p.*member).stride_token = p.head_dim + 4; }, kUnsupported,
                  name + " token stride not a multiple of 8");
    expect_status([member](sageattn_params& p) { (p.*member).stride_head += 4; }, kUnsupported,
                  name + " head stride not a multiple of 8");
    expect_status([member](sageattn_params& p) { (p.*member).stride_batch += 12; }, kUnsupported,
                  name + " batch stride not a multiple of 8");
  }
}

TEST(ApiCheck, Lse) {
  expect_status([](sageattn_params& p) { p.lse = reinterpret_cast<float*>(0x50000002u); }, kInvalid,
                "lse 2-byte aligned");
  expect_status([](sageattn_params& p) { p.lse = reinterpret_cast<float*>(0x50000001u); }, kInvalid,
                "lse odd address");
  expect_status([](sageattn_params& p) { p.lse = reinterpret_cast<float*>(0x50000000u); }, SAGEATTN_STATUS_OK,
                "lse aligned");
}

TEST(ApiCheck, OldArchitecturesAreUnsupported) {
  for (int arch : {1, 35, 61, 70, 75, 79}) {
    sageattn_params p = valid_params(100, 130, 64, arch);
    EXPECT_EQ(check(p).status, kUnsupported) << "sm_arch " << arch;
    size_t bytes = 0;
    EXPECT_EQ(sageattn_workspace_size(&p, &bytes, nullptr, 0), kUnsupported) << "sm_arch " << arch;
  }
}

TEST(ApiCheck, NullParams) {
  char reason[64];
  EXPECT_EQ(sageattn_check(nullptr, reason, sizeof reason), kInvalid);
  EXPECT_NE(std::memchr(reason, '\0', sizeof reason), nullptr);
  size_t bytes = 0;
  EXPECT_EQ(sageattn_workspace_size(nullptr, &bytes, reason, sizeof reason), kInvalid);
}

TEST(ApiCheck, ReasonRespectsCapacity) {
  sageattn_params p = valid_params();
  p.heads_kv = 3;  // any failure with a long message
  char buffer[64];
  for (size_t capacity : {size_t{1}, size_t{8}, size_t{64}}) {
    std::memset(buffer, 'X', sizeof buffer);
    EXPECT_EQ(sageattn_check(&p, buffer, capacity), kInvalid);
    const void* nul = std::memchr(buffer, '\0', capacity);
    ASSERT_NE(nul, nullptr) << "capacity " << capacity;
    for (size_t i = capacity; i < sizeof buffer; ++i) {
      ASSERT_EQ(buffer[i], 'X') << "capacity " << capacity << " byte " << i;
    }
    if (capacity > 1) {
      EXPECT_GT(std::strlen(buffer), 0u) << "capacity " << capacity;
    }
  }
  // Capacity 0: nothing may be written.
  std::memset(buffer, 'X', sizeof buffer);
  EXPECT_EQ(sageattn_check(&p, buffer, 0), kInvalid);
  for (char c : buffer) ASSERT_EQ(c, 'X');
  // NULL reason with any capacity.
  EXPECT_EQ(sageattn_check(&p, nullptr, 0), kInvalid);
  EXPECT_EQ(sageattn_check(&p, nullptr, 100), kInvalid);
  // Same rules for workspace_size.
  std::memset(buffer, 'X', sizeof buffer);
  size_t bytes = 0;
  EXPECT_EQ(sageattn_workspace_size(&p, &bytes, buffer, 8), kInvalid);
  ASSERT_NE(std::memchr(buffer, '\0', 8), nullptr);
  for (size_t i = 8; i < sizeof buffer; ++i) ASSERT_EQ(buffer[i], 'X');
  // A valid call writes an empty string.
  const sageattn_params ok = valid_params();
  std::memset(buffer, 'X', sizeof buffer);
  EXPECT_EQ(sageattn_check(&ok, buffer, 8), SAGEATTN_STATUS_OK);
  EXPECT_EQ(buffer[0], '\0');
}

TEST(ApiWorkspace, PositiveAndGrowsWithSequenceLength) {
  auto bytes_for = [](int seqlen_q, int seqlen_kv, bool lse = false) {
    sageattn_params p = valid_params(seqlen_q, seqlen_kv);
    if (lse) p.lse = reinterpret_cast<float*>(uintptr_t{0x60000000u});
    size_t bytes = 0;
    char reason[128];
    EXPECT_EQ(sageattn_workspace_size(&p, &bytes, reason, sizeof reason), SAGEATTN_STATUS_OK) << reason;
    EXPECT_EQ(reason[0], '\0');
    return bytes;
  };
  const size_t small = bytes_for(128, 128);
  EXPECT_GT(small, 0u);
  EXPECT_GT(bytes_for(4096, 4096), small);
  EXPECT_GE(bytes_for(4096, 128), small);
  EXPECT_GE(bytes_for(128, 4096), small);
  EXPECT_GT(bytes_for(128, 4096 * 4), bytes_for(128, 4096));  // quantized K grows with the keys
  // The kernels quantize Q themselves (head dims up to 128): nothing per query row, but the LSE
  // corrections of the smoothed K (one float per row).
  EXPECT_EQ(bytes_for(4096 * 4, 128), bytes_for(4096, 128));
  EXPECT_GE(bytes_for(4096 * 4, 128, true), bytes_for(4096, 128, true) + 3 * 4096 * 8 * sizeof(float));
  // One token still needs its (padded) quantized blocks.
  EXPECT_GT(bytes_for(1, 1), 0u);
}

TEST(ApiWorkspace, NullBytesPointerIsRefused) {
  const sageattn_params p = valid_params();
  EXPECT_EQ(sageattn_workspace_size(&p, nullptr, nullptr, 0), kInvalid);
}

}  // namespace

// Packed sequences (varlen): valid params of 2 sequences packed into 250 query and 330 key rows.
void make_packed(sageattn_params& p) {
  p.cu_seqlens_q = reinterpret_cast<const int32_t*>(uintptr_t{0x50000000u});
  p.cu_seqlens_kv = reinterpret_cast<const int32_t*>(uintptr_t{0x50001000u});
  p.total_q = 250;
  p.total_kv = 330;
  for (const TensorField& f : kTensors) (p.*f.member).stride_batch = 0;
}

TEST(ApiPacked, ValidPackedCallPasses) {
  expect_status(make_packed, SAGEATTN_STATUS_OK, "packed");
  expect_status([](sageattn_params& p) { make_packed(p); p.total_q = 0; p.total_kv = 0; }, SAGEATTN_STATUS_OK,
                "packed, no tokens");
}

TEST(ApiPacked, FieldsMustComeTogether) {
  expect_status([](sageattn_params& p) { make_packed(p); p.cu_seqlens_kv = nullptr; }, kInvalid, "kv NULL");
  expect_status([](sageattn_params& p) { p.cu_seqlens_kv = reinterpret_cast<const int32_t*>(uintptr_t{0x1000}); },
                kInvalid, "kv without q");
  expect_status([](sageattn_params& p) { p.total_q = 10; }, kInvalid, "total without boundaries");
  expect_status([](sageattn_params& p) { make_packed(p); p.total_kv = -1; }, kInvalid, "negative total");
  expect_status([](sageattn_params& p) { make_packed(p); p.cu_seqlens_q = reinterpret_cast<const int32_t*>(uintptr_t{0x50000002u}); },
                kInvalid, "misaligned boundaries");
}

TEST(ApiPacked, TensorsHaveNoBatchDimension) {
  for (const TensorField& f : kTensors) {
    sageattn_params p = valid_params();
    make_packed(p);
    (p.*f.member).stride_batch = 8;
    const CheckResult r = check(p);
    EXPECT_EQ(r.status, kInvalid) << f.name;
    EXPECT_NE(r.reason.find("stride_batch"), std::string::npos) << r.reason;
  }
}

TEST(ApiPacked, MasksAreRefused) {
  static const uint8_t mask_storage[16] = {};
  expect_status([](sageattn_params& p) { make_packed(p); p.block_mask.data = mask_storage; }, kUnsupported,
                "block mask");
  expect_status(
      [](sageattn_params& p) {
        make_packed(p);
        p.mask_type = SAGEATTN_MASK_BOOL;
        p.mask.data = mask_storage;
      },
      kUnsupported, "bool mask");
}

// The workspace of packed sequences grows with the packed tokens (slots of 128 rows per sequence),
// not with batch x the longest sequence, for either kernel.
TEST(ApiPacked, WorkspaceFollowsTheTotals) {
  for (int arch : {80, 90}) {
    if (arch == 90 && !built_with_sm90()) continue;
    sageattn_params p = valid_params(4096, 4096, 128, arch);
    p.batch = 64;  // one long sequence and 63 short ones: dense would size 64 x 4096 rows
    make_packed(p);
    p.total_q = p.total_kv = 4096 + 63 * 10;
    const size_t packed = workspace_bytes(p);
    sageattn_params dense = valid_params(4096, 4096, 128, arch);
    dense.batch = 64;
    const size_t dense_bytes = workspace_bytes(dense);
    // Rows: 64 x 4096 dense against 4726 packed in (total / 128 + batch) slots of 128 (1/20).
    EXPECT_LT(packed * 6, dense_bytes) << "arch " << arch;
    // INT8 K rows of those slots per head at least (both kernels quantize Q themselves at head dim
    // 128), and not much more.
    const size_t slots = 4726 / 128 + 64;
    EXPECT_GE(packed, slots * 128 * 128 * p.heads_kv) << "arch " << arch;
    EXPECT_LT(packed, slots * 128 * 128 * p.heads_q) << "arch " << arch;
    p.total_q = p.total_kv = 2 * 4726;
    EXPECT_GT(workspace_bytes(p), packed) << "arch " << arch;
  }
}
