"""How `sageattn` behaves inside a real program on the GPU: streams, CUDA graphs, torch.compile,
operator registration checks, unusual strides and pointers, several devices."""

import pytest
import torch

from sageattention import core, ops, sageattn

from gpu_common import no_grad_with_library, same_result  # noqa: F401 (autouse fixture)
from gpu_helpers import SM90_KERNELS, exact, kernel_used, make_inputs, rel_l1, sm90_available

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("head_dim, is_causal", [(64, True), (128, False), (36, True)])
def test_cuda_graph_replay_with_new_inputs(head_dim, is_causal):
    q, k, v = make_inputs("k_bias", (2, 4, 333, head_dim), (2, 2, 400, head_dim), seed=1)

    def call():
        return sageattn(q, k, v, is_causal=is_causal, return_lse=True)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream, as torch recommends
        call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        graph_out, graph_lse = call()

    for seed in (2, 3):
        new = make_inputs("gaussian", q.shape, k.shape, seed=seed)
        for dst, src in zip((q, k, v), new):
            dst.copy_(src)
        graph.replay()
        eager_out, eager_lse = call()
        torch.cuda.synchronize()
        same_result(graph_out, eager_out)
        same_result(graph_lse, eager_lse)


def test_runs_on_the_callers_stream():
    """The kernel must be ordered after work queued on the caller's (non-default) stream: a launch
    on the legacy default stream would read q before the slow copy below has written it."""
    q, k, v = make_inputs("gaussian", (2, 4, 1024, 128), (2, 4, 1024, 128), seed=4)
    expected = sageattn(q, k, v)
    target = torch.empty_like(q)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        torch.cuda._sleep(50_000_000)  # ~tens of ms of GPU time before q is written
        target.copy_(q)
        out = sageattn(target, k, v)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    same_result(out, expected)


@pytest.mark.parametrize("layout, head_dim", [("HND", 128), ("NHD", 64), ("HND", 36)])
def test_torch_compile_fullgraph_matches_eager(layout, head_dim):
    shape_q = (1, 4, 256, head_dim) if layout == "HND" else (1, 256, 4, head_dim)
    shape_kv = (1, 2, 300, head_dim) if layout == "HND" else (1, 300, 2, head_dim)
    q, k, v = make_inputs("k_bias", shape_q, shape_kv, seed=5, layout=layout)

    def block(q, k, v):
        out, lse = sageattn(q * 1.0, k, v, tensor_layout=layout, is_causal=True, return_lse=True)
        return out + 1.0, lse

    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True)
    c_out, c_lse = compiled(q, k, v)
    e_out, e_lse = block(q, k, v)
    same_result(c_out, e_out)
    same_result(c_lse, e_lse)


def test_opcheck():
    opcheck = getattr(torch.library, "opcheck", None)
    if opcheck is None:
        pytest.skip("torch.library.opcheck needs torch >= 2.4")
    q, k, v = make_inputs("gaussian", (1, 4, 100, 64), (1, 2, 120, 64), seed=6)
    for layout, args in ((0, (q, k, v)), (1, tuple(t.transpose(1, 2) for t in (q, k, v)))):
        for return_lse in (True, False):
            opcheck(ops.attention_forward, (*args, layout, True, 0.125, return_lse, True, 0, 0),
                    test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))
    # With both masks (the op re-checks and expands them; they must not be mutated or aliased).
    mask = torch.rand(1, 4, 100, 120, device="cuda") < 0.7
    blocks = torch.ones(1, 1, 1, 1, dtype=torch.bool, device="cuda")
    opcheck(ops.attention_forward, (q, k, v, 0, False, 0.125, True, True, 0, 0, True, mask, blocks),
            test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_fake_matches_real_strides():
    from torch._subclasses.fake_tensor import FakeTensorMode

    q, k, v = make_inputs("gaussian", (2, 50, 4, 64), (2, 70, 2, 64), seed=7, layout="NHD")
    real = ops.attention_forward(q, k, v, 1, False, 0.125, True, True, 0, 0)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fq, fk, fv = (mode.from_tensor(t) for t in (q, k, v))
        fake = ops.attention_forward(fq, fk, fv, 1, False, 0.125, True, True, 0, 0)
    for r, f in zip(real, fake):
        assert r.shape == f.shape and r.stride() == f.stride() and r.dtype == f.dtype


def test_misaligned_and_strided_inputs_are_copied_correctly():
    b, h, n, d = 1, 2, 100, 64
    # Start 2 bytes into an allocation: not 16-byte aligned.
    base = torch.randn(b * h * n * d + 1, device="cuda", dtype=torch.float16)
    q = base[1:].view(b, h, n, d)
    # Token stride 65 (not a multiple of 8): rows not 16-byte aligned.
    k = torch.randn(b, h, n, 65, device="cuda", dtype=torch.float16)[..., :d]
    # Head dim not innermost-contiguous.
    v = torch.randn(b, h, d, n, device="cuda", dtype=torch.float16).transpose(2, 3)
    out = sageattn(q, k, v)
    contiguous = sageattn(q.contiguous(), k.contiguous(), v.contiguous())
    same_result(out, contiguous)
    ref, _ = exact(q, k, v)
    assert rel_l1(out, ref) < 2e-2


def test_calls_on_two_streams_keep_their_own_workspaces():
    """Small workspaces are kept per thread, device and stream (_launch._workspace): calls queued on
    two streams at once must not share one."""
    inputs = [make_inputs("gaussian", (1, 2, 200 + 37 * i, 64), (1, 2, 300, 64), seed=20 + i) for i in range(6)]
    expected = [sageattn(*x, return_lse=True) for x in inputs]
    torch.cuda.synchronize()
    streams = (torch.cuda.Stream(), torch.cuda.Stream())
    results = []
    for i, x in enumerate(inputs):
        stream = streams[i % 2]
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            results.append(sageattn(*x, return_lse=True))
    torch.cuda.synchronize()
    for (out, lse), (ref_out, ref_lse) in zip(results, expected):
        same_result(out, ref_out)
        same_result(lse, ref_lse)


def test_broadcast_kv_with_zero_strides():
    q, k, v = make_inputs("gaussian", (2, 4, 64, 64), (1, 1, 80, 64), seed=8)
    k2, v2 = k.expand(2, 4, -1, -1), v.expand(2, 4, -1, -1)
    out = sageattn(q, k2, v2)
    same_result(out, sageattn(q, k2.contiguous(), v2.contiguous()))


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_second_device():
    with torch.cuda.device(0):
        q, k, v = (t.to("cuda:1") for t in make_inputs("gaussian", (1, 2, 128, 64), (1, 2, 128, 64)))
        out = sageattn(q, k, v)
    assert out.device == q.device
    same_result(out.to("cuda:0"), sageattn(q.to("cuda:0"), k.to("cuda:0"), v.to("cuda:0")))


@pytest.mark.parametrize("kernel", ["auto", "auto_pv16", "sm80_mma", "sm90_wgmma", "sm90_wgmma_pv16"])
def test_explicit_kernel_choice(kernel, library):
    if kernel in SM90_KERNELS and not sm90_available(library):
        pytest.skip(f"{kernel} needs a compute capability 9.0 GPU and a build with 90a")
    q, k, v = make_inputs("k_bias", (1, 4, 300, 128), (1, 4, 300, 128), seed=10)
    out = sageattn(q, k, v, kernel=kernel)
    ref, _ = exact(q, k, v)
    # On Hopper builds with 90a "auto" is the 16-bit P.V kernel at this head dim and length.
    fp8 = kernel_used(kernel, library, q.shape[-1], q.shape[2]) == "sm90_wgmma"
    assert rel_l1(out, ref) < (2.5e-3 if fp8 else 1e-3)


def test_requires_grad_raises_on_gpu():
    q = torch.randn(1, 2, 16, 64, device="cuda", dtype=torch.float16, requires_grad=True)
    with torch.enable_grad(), pytest.raises(RuntimeError, match="forward-only"):
        sageattn(q, q.detach(), q.detach())


def test_op_called_directly_checks_its_inputs():
    # The op is public: inputs that sageattn would reject must not reach the kernel through it
    # (the C params carry only q's shape, so a short v would be read out of bounds).
    q, k, v = make_inputs("gaussian", (1, 2, 100, 64), (1, 2, 100, 64), seed=11)
    op = ops.attention_forward
    with pytest.raises(ValueError, match="same heads and tokens"):
        op(q, k, v[:, :, :50], 0, False, 0.125, False, True, 0, 0)
    with pytest.raises(ValueError, match="layout"):
        op(q, k, v, 5, False, 0.125, False, True, 0, 0)
    with pytest.raises(ValueError, match="dtype"):
        op(q.float(), k.float(), v.float(), 0, False, 0.125, False, True, 0, 0)
    out, _ = op(q, k, v, 0, False, 0.125, False, True, 0, 0)  # and a valid call still runs
    assert rel_l1(out, exact(q, k, v, sm_scale=0.125)[0]) < 3e-2


@pytest.mark.parametrize("head_dim, is_causal, layout", [(128, False, "HND"), (64, True, "NHD"), (36, False, "HND")])
def test_eager_fast_path_equals_the_operator(head_dim, is_causal, layout, monkeypatch):
    """sageattn skips the operator dispatch in plain eager calls (ops.call_eager); the result must be
    the operator's, bit for bit (one deterministic kernel on the same inputs), and so must the LSE."""
    eager_calls = []
    real_call_eager = ops.call_eager

    def spy(*args, **kwargs):
        eager_calls.append(1)
        return real_call_eager(*args, **kwargs)

    monkeypatch.setattr(ops, "call_eager", spy)
    monkeypatch.setattr(core, "_checked_calls", {})  # a first call: the checks run
    q, k, v = make_inputs("k_bias", (2, 4, 333, head_dim), (2, 2, 301, head_dim), seed=7)
    if layout == "NHD":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # strided NHD views
    assert ops.eager_fast_path_ok(q, k, v)
    out, lse = sageattn(q, k, v, tensor_layout=layout, is_causal=is_causal, return_lse=True)
    assert eager_calls == [1], "sageattn did not take the eager path"
    pad = (head_dim + 7) // 8 * 8 - head_dim
    q_in, k_in, v_in = (torch.nn.functional.pad(t, (0, pad)).contiguous() for t in (q, k, v))
    layout_code = 0 if layout == "HND" else 1
    op_out, op_lse = ops.attention_forward(q_in, k_in, v_in, layout_code, is_causal, head_dim ** -0.5,
                                           True, True, 0, 0)
    assert torch.equal(out, op_out[..., :head_dim])
    assert torch.equal(lse, op_lse)
    # The same arguments again take the recorded checks (core._checked_calls) where no copy was
    # needed: still the operator's result.
    again, again_lse = sageattn(q, k, v, tensor_layout=layout, is_causal=is_causal, return_lse=True)
    assert eager_calls == ([1] if pad == 0 else [1, 1])
    assert torch.equal(again, out) and torch.equal(again_lse, lse)


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "block", "both"])
def test_repeated_masked_calls_read_each_calls_mask(mask_kind, monkeypatch):
    """Masked calls are recorded as unmasked ones are (core._checked_calls): a repeated call patches
    the masks' data pointers into the recorded params. Two masks of one layout and different values,
    alternated over recorded calls, each give the result of a fully checked call with that mask,
    bit for bit; a misaligned q (copied, so the masks are expanded again) gives it too, and a mask
    that requires grad is still refused."""
    q, k, v = make_inputs("gaussian", (2, 4, 300, 128), (2, 2, 333, 128), seed=3)
    gen = torch.Generator(device="cuda").manual_seed(5)

    def masks():
        attn_mask = block_mask = None
        if mask_kind in ("bool", "both"):
            attn_mask = torch.rand(1, 4, 300, 333, device="cuda", generator=gen) > 0.3
        if mask_kind == "additive":
            attn_mask = torch.randn(2, 1, 300, 333, device="cuda", generator=gen)
        if mask_kind in ("block", "both"):
            block_mask = torch.rand(2, 4, 3, 3, device="cuda", generator=gen) > 0.4
        return attn_mask, block_mask

    pairs = (masks(), masks())
    monkeypatch.setattr(core, "_checked_calls", {})
    expected = []
    for attn_mask, block_mask in pairs:
        core._checked_calls.clear()  # the full checks
        expected.append(sageattn(q, k, v, attn_mask=attn_mask, block_mask=block_mask))
    assert not torch.equal(expected[0], expected[1]), "the two masks must give different outputs"
    core._checked_calls.clear()
    for i in (0, 1, 0, 1, 0):  # records, fills the params bytes, then patches pointers
        attn_mask, block_mask = pairs[i]
        assert torch.equal(sageattn(q, k, v, attn_mask=attn_mask, block_mask=block_mask), expected[i]), f"mask {i}"
    assert len(core._checked_calls) == 1
    base = torch.empty(q.numel() + 1, device="cuda", dtype=q.dtype)
    shifted = base[1:].view(q.shape)
    shifted.copy_(q)
    assert shifted.data_ptr() % 16 != 0
    same_result(sageattn(shifted, k, v, attn_mask=pairs[1][0], block_mask=pairs[1][1]), expected[1])
    if mask_kind == "additive":
        with torch.enable_grad(), pytest.raises(RuntimeError, match="forward-only"):
            sageattn(q, k, v, attn_mask=pairs[0][0].clone().requires_grad_())


def test_a_repeated_call_still_checks_what_can_differ():
    """A call whose arguments match one checked before skips validate_call (core._checked_calls);
    what can differ between two such calls is still checked: the pointers' alignment, grad mode and
    requires_grad, and argument types that compare equal (numpy.bool_ and bool)."""
    import numpy as np

    q, k, v = make_inputs("gaussian", (1, 2, 100, 64), (1, 2, 100, 64), seed=9)
    first = sageattn(q, k, v)
    assert any(key[0] == q.shape for key in core._checked_calls), "the call was not recorded"
    # Same shape and strides, but 2 bytes into an allocation: copied, same result.
    base = torch.empty(q.numel() + 1, device="cuda", dtype=q.dtype)
    shifted = base[1:].view(q.shape)
    shifted.copy_(q)
    assert shifted.stride() == q.stride() and shifted.data_ptr() % 16 != 0
    same_result(sageattn(shifted, k, v), first)
    # The same with strides a copy changes (an HND view of NHD storage): the copy's strides, not the
    # recorded call's, must reach the kernel.
    nhd = torch.empty(q.numel() + 1, device="cuda", dtype=q.dtype)
    aligned_view = nhd[:-1].view(1, 100, 2, 64).transpose(1, 2)
    aligned_view.copy_(q)
    same_result(sageattn(aligned_view, k, v), first)
    misaligned_view = nhd[1:].view(1, 100, 2, 64).transpose(1, 2)
    misaligned_view.copy_(q)
    assert misaligned_view.stride() == aligned_view.stride() and misaligned_view.data_ptr() % 16 != 0
    same_result(sageattn(misaligned_view, k, v), first)
    with torch.enable_grad(), pytest.raises(RuntimeError, match="forward-only"):
        sageattn(q.clone().requires_grad_(), k, v)
    with pytest.raises(TypeError, match="is_causal must be a bool"):
        sageattn(q, k, v, is_causal=np.bool_(False))
    same_result(sageattn(q, k, v), first)
