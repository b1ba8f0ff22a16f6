"""Loading the library, the ctypes mirror of the C ABI, and status -> exception mapping (CPU)."""

import ctypes
import ctypes.util
import os
import re
import subprocess
import sys
import threading

import pytest

import sageattention
from sageattention import _abi, _library
from sageattention._abi import SageattnParams, SageattnReferenceProblem, SageattnTensor, Status

from conftest import REPO_ROOT

FAKE_DEVICE_PTR = 1 << 20  # sageattn_check never dereferences pointers


def test_library_loads_with_versions(library):
    assert library.version == sageattention.__version__
    assert library.compiled_archs, "the library reports no compiled architectures"
    assert all(re.fullmatch(r"\d+a?", arch) for arch in library.compiled_archs), library.compiled_archs


def test_version_matches_pyproject():
    pyproject = os.path.join(REPO_ROOT, "pyproject.toml")
    if not os.path.exists(pyproject):
        pytest.skip("not running from a source tree")
    text = open(pyproject).read()
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    assert match and match.group(1) == sageattention.__version__


def test_abi_version_and_defaults(library):
    params = library.sageattn_default_params()
    assert params.abi_version == _abi.ABI_VERSION
    assert params.smooth_k == 1
    assert params.smooth_v == 1
    assert params.qk_granularity == _abi.QKGranularity.PER_THREAD
    assert params.kernel == _abi.Kernel.AUTO


def test_struct_layout_matches_header():
    # Hand-computed from sageattn.h for LP64 (8-byte pointers, 4-byte enums): 8 x 4-byte fields,
    # 4 tensors of 32 bytes, the lse pointer, then float + 7 x 4-byte fields = 200, then two masks
    # of 40 bytes (pointer + 4 strides) = 280, then two cu_seqlens pointers and two totals.
    assert ctypes.sizeof(SageattnTensor) == 32
    assert ctypes.sizeof(_abi.SageattnMask) == 40
    assert ctypes.sizeof(SageattnParams) == 312  # qk_rotation at 304, padded to the 8-byte alignment
    assert SageattnParams.cu_seqlens_q.offset == 280 and SageattnParams.cu_seqlens_kv.offset == 288
    assert SageattnParams.total_q.offset == 296 and SageattnParams.total_kv.offset == 300
    assert SageattnParams.qk_rotation.offset == 304
    assert SageattnParams.smooth_v.offset == 192 and SageattnParams.mask_type.offset == 196
    assert SageattnParams.mask.offset == 200 and SageattnParams.block_mask.offset == 240
    assert SageattnParams.q.offset == 32 and SageattnParams.out.offset == 128
    assert SageattnParams.lse.offset == 160 and SageattnParams.sm_arch.offset == 188
    assert ctypes.sizeof(SageattnReferenceProblem) == 40  # qk_rotation fills is_causal's padding
    assert SageattnReferenceProblem.sm_scale.offset == 24 and SageattnReferenceProblem.qk_rotation.offset == 36


def test_params_packer_writes_named_fields():
    params = SageattnParams()
    values = [_abi.ABI_VERSION, 2, 8, 2, 100, 300, 64, int(_abi.DType.BF16)]
    for base in (1000, 2000, 3000, 4000):  # q, k, v, out: data, stride_batch, stride_head, stride_token
        values += [base * 16, base + 1, base + 2, base + 3]
    values += [77 * 16, 0.125, 1, 0, int(_abi.QKGranularity.PER_WARP), int(_abi.Kernel.SM80_MMA), 90, 0]
    values += [int(_abi.MaskType.ADDITIVE), 5000 * 16, 5001, 5002, 5003, 5004, 6000 * 16, 6001, 6002, 6003, 6004]
    values += [7000 * 16, 8000 * 16, 123, 456, 0]  # cu_seqlens_q, cu_seqlens_kv, total_q, total_kv, qk_rotation
    _library.PARAMS_PACKER.pack_into(params, 0, *values)
    assert (params.batch, params.heads_q, params.heads_kv) == (2, 8, 2)
    assert (params.seqlen_q, params.seqlen_kv, params.head_dim, params.dtype) == (100, 300, 64, 1)
    assert (params.k.data, params.k.stride_batch, params.k.stride_token) == (2000 * 16, 2001, 2003)
    assert params.out.stride_head == 4002 and params.lse == 77 * 16
    assert params.sm_scale == 0.125 and params.is_causal == 1 and params.smooth_k == 0
    assert params.qk_granularity == 1 and params.kernel == 1 and params.sm_arch == 90 and params.smooth_v == 0
    assert params.mask_type == 2 and params.mask.data == 5000 * 16 and params.mask.stride_column == 5004
    assert params.block_mask.data == 6000 * 16 and params.block_mask.stride_batch == 6001
    assert params.block_mask.stride_row == 6003
    assert params.cu_seqlens_q == 7000 * 16 and params.cu_seqlens_kv == 8000 * 16
    assert (params.total_q, params.total_kv, params.qk_rotation) == (123, 456, 0)


def _valid_params(library, **overrides):
    p = library.sageattn_default_params()
    p.batch, p.heads_q, p.heads_kv, p.seqlen_q, p.seqlen_kv, p.head_dim = 1, 4, 2, 100, 120, 64
    p.dtype = _abi.DType.FP16
    for t in (p.q, p.k, p.v, p.out):
        t.data, t.stride_batch, t.stride_head, t.stride_token = FAKE_DEVICE_PTR, 4 * 128 * 64, 128 * 64, 64
    p.sm_scale, p.sm_arch = 0.125, 90
    for name, value in overrides.items():
        setattr(p, name, value)
    return p


def test_check_accepts_valid_params(library):
    _library.call("sageattn_check", ctypes.byref(_valid_params(library)))


@pytest.mark.parametrize("overrides, exc_type, words", [
    ({"batch": 0}, ValueError, "batch"),
    ({"seqlen_kv": 0}, ValueError, "seqlen"),
    ({"heads_q": 3}, ValueError, "multiple"),
    ({"sm_scale": -1.0}, ValueError, "sm_scale"),
    ({"head_dim": 264}, NotImplementedError, "not supported"),
    ({"head_dim": 36}, NotImplementedError, "multiple of 8"),
    ({"sm_arch": 75}, NotImplementedError, "compute capability"),
])
def test_check_maps_status_to_exceptions(library, overrides, exc_type, words):
    with pytest.raises(exc_type, match=words):
        _library.call("sageattn_check", ctypes.byref(_valid_params(library, **overrides)))


@pytest.mark.parametrize("overrides, words", [
    ({"kernel": 7}, r"unknown kernel 7"),
    ({"qk_granularity": 5}, r"unknown qk_granularity 5"),
    ({"is_causal": 2}, r"is_causal must be 0 or 1 \(got 2\)"),
    ({"smooth_k": 3}, r"smooth_k must be 0 or 1 \(got 3\)"),
    ({"dtype": 9}, r"dtype must be .*\(got 9\)"),
    ({"sm_scale": -2.5}, r"got -2.5\)"),
    ({"heads_kv": 3}, r"heads_q \(4\) must be a multiple of heads_kv \(3\)"),
    ({"seqlen_q": 7, "seqlen_kv": -5}, r"got 7, -5\)"),
    ({"head_dim": 400}, r"head_dim 400 "),
])
def test_struct_fields_reach_the_library(library, overrides, words):
    # Distinctive values written through the ctypes mirror come back in the library's reason text:
    # this checks each field's offset against the compiled C layout, not against a second copy of it.
    with pytest.raises(ValueError if "head_dim" not in overrides else NotImplementedError, match=words):
        _library.call("sageattn_check", ctypes.byref(_valid_params(library, **overrides)))


def test_abi_version_function(library):
    assert library.sageattn_abi_version() == _abi.ABI_VERSION


def test_check_rejects_misaligned_pointer(library):
    p = _valid_params(library)
    p.q.data = FAKE_DEVICE_PTR + 2
    with pytest.raises(NotImplementedError, match="aligned"):
        _library.call("sageattn_check", ctypes.byref(p))


def test_workspace_size_is_reported(library):
    def workspace(**overrides):
        size = ctypes.c_size_t(12345)
        _library.call("sageattn_workspace_size", ctypes.byref(_valid_params(library, **overrides)),
                      ctypes.byref(size))
        return size.value

    # At least the INT8 copy of k (2 heads x 128 padded rows x 64); the kernels quantize q themselves,
    # so without an LSE nothing grows with the queries.
    base = workspace()
    assert base >= 2 * 128 * 64
    assert workspace(seqlen_kv=1000) > base and workspace(seqlen_q=1000) == base


@pytest.mark.parametrize("status, exc_type", [
    (Status.INVALID_ARGUMENT, ValueError),
    (Status.UNSUPPORTED, NotImplementedError),
    (Status.WORKSPACE_TOO_SMALL, RuntimeError),
    (Status.CUDA_ERROR, RuntimeError),
    (99, RuntimeError),
])
def test_status_error_types(status, exc_type):
    reason = ctypes.create_string_buffer(b"the reason text", 64)
    err = _library.status_error(status, "sageattn_forward", reason)
    assert type(err) is exc_type
    assert "the reason text" in str(err) and "sageattn_forward" in str(err)


def test_missing_library_says_how_to_build(monkeypatch, tmp_path):
    missing = tmp_path / "libsageattn.so"
    monkeypatch.setenv(_library.LIBRARY_ENV_VAR, str(missing))
    monkeypatch.setattr(_library, "_library", None)
    with pytest.raises(ImportError) as info:
        _library.load()
    assert isinstance(info.value, RuntimeError)  # catchable as either
    message = str(info.value)
    assert str(missing) in message and "SAGEATTN_LIBRARY" in message and "cmake" in message
    assert not _library.is_available()


def test_wrong_shared_library_is_rejected():
    libm = ctypes.util.find_library("m")
    if libm is None:
        pytest.skip("no libm to load")
    with pytest.raises(_library.LibraryNotFoundError, match="does not export"):
        _library.Library(libm)


def test_concurrent_first_load_loads_once(library, monkeypatch):
    monkeypatch.setattr(_library, "_library", None)
    results = []
    threads = [threading.Thread(target=lambda: results.append(_library.load())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_import_without_torch(subprocess_env):
    # `torch` set to None in sys.modules makes `import torch` fail, as if it were not installed.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import sageattention\n"
        "assert sageattention.reference is not None and sageattention.__version__\n"
        "try:\n"
        "    sageattention.sageattn(1, 2, 3)\n"
        "except ImportError as e:\n"
        "    assert 'PyTorch' in str(e), e\n"
        "    print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
