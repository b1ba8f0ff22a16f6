"""When sageattn may skip the torch operator dispatch (ops.eager_fast_path_ok): only for plain tensors
in plain eager code. Anything that observes or transforms operator calls must still see the
operator. CPU-only: the rule looks at types and modes, not at devices (sageattn checks those first).
The GPU test that the fast path gives the operator's result bit for bit is in test_gpu_runtime.py."""

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from sageattention import ops


def _tensors():
    return tuple(torch.randn(1, 2, 3, 8) for _ in range(3))


def test_plain_eager_tensors_take_the_fast_path():
    assert ops.EAGER_FAST_PATH, "this torch lacks a probe the rule needs"
    assert ops.eager_fast_path_ok(*_tensors())


class _Subclass(torch.Tensor):
    pass


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_tensor_subclass_goes_through_the_operator(which):
    tensors = list(_tensors())
    tensors[which] = tensors[which].as_subclass(_Subclass)
    assert not ops.eager_fast_path_ok(*tensors)


def test_fake_tensors_go_through_the_operator():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        q, k, v = (mode.from_tensor(t) for t in _tensors())
        assert not ops.eager_fast_path_ok(q, k, v)


class _CountingDispatchMode(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _CountingFunctionMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", [_CountingDispatchMode, _CountingFunctionMode])
def test_an_active_mode_goes_through_the_operator(mode):
    tensors = _tensors()
    with mode():
        assert not ops.eager_fast_path_ok(*tensors)
    assert ops.eager_fast_path_ok(*tensors)


def test_default_device_mode_keeps_the_fast_path():
    """torch.set_default_device pushes a function mode that only fills in missing devices."""
    tensors = _tensors()
    with torch.device("cpu"):  # the same DeviceContext mode, scoped
        assert torch._C._len_torch_function_stack() == 1
        assert ops.eager_fast_path_ok(*tensors)
        with _CountingFunctionMode():  # any other function mode still takes the operator
            assert not ops.eager_fast_path_ok(*tensors)


def test_the_profiler_sees_the_operator():
    tensors = _tensors()
    with torch.profiler.profile():
        assert not ops.eager_fast_path_ok(*tensors)
    with torch.autograd.profiler.record_function("outside any profiler"):
        assert ops.eager_fast_path_ok(*tensors)


def test_vmap_goes_through_the_operator():
    seen = []

    def probe(x):
        seen.append(ops.eager_fast_path_ok(x, x, x))
        return x

    torch.func.vmap(probe)(torch.randn(2, 1, 2, 3, 8))
    assert seen == [False]


def test_torch_compile_goes_through_the_operator():
    def probe(x):
        return x + int(ops.eager_fast_path_ok(x, x, x))

    x = torch.zeros(3)
    assert torch.equal(torch.compile(probe, backend="eager", fullgraph=True)(x), x)
    assert torch.equal(probe(x), x + 1)


def test_jit_trace_goes_through_the_operator():
    seen = []

    def probe(x):
        seen.append(ops.eager_fast_path_ok(x, x, x))
        return x * 2

    torch.jit.trace(probe, torch.randn(3))  # traces, then re-runs in eager to check the trace
    assert seen[0] is False


def test_checked_call_keys_tell_equal_values_of_other_types_apart():
    """sageattn records the checks of eager calls by core._call_key: arguments that compare equal
    but would not pass the same checks (numpy.bool_ for bool) must give another key, and an
    unhashable argument must raise TypeError (sageattn then runs the checks, which name it)."""
    import numpy as np

    from sageattention import core

    q, k, v = _tensors()
    args = ["HND", False, None, False, True, "per_thread", 0.0, "auto", True]
    key = core._call_key(q, k, v, *args)
    assert key == core._call_key(q, k, v, *args)
    numpy_flag = list(args)
    numpy_flag[1] = np.bool_(False)
    assert key != core._call_key(q, k, v, *numpy_flag)
    assert key != core._call_key(q, k, v.transpose(2, 3).contiguous().transpose(2, 3), *args)
    unhashable = list(args)
    unhashable[7] = ["auto"]
    with pytest.raises(TypeError):
        hash(core._call_key(q, k, v, *unhashable))


def test_checked_call_keys_tell_mask_layouts_apart():
    """Masked calls are recorded too: the key holds each mask's shape, strides, dtype and device
    (what the checks and the expanded view's strides depend on), not its values."""
    from sageattention import core

    q, k, v = _tensors()
    args = ["HND", False, None, False, True, "per_thread", 0.0, "auto", True]
    mask = torch.rand(1, 1, 3, 3) > 0.5
    key = core._call_key(q, k, v, *args, mask, None)
    assert key == core._call_key(q, k, v, *args, torch.rand(1, 1, 3, 3) > 0.5, None), "values must not matter"
    assert key != core._call_key(q, k, v, *args)
    assert key != core._call_key(q, k, v, *args, None, mask), "attn_mask and block_mask are different slots"
    assert key != core._call_key(q, k, v, *args, mask.float(), None)
    assert key != core._call_key(q, k, v, *args, torch.rand(1, 2, 3, 3) > 0.5, None)
    assert key != core._call_key(q, k, v, *args, (torch.rand(1, 1, 3, 3) > 0.5).transpose(2, 3), None)
