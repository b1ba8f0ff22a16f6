"""`supports()` agrees exactly with what `sageattn` accepts (CPU: fake CUDA tensors).

A seeded random grid of calls (shapes, dtypes, devices, layouts, keyword values, grad mode) runs
both ways: `supports` must say (True, "") exactly when `sageattn` returns, and otherwise give the
message of the exception `sageattn` raises. Under FakeTensorMode `sageattn` runs its whole Python
path and the operator's fake implementation, so "does not raise" is meaningful without a GPU.
"""

import ctypes
import inspect
import math
import random

import pytest
import torch

from sageattention import _abi, _library, _validate, core, sageattn, supports

pytest.importorskip("torch._subclasses.fake_tensor")


def _sageattn_outcome(q, k, v, kwargs):
    try:
        sageattn(q, k, v, **kwargs)
    except Exception as exc:  # any exception: supports must have predicted it
        return False, str(exc)
    return True, ""


_VALID_SHAPES = [  # (q, k, v) in HND terms; the NHD layout permutes them
    ((2, 4, 33, 64), (2, 2, 40, 64), (2, 2, 40, 64)),
    ((1, 3, 5, 36), (1, 3, 9, 36), (1, 3, 9, 36)),
    ((1, 4, 16, 128), (1, 4, 16, 128), (1, 4, 16, 128)),
]
_INVALID_SHAPES = [
    ((1, 2, 8, 264), (1, 2, 8, 264), (1, 2, 8, 264)),  # head_dim > 256
    ((1, 4, 8, 64), (1, 3, 8, 64), (1, 3, 8, 64)),  # heads not a multiple
    ((2, 2, 8, 64), (1, 2, 8, 64), (1, 2, 8, 64)),  # batch mismatch
    ((1, 2, 0, 64), (1, 2, 8, 64), (1, 2, 8, 64)),  # empty query
    ((1, 2, 8, 64), (1, 2, 8, 64), (1, 2, 7, 64)),  # k/v tokens differ
    ((1, 2, 8, 64), (1, 2, 8, 64), (1, 2, 8, 32)),  # v head_dim differs
    ((1, 2, 8, 64), (1, 2, 8, 32), (1, 2, 8, 32)),  # q/k head_dim differ
    ((2, 8, 8), (2, 8, 8), (2, 8, 8)),  # 3-D
]
_VALID_KWARGS = {
    "tensor_layout": ["HND", "NHD", "nhd"],
    "is_causal": [False, True, 1],
    "sm_scale": [None, 0.125, 2],
    "return_lse": [False, True],
    "smooth_k": [True, False],
    "qk_quant_gran": ["per_thread", "per_warp"],
    "attn_mask": [None, "bool", "additive", "float32", "bool_row"],
    "block_mask": [None, "block"],
    "dropout_p": [0.0, 0],
    "kernel": ["auto", "sm80_mma"],
}
_INVALID_KWARGS = {
    "tensor_layout": ["BHSD", 3],
    "is_causal": ["yes", None],
    "sm_scale": [0.0, -1.0, math.inf, math.nan, "0.1", True],
    "smooth_k": [None],
    "qk_quant_gran": ["per_block"],
    "attn_mask": ["mask", "uint8", "float64", "bad_shape", "cpu", "5d"],
    "block_mask": ["element_sized", "uint8", "mask"],
    "dropout_p": [0.1, None],
    "kernel": ["fa3"],
    "scale": [0.1],  # not a sageattn parameter: TypeError
}


def _random_case(rng):
    """A valid call with 0 to 2 random defects."""
    shapes = rng.choice(_VALID_SHAPES)
    dtypes = [rng.choice([torch.float16, torch.bfloat16])] * 3
    devices = ["cuda"] * 3
    kwargs = {name: rng.choice(values) for name, values in _VALID_KWARGS.items() if rng.random() < 0.4}
    layout = "NHD" if str(kwargs.get("tensor_layout", "HND")).upper() == "NHD" else "HND"
    requires_grad = grad_mode = False
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        defect = rng.choice(["shape", "dtype", "device", "kwarg", "grad"])
        if defect == "shape":
            shapes = rng.choice(_INVALID_SHAPES)
        elif defect == "dtype":
            dtypes[rng.randrange(3)] = rng.choice([torch.float32, torch.bfloat16, torch.float16])
        elif defect == "device":
            devices[rng.randrange(3)] = rng.choice(["cpu", "cuda:1"])
        elif defect == "kwarg":
            name = rng.choice(sorted(_INVALID_KWARGS))
            kwargs[name] = rng.choice(_INVALID_KWARGS[name])
        else:
            requires_grad, grad_mode = True, rng.random() < 0.7
    return shapes, layout, dtypes, devices, kwargs, requires_grad, grad_mode


def _mask(spec, shapes, dtype):
    """The mask a placeholder of the grid stands for, sized from the HND shapes of q and k."""
    if not isinstance(spec, str) or spec == "mask":
        return spec  # None, or a non-tensor that must be refused
    b, hq, nq = shapes[0][:3] if len(shapes[0]) == 4 else (1, 1, 1)
    nk = shapes[1][2] if len(shapes[1]) == 4 else 1
    blocks = ((nq + 127) // 128, (nk + 127) // 128)
    make = {
        "bool": lambda: torch.ones(nq, nk, dtype=torch.bool, device="cuda"),
        "bool_row": lambda: torch.ones(b, 1, 1, nk, dtype=torch.bool, device="cuda"),
        "additive": lambda: torch.zeros(b, hq, nq, nk, dtype=dtype, device="cuda"),
        "float32": lambda: torch.zeros(1, hq, nq, nk, dtype=torch.float32, device="cuda"),
        "uint8": lambda: torch.ones(nq, nk, dtype=torch.uint8, device="cuda"),
        "float64": lambda: torch.zeros(nq, nk, dtype=torch.float64, device="cuda"),
        "bad_shape": lambda: torch.ones(nq + 1, nk, dtype=torch.bool, device="cuda"),
        "cpu": lambda: torch.ones(nq, nk, dtype=torch.bool, device="cpu"),
        "5d": lambda: torch.ones(1, b, hq, nq, nk, dtype=torch.bool, device="cuda"),
        "block": lambda: torch.ones(hq, *blocks, dtype=torch.bool, device="cuda"),
        "element_sized": lambda: torch.ones(nq + 128, nk, dtype=torch.bool, device="cuda"),
    }
    return make[spec]()


def _make(shape, layout, dtype, device, requires_grad):
    if layout == "NHD" and len(shape) == 4:
        shape = (shape[0], shape[2], shape[1], shape[3])
    t = torch.empty(shape, dtype=dtype, device=device)
    return t.requires_grad_(True) if requires_grad and dtype.is_floating_point else t


@pytest.mark.parametrize("seed", range(6))
def test_supports_agrees_with_sageattn_on_a_random_grid(fake_cuda_mode, seed):
    rng = random.Random(seed)
    disagreements, accepted = [], 0
    for _ in range(60):
        shapes, layout, dtypes, devices, kwargs, requires_grad, grad_mode = _random_case(rng)
        with fake_cuda_mode, torch.set_grad_enabled(grad_mode):
            q, k, v = (_make(s, layout, d, dev, requires_grad and i == 0)
                       for i, (s, d, dev) in enumerate(zip(shapes, dtypes, devices)))
            for name in ("attn_mask", "block_mask"):
                if name in kwargs:
                    kwargs[name] = _mask(kwargs[name], shapes, dtypes[0])
            expected = _sageattn_outcome(q, k, v, kwargs)
            answer = supports(q, k, v, **kwargs)
        accepted += expected[0]
        if answer != expected:
            disagreements.append((shapes, layout, dtypes, devices, kwargs, answer, expected))
    assert not disagreements, disagreements[:3]
    assert 0 < accepted < 60, "the grid should mix accepted and refused calls"


def test_supports_has_sageattns_signature():
    assert inspect.signature(core.validate_call) == inspect.signature(sageattn)


def test_supports_positional_arguments_bind_like_sageattn(fake_cuda_mode):
    with fake_cuda_mode:
        q = torch.empty(1, 2, 8, 64, dtype=torch.float16, device="cuda")
        assert supports(q, q, q, "NHD", True, 0.5, True) == (True, "")
        ok, why = supports(q, q, q, "HND", False, None, False, True)  # smooth_k is keyword-only
        assert not ok and "positional" in why and "sageattn()" in why


def test_unknown_keyword_is_reported_under_sageattns_name(fake_cuda_mode):
    with fake_cuda_mode:
        q = torch.empty(1, 2, 8, 64, dtype=torch.float16, device="cuda")
        assert supports(q, q, q, enable_gqa=True) == (
            False, "sageattn() got an unexpected keyword argument 'enable_gqa'")


@pytest.mark.parametrize("q_shape, kv_shape, words", [
    ((65536, 1, 1, 8), (65536, 1, 1, 8), "batch and heads of q must be at most 65535"),
    ((1, 65536, 1, 8), (1, 1, 1, 8), "batch and heads of q must be at most 65535"),
    ((1, 1, (1 << 30) + 1, 8), (1, 1, 8, 8), "sequence lengths must be at most"),
    ((65535, 65535, 129, 8), (65535, 1, 1, 8), "exceed the CUDA grid limit"),
    # q and k blocks alone fit (65535 * 20001); with the V tiles (one per 128 keys, counted on every
    # GPU) they do not (65535 * 40001).
    ((65535, 1, 128, 8), (65535, 1, 128 * 20000, 8), "exceed the CUDA grid limit"),
])
def test_size_limits_of_the_library_are_known_in_python(fake_cuda_mode, q_shape, kv_shape, words):
    with fake_cuda_mode:
        q = torch.empty(q_shape, dtype=torch.float16, device="cuda")
        kv = torch.empty(kv_shape, dtype=torch.float16, device="cuda")
        ok, why = supports(q, kv, kv)
        assert not ok and words in why
        with pytest.raises(NotImplementedError, match=words):
            sageattn(q, kv, kv)


def _library_accepts(library, batch, heads_q, heads_kv, seqlen_q, seqlen_kv):
    p = library.sageattn_default_params()
    p.batch, p.heads_q, p.heads_kv, p.seqlen_q, p.seqlen_kv = batch, heads_q, heads_kv, seqlen_q, seqlen_kv
    p.head_dim, p.dtype, p.sm_scale, p.sm_arch = 64, _abi.DType.FP16, 0.125, 80
    for t in (p.q, p.k, p.v, p.out):  # never dereferenced by the check
        t.data, t.stride_batch, t.stride_head, t.stride_token = 1 << 20, 64, 64, 64
    try:
        _library.call("sageattn_check", ctypes.byref(p))
    except NotImplementedError:
        return False
    return True


def _python_accepts(batch, heads_q, heads_kv, seqlen_q, seqlen_kv):
    try:
        _validate._check_size_limits(batch, heads_q, heads_kv, seqlen_q, seqlen_kv)
    except NotImplementedError:
        return False
    return True


@pytest.mark.parametrize("sizes", [
    (65535, 1, 1, 1, 1), (65536, 1, 1, 1, 1), (1, 65535, 65535, 1, 1), (1, 65536, 1, 1, 1),
    (1, 1, 1, 1 << 30, 1), (1, 1, 1, (1 << 30) + 1, 1), (1, 1, 1, 1, (1 << 30) + 1),
    (65535, 256, 256, 128, 128), (65535, 256, 256, 129, 128), (65535, 256, 1, 128 * 128, 128 * 128),
])
def test_python_size_limits_match_the_c_check(library, sizes):
    assert _python_accepts(*sizes) == _library_accepts(library, *sizes)


@pytest.mark.parametrize("capability, archs, ok, words", [
    ((9, 0), ["80", "90a"], True, ""),
    ((8, 0), ["80", "90a"], False, "compute capability 9.0"),
    ((10, 0), ["80", "90a"], False, "compute capability 9.0"),
    ((9, 0), ["80", "86"], False, "not in this build"),
])
def test_supports_knows_whether_the_requested_kernel_exists(fake_cuda_mode, monkeypatch, capability,
                                                           archs, ok, words):
    # sageattn's own checks cannot see the device; the library refuses an explicit sm90_wgmma off
    # Hopper (or in a build without 90a) at launch, and supports() must predict that refusal.
    class FakeLibrary:
        compiled_archs = archs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(_library, "load", lambda: FakeLibrary())
    with fake_cuda_mode:
        q = torch.empty(1, 2, 64, 128, device="cuda", dtype=torch.float16)
        result = supports(q, q, q, kernel="sm90_wgmma")
        assert result[0] is ok and words in result[1]
        assert supports(q, q, q, kernel="sm80_mma") == (True, "")  # available on every sm80+ GPU
