"""Masks on the CPU: argument checks, what reaches the kernel (views, strides, codes of the C
enums), the C library's checks of the mask fields, and the tests' own float64 reference against
torch SDPA. The kernels' results are checked on the GPU (test_gpu_masks.py)."""

import ctypes
import math
import re

import pytest
import torch
import torch.nn.functional as F

from sageattention import _abi, _launch, _library, _validate, core, sageattn, supports, sageattn_varlen

import torch_reference


@pytest.fixture
def fake(fake_cuda_mode):
    with fake_cuda_mode:
        yield


def fake_qkv(b=2, hq=4, hkv=2, nq=200, nk=300, d=64, dtype=torch.float16, layout="HND"):
    shape = (lambda h, n: (b, h, n, d)) if layout == "HND" else (lambda h, n: (b, n, h, d))
    return (torch.empty(shape(hq, nq), dtype=dtype, device="cuda"),
            torch.empty(shape(hkv, nk), dtype=dtype, device="cuda"),
            torch.empty(shape(hkv, nk), dtype=dtype, device="cuda"))


@pytest.mark.parametrize("layout", ["HND", "NHD"])
def test_masks_reach_the_kernel_as_broadcast_views(fake, layout):
    q, k, v = fake_qkv(layout=layout)
    mask = torch.zeros(4, 1, 300, dtype=torch.float32, device="cuda")  # [Hq, 1, Nk]: broadcast over batch, rows
    blocks = torch.ones(2, 1, 2, 3, dtype=torch.bool, device="cuda")
    *_, attn_mask, block_mask = core.validate_call(q, k, v, layout, attn_mask=mask, block_mask=blocks)
    assert attn_mask.shape == (2, 4, 200, 300) and attn_mask.stride() == (0, 300, 0, 1)
    assert block_mask.shape == (2, 4, 2, 3) and block_mask.dtype == torch.bool
    assert block_mask.stride() == (6, 0, 3, 1)
    # The operator checks what sageattn hands it again (profiler, torch.compile, ...): idempotent.
    again = _validate.check_masks(q, k, _validate.LAYOUT_CODES[layout], attn_mask, block_mask)
    assert again[0] is not None and again[0].stride() == attn_mask.stride()
    assert again[1].stride() == block_mask.stride()
    assert _launch.mask_type(attn_mask) == _abi.MaskType.ADDITIVE_FP32
    assert _launch.mask_type(torch.empty(1, dtype=torch.bool)) == _abi.MaskType.BOOL
    assert _launch.mask_type(torch.empty(1, dtype=torch.bfloat16)) == _abi.MaskType.ADDITIVE
    assert _launch.mask_type(None) == _abi.MaskType.NONE
    out, lse = sageattn(q, k, v, layout, return_lse=True, attn_mask=mask, block_mask=blocks)
    assert out.shape == q.shape and lse.shape == (2, 4, 200)


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"attn_mask": "x"}, TypeError, "attn_mask must be a torch.Tensor"),
    ({"attn_mask": ("uint8", (200, 300))}, ValueError, "attn_mask has dtype torch.uint8"),
    ({"attn_mask": ("bfloat16", (200, 300))}, ValueError, "q's dtype torch.float16"),
    ({"attn_mask": ("bool", (200, 299))}, ValueError, "not broadcastable"),
    ({"attn_mask": ("bool", (3, 4, 200, 300))}, ValueError, "not broadcastable"),
    ({"attn_mask": ("bool", (1, 2, 4, 200, 300))}, ValueError, "not broadcastable"),
    ({"attn_mask": ("bool", (200, 300), "cpu")}, ValueError, "attn_mask is on cpu"),
    ({"block_mask": "x"}, TypeError, "block_mask must be a torch.Tensor"),
    ({"block_mask": ("uint8", (2, 3))}, ValueError, "block_mask must be torch.bool"),
    ({"block_mask": ("bool", (2, 4))}, ValueError, r"ceil\(seqlen_kv / 128\)"),
    ({"block_mask": ("bool", (200, 300))}, ValueError, "not broadcastable"),
])
def test_bad_masks_are_refused_with_their_name(fake, kwargs, exc, words):
    q, k, v = fake_qkv()
    resolved = {}
    for name, spec in kwargs.items():
        if isinstance(spec, tuple):
            dtype, shape, *device = spec
            spec = torch.ones(shape, dtype=getattr(torch, dtype), device=device[0] if device else "cuda")
        resolved[name] = spec
    with pytest.raises(exc, match=words):
        sageattn(q, k, v, **resolved)
    ok, reason = supports(q, k, v, **resolved)
    assert not ok and re.search(words, reason), reason


def test_a_mask_that_requires_grad_is_refused_in_grad_mode(fake):
    q, k, v = fake_qkv()
    mask = torch.zeros(200, 300, device="cuda", requires_grad=True)
    with pytest.raises(RuntimeError, match="attn_mask requires grad"):
        sageattn(q, k, v, attn_mask=mask)
    with torch.no_grad():
        assert sageattn(q, k, v, attn_mask=mask).shape == q.shape


def test_varlen_refuses_a_mask(fake):
    q = torch.empty(10, 2, 64, dtype=torch.float16, device="cuda")
    cu = torch.tensor([0, 10], dtype=torch.int32)
    with pytest.raises(NotImplementedError, match="attn_mask"):
        sageattn_varlen(q, q, q, cu, cu, 10, 10, attn_mask=torch.ones(10, 10, dtype=torch.bool, device="cuda"))


def test_mask_grid_limit_is_known_in_python(fake):
    q = torch.empty(1, 65535, 128 * 200, 64, dtype=torch.float16, device="cuda")  # fake: no memory
    k = torch.empty(1, 65535, 128 * 200, 64, dtype=torch.float16, device="cuda")
    mask = torch.ones(1, dtype=torch.bool, device="cuda")
    ok, reason = supports(q, k, k, attn_mask=mask)
    assert not ok and "the mask is too large" in reason


# --- the C library's checks of the mask fields ---------------------------------------------------

FAKE_DEVICE_PTR = 1 << 40


def _params(library, seqlen=(200, 300), **mask_fields):
    p = library.sageattn_default_params()
    p.batch, p.heads_q, p.heads_kv, p.head_dim = 2, 4, 2, 64
    p.seqlen_q, p.seqlen_kv = seqlen
    for t in (p.q, p.k, p.v, p.out):
        t.data, t.stride_batch, t.stride_head, t.stride_token = FAKE_DEVICE_PTR, 4 * 4096 * 64, 4096 * 64, 64
    p.sm_scale, p.sm_arch = 0.125, 90
    for name, value in mask_fields.items():
        if "." in name:
            owner, field = name.split(".")
            setattr(getattr(p, owner), field, value)
        else:
            setattr(p, name, value)
    return p


def _status(library, params):
    reason = ctypes.create_string_buffer(512)
    status = library.sageattn_check(ctypes.byref(params), reason, 512)
    return status, reason.value.decode()


@pytest.mark.parametrize("fields, status, words", [
    ({"mask_type": 4}, _abi.Status.INVALID_ARGUMENT, "unknown mask_type 4"),
    ({"mask.data": FAKE_DEVICE_PTR}, _abi.Status.INVALID_ARGUMENT, "mask_type is SAGEATTN_MASK_NONE"),
    ({"mask_type": 1}, _abi.Status.INVALID_ARGUMENT, "mask: data pointer is NULL"),
    ({"mask_type": 1, "mask.data": FAKE_DEVICE_PTR, "mask.stride_row": -1}, _abi.Status.INVALID_ARGUMENT,
     "mask: strides must be non-negative"),
    ({"mask_type": 3, "mask.data": FAKE_DEVICE_PTR + 2}, _abi.Status.INVALID_ARGUMENT, "aligned to its element size"),
    ({"mask_type": 2, "mask.data": FAKE_DEVICE_PTR + 1}, _abi.Status.INVALID_ARGUMENT, "aligned to its element size"),
    ({"block_mask.data": FAKE_DEVICE_PTR, "block_mask.stride_batch": -6}, _abi.Status.INVALID_ARGUMENT,
     "block_mask: strides must be non-negative"),
])
def test_c_check_refuses_bad_mask_fields(library, fields, status, words):
    got, reason = _status(library, _params(library, **fields))
    assert got == status and words in reason, reason


def test_c_check_accepts_masks_and_the_workspace_holds_their_codes(library):
    size = ctypes.c_size_t()

    def workspace(**fields):  # 32 x 32 tiles: 1024 codes per (batch, head), more than a 256-byte region
        fields = {"kernel": int(_abi.Kernel.SM80_MMA), **fields}  # "auto" picks sm90 at hd64 from 3072 on
        params = _params(library, seqlen=(4096, 4096), **fields)
        _library.call("sageattn_workspace_size", ctypes.byref(params), ctypes.byref(size))
        return size.value

    plain = workspace()
    assert workspace(**{"block_mask.data": FAKE_DEVICE_PTR}) == plain  # read in place: no codes
    bool_mask = {"mask_type": 1, "mask.data": FAKE_DEVICE_PTR + 1, "mask.stride_column": 1}
    shared = workspace(**bool_mask)  # every stride 0 but the column: one code matrix
    per_head = workspace(**bool_mask, **{"mask.stride_head": 4096})
    per_batch_and_head = workspace(**bool_mask, **{"mask.stride_head": 4096, "mask.stride_batch": 4 * 4096})
    assert (shared - plain, per_head - plain, per_batch_and_head - plain) == (1024, 4 * 1024, 8 * 1024)
    # A block mask with its own head stride makes the codes per head even for a shared mask.
    assert workspace(**bool_mask, **{"block_mask.data": FAKE_DEVICE_PTR, "block_mask.stride_head": 1024}) == per_head
    # The additive mask needs only the codes; on the sm90 kernel a boolean mask also gets its keep
    # bits (16 bytes per row and tile: 1024 tiles x 128 rows).
    assert workspace(mask_type=2, **{"mask.data": FAKE_DEVICE_PTR}) == shared
    if "90a" in library.compiled_archs:
        sm90 = {"kernel": int(_abi.Kernel.SM90_WGMMA), "head_dim": 128}
        plain_sm90 = workspace(**sm90)
        assert workspace(**sm90, **bool_mask) - plain_sm90 == 1024 + 1024 * 128 * 16
        assert workspace(**sm90, mask_type=2, **{"mask.data": FAKE_DEVICE_PTR}) - plain_sm90 == 1024


# --- the tests' reference -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_reference_masks_match_torch_sdpa(kind):
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 3, 37, 16, generator=gen, dtype=torch.float64)
    k = torch.randn(2, 3, 45, 16, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 3, 45, 16, generator=gen, dtype=torch.float64)
    keep = torch.rand(2, 1, 37, 45, generator=gen) > 0.4
    keep[..., 0] = True  # every row sees a key: SDPA's result is defined there
    mask = keep if kind == "bool" else torch.where(keep, torch.randn(2, 1, 37, 45, generator=gen, dtype=torch.float64),
                                                  float("-inf"))
    out, lse = torch_reference.attention(q, k, v, attn_mask=mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(out, expected, atol=1e-12)
    scores = q @ k.transpose(-1, -2) / math.sqrt(16)
    scores = scores.masked_fill(~keep, float("-inf")) if kind == "bool" else scores + mask
    assert torch.allclose(lse, torch.logsumexp(scores, dim=-1), atol=1e-12)


def test_reference_counts_values_at_or_below_minus_1e30_as_masked():
    q = torch.randn(1, 2, 9, 8, dtype=torch.float64)
    keep = torch.rand(9, 9) < 0.6
    keep[:, 0] = True
    as_inf = torch.zeros(9, 9, dtype=torch.float64).masked_fill(~keep, float("-inf"))
    as_min = torch.zeros(9, 9, dtype=torch.float32).masked_fill(~keep, torch.finfo(torch.float32).min)
    assert torch.equal(torch_reference.attention(q, q, q, attn_mask=as_inf)[0],
                       torch_reference.attention(q, q, q, attn_mask=as_min)[0])


def test_reference_gives_fully_masked_rows_zeros_and_counts_nan_as_masked():
    q = torch.randn(1, 1, 4, 8, dtype=torch.float64)
    mask = torch.zeros(4, 4, dtype=torch.float64)
    mask[1] = float("-inf")
    mask[2, :3] = float("nan")
    out, lse = torch_reference.attention(q, q, q, attn_mask=mask)
    assert torch.equal(out[0, 0, 1], torch.zeros(8, dtype=torch.float64)) and lse[0, 0, 1] == float("-inf")
    assert torch.allclose(out[0, 0, 2], q[0, 0, 3])  # only key 3 left
    blocks = torch.tensor([[True, False], [False, True]])
    dense = torch_reference.expand_block_mask(blocks, 200, 150)
    assert dense.shape == (200, 150) and dense[127, 127] and not dense[127, 128] and dense[199, 149]
