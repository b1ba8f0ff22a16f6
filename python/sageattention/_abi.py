"""ctypes mirror of the C ABI in ``include/sageattn/sageattn.h``.

Pure data: enums, struct layouts and function signatures, no loading. Field order and types follow
the header exactly; C enums are ``int`` on every platform we target, so they map to ``c_int``.
When the header changes layout it bumps SAGEATTN_ABI_VERSION, and ``_library`` refuses a binary
whose version differs from ``ABI_VERSION`` below, so a stale mirror fails loudly instead of passing
garbage.
"""

import ctypes
import enum

ABI_VERSION = 4
BLOCK_MASK_TILE = 128  # SAGEATTN_BLOCK_MASK_TILE


class Status(enum.IntEnum):
    OK = 0
    INVALID_ARGUMENT = 1
    UNSUPPORTED = 2
    WORKSPACE_TOO_SMALL = 3
    CUDA_ERROR = 4


class DType(enum.IntEnum):
    FP16 = 0
    BF16 = 1
    E4M3 = 2  # only as the P.V dtype of sageattn_reference_emulated_v2


class QKGranularity(enum.IntEnum):
    PER_THREAD = 0
    PER_WARP = 1


class Kernel(enum.IntEnum):
    AUTO = 0
    SM80_MMA = 1
    SM90_WGMMA = 2
    SM90_WGMMA_PV16 = 3
    AUTO_PV16 = 4


class MaskType(enum.IntEnum):
    NONE = 0
    BOOL = 1
    ADDITIVE = 2  # the dtype of q
    ADDITIVE_FP32 = 3


# Public spellings of the enums (the strings users pass) -> codes.
GRANULARITY_CODES = {"per_thread": QKGranularity.PER_THREAD, "per_warp": QKGranularity.PER_WARP}
KERNEL_CODES = {"auto": Kernel.AUTO, "auto_pv16": Kernel.AUTO_PV16, "sm80_mma": Kernel.SM80_MMA,
                "sm90_wgmma": Kernel.SM90_WGMMA, "sm90_wgmma_pv16": Kernel.SM90_WGMMA_PV16}
# The kernels that need compute capability 9.0 and a build with 90a (and head dims <= 128).
SM90_KERNELS = ("sm90_wgmma", "sm90_wgmma_pv16")

_c_enum = ctypes.c_int


class SageattnTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("stride_batch", ctypes.c_int64),
        ("stride_head", ctypes.c_int64),
        ("stride_token", ctypes.c_int64),
    ]


class SageattnMask(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("stride_batch", ctypes.c_int64),
        ("stride_head", ctypes.c_int64),
        ("stride_row", ctypes.c_int64),
        ("stride_column", ctypes.c_int64),
    ]


class SageattnParams(ctypes.Structure):
    _fields_ = [
        ("abi_version", ctypes.c_uint32),
        ("batch", ctypes.c_int32),
        ("heads_q", ctypes.c_int32),
        ("heads_kv", ctypes.c_int32),
        ("seqlen_q", ctypes.c_int32),
        ("seqlen_kv", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("dtype", _c_enum),
        ("q", SageattnTensor),
        ("k", SageattnTensor),
        ("v", SageattnTensor),
        ("out", SageattnTensor),
        ("lse", ctypes.c_void_p),  # float*; c_void_p so callers pass a raw device address
        ("sm_scale", ctypes.c_float),
        ("is_causal", ctypes.c_int32),
        ("smooth_k", ctypes.c_int32),
        ("qk_granularity", _c_enum),
        ("kernel", _c_enum),
        ("sm_arch", ctypes.c_int32),
        ("smooth_v", ctypes.c_int32),
        ("mask_type", _c_enum),
        ("mask", SageattnMask),
        ("block_mask", SageattnMask),
        ("cu_seqlens_q", ctypes.c_void_p),  # const int32_t*, device memory
        ("cu_seqlens_kv", ctypes.c_void_p),
        ("total_q", ctypes.c_int32),
        ("total_kv", ctypes.c_int32),
        ("qk_rotation", ctypes.c_int32),
    ]


class SageattnReferenceProblem(ctypes.Structure):
    _fields_ = [
        ("batch", ctypes.c_int32),
        ("heads_q", ctypes.c_int32),
        ("heads_kv", ctypes.c_int32),
        ("seqlen_q", ctypes.c_int32),
        ("seqlen_kv", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("sm_scale", ctypes.c_double),
        ("is_causal", ctypes.c_int32),
        ("qk_rotation", ctypes.c_int32),
    ]


_params_p = ctypes.POINTER(SageattnParams)
_problem_p = ctypes.POINTER(SageattnReferenceProblem)
# Pointers into caller memory (device or numpy) are passed as plain integers: c_void_p avoids
# building ctypes pointer objects on the hot path.
_ptr = ctypes.c_void_p
_reason = ctypes.c_char_p
_size = ctypes.c_size_t

# name -> (restype, argtypes), exactly as declared in the header.
FUNCTIONS = {
    "sageattn_abi_version": (ctypes.c_uint32, []),
    "sageattn_version": (ctypes.c_char_p, []),
    "sageattn_compiled_archs": (ctypes.c_char_p, []),
    "sageattn_default_params": (SageattnParams, []),
    "sageattn_check": (_c_enum, [_params_p, _reason, _size]),
    "sageattn_workspace_size": (_c_enum, [_params_p, ctypes.POINTER(_size), _reason, _size]),
    "sageattn_selected_kernel": (_c_enum, [_params_p, ctypes.POINTER(ctypes.c_int32), _reason, _size]),
    "sageattn_forward": (_c_enum, [_params_p, _ptr, _size, _ptr, _reason, _size]),
    "sageattn_reference_exact": (_c_enum, [_problem_p, _ptr, _ptr, _ptr, _ptr, _ptr]),
    "sageattn_reference_emulated": (
        _c_enum,
        [_problem_p, _c_enum, ctypes.c_int32, _c_enum, _ptr, _ptr, _ptr, _ptr, _ptr],
    ),
    "sageattn_reference_emulated_v2": (
        _c_enum,
        [_problem_p, _c_enum, ctypes.c_int32, ctypes.c_int32, _c_enum, _ptr, _ptr, _ptr, _ptr, _ptr],
    ),
    "sageattn_reference_emulated_masked": (
        _c_enum,
        [_problem_p, _c_enum, ctypes.c_int32, ctypes.c_int32, _c_enum, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr],
    ),
}
