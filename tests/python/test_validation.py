"""Every argument error of `sageattn` has the right type and names the problem (CPU).

Structure errors are checked on CPU tensors (the device check runs last, so each mistake gets
its own message). Errors that come after the device check use fake CUDA tensors: FakeTensorMode
makes shape-only CUDA tensors without a GPU.
"""

import math

import pytest
import torch

from sageattention import sageattn


def t(*shape, dtype=torch.float16, **kw):
    return torch.randn(*shape, **kw).to(dtype)


@pytest.fixture
def qkv():
    return t(1, 4, 16, 64), t(1, 2, 24, 64), t(1, 2, 24, 64)


@pytest.fixture
def fake_cuda(fake_cuda_mode):
    with fake_cuda_mode:
        yield fake_cuda_mode


def fake_qkv(q_shape=(1, 4, 16, 64), kv_shape=(1, 2, 24, 64), dtype=torch.float16, device="cuda"):
    return (torch.empty(q_shape, dtype=dtype, device=device),
            torch.empty(kv_shape, dtype=dtype, device=device),
            torch.empty(kv_shape, dtype=dtype, device=device))


@pytest.mark.parametrize("which", [0, 1, 2])
def test_non_tensor_inputs(qkv, which):
    args = list(qkv)
    args[which] = args[which].tolist()
    with pytest.raises(TypeError, match=["q", "k", "v"][which] + " must be a torch.Tensor"):
        sageattn(*args)


def test_wrong_ndim(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match=r"q must be 4-D.*got shape \(4, 16, 64\)"):
        sageattn(q[0], k, v)


@pytest.mark.parametrize("layout", ["BHSD", "hnd ", 0, None])
def test_bad_layout(qkv, layout):
    with pytest.raises(ValueError, match="tensor_layout"):
        sageattn(*qkv, tensor_layout=layout)


def test_batch_mismatch(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="batch"):
        sageattn(q.expand(2, -1, -1, -1), k, v)


def test_head_dim_mismatch_q_k(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="head_dim.*64 and 32"):
        sageattn(q, k[..., :32], v)


def test_k_v_token_mismatch(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="k and v"):
        sageattn(q, k, v[:, :, :20])


def test_v_head_dim_differs_not_implemented(qkv):
    q, k, v = qkv
    with pytest.raises(NotImplementedError, match="v head_dim"):
        sageattn(q, k, v[..., :32])


def test_heads_not_divisible(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match=r"heads of q \(4\) must be a multiple of heads of k/v \(3\)"):
        sageattn(q, t(1, 3, 24, 64), t(1, 3, 24, 64))


def test_nhd_layout_reads_heads_from_dim_2():
    q, k = t(1, 16, 4, 64), t(1, 24, 3, 64)  # 4 q heads, 3 kv heads in NHD
    with pytest.raises(ValueError, match=r"\(4\).*\(3\)"):
        sageattn(q, k, k, tensor_layout="NHD")


@pytest.mark.parametrize("which", ["q", "kv"])
def test_empty_sequence(qkv, which):
    q, k, v = qkv
    if which == "q":
        q = q[:, :, :0]
    else:
        k, v = k[:, :, :0], v[:, :, :0]
    with pytest.raises(ValueError, match="seqlen.*is 0"):
        sageattn(q, k, v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int8])
def test_unsupported_dtype(dtype):
    q = torch.ones(1, 2, 8, 64, dtype=dtype)
    with pytest.raises(ValueError, match=f"q has dtype {dtype}.*float16.*bfloat16"):
        sageattn(q, q, q)


def test_mixed_dtypes(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="same dtype.*float16.*bfloat16"):
        sageattn(q, k.bfloat16(), v)


def test_head_dim_too_large():
    q = t(1, 2, 8, 264)
    with pytest.raises(NotImplementedError, match="head_dim 264.*not supported yet"):
        sageattn(q, q, q)


def test_a_bad_attn_mask_is_named_even_on_cpu_tensors(qkv):
    with pytest.raises(ValueError, match="attn_mask of shape"):
        sageattn(*qkv, attn_mask=torch.ones(16, 23, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_mask has dtype torch.uint8"):
        sageattn(*qkv, attn_mask=torch.ones(16, 24, dtype=torch.uint8))
    with pytest.raises(ValueError, match="q is on cpu"):  # a good mask: the device check comes last
        sageattn(*qkv, attn_mask=torch.ones(16, 24, dtype=torch.bool))


@pytest.mark.parametrize("p", [0.1, 1])
def test_dropout_not_supported(qkv, p):
    with pytest.raises(NotImplementedError, match="dropout"):
        sageattn(*qkv, dropout_p=p)


@pytest.mark.parametrize("p", ["0", None, torch.tensor(0.0)])
def test_dropout_wrong_type(qkv, p):
    with pytest.raises(TypeError, match="dropout_p"):
        sageattn(*qkv, dropout_p=p)


def test_dropout_zero_is_fine_until_device_check(qkv):
    with pytest.raises(ValueError, match="CUDA"):
        sageattn(*qkv, dropout_p=0.0)


@pytest.mark.parametrize("kwarg", ["scale", "enable_gqa", "pv_accum_dtype", "smooth_v"])
def test_unknown_keyword_arguments(qkv, kwarg):
    with pytest.raises(TypeError, match=kwarg):
        sageattn(*qkv, **{kwarg: 1})


@pytest.mark.parametrize("scale", [0.0, -0.1, math.inf, -math.inf, math.nan])
def test_bad_sm_scale_value(qkv, scale):
    with pytest.raises(ValueError, match="sm_scale"):
        sageattn(*qkv, sm_scale=scale)


@pytest.mark.parametrize("scale", ["0.1", True, torch.tensor(0.1)])
def test_bad_sm_scale_type(qkv, scale):
    with pytest.raises(TypeError, match="sm_scale"):
        sageattn(*qkv, sm_scale=scale)


def test_flag_given_as_tensor(qkv):
    with pytest.raises(TypeError, match="is_causal"):
        sageattn(*qkv, is_causal=torch.tensor(True))
    with pytest.raises(TypeError, match="rotate_qk must be a bool"):
        sageattn(*qkv, rotate_qk=torch.tensor(True))
    with pytest.raises(TypeError, match="rotate_qk must be a bool"):
        sageattn(*qkv, rotate_qk="no")


def test_bad_granularity_and_kernel(qkv):
    with pytest.raises(ValueError, match="qk_quant_gran.*per_thread.*per_warp"):
        sageattn(*qkv, qk_quant_gran="per_block")
    with pytest.raises(ValueError, match="kernel"):
        sageattn(*qkv, kernel="fa3")


def test_cpu_tensors_get_a_clear_error(qkv):
    with pytest.raises(ValueError, match="q is on cpu.*CUDA"):
        sageattn(*qkv)


def test_meta_tensors_rejected():
    q = torch.empty(1, 2, 8, 64, dtype=torch.float16, device="meta")
    with pytest.raises(ValueError, match="meta.*CUDA"):
        sageattn(q, q, q)


def test_tensors_on_different_devices(fake_cuda):
    q, k, v = fake_qkv()
    k1 = torch.empty(k.shape, dtype=k.dtype, device="cuda:1")
    with pytest.raises(ValueError, match="same device"):
        sageattn(q, k1, v)


def test_cpu_and_cuda_mixed(fake_cuda):
    q, k, v = fake_qkv()
    with pytest.raises(ValueError, match="v is on cpu"):
        sageattn(q, k, torch.empty(v.shape, dtype=v.dtype, device="cpu"))


def test_requires_grad_is_rejected(fake_cuda):
    q, k, v = fake_qkv()
    q.requires_grad_(True)
    with pytest.raises(RuntimeError, match="forward-only"):
        sageattn(q, k, v)
    with torch.no_grad():
        assert sageattn(q, k, v).shape == q.shape  # fine without grad mode


def test_valid_call_reaches_the_op(fake_cuda):
    q, k, v = fake_qkv()
    out, lse = sageattn(q, k, v, is_causal=True, sm_scale=0.5, return_lse=True,
                        qk_quant_gran="per_warp", smooth_k=False, kernel="sm80_mma")
    assert out.shape == q.shape and lse.shape == (1, 4, 16)
