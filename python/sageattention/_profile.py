"""Where one ``sageattn`` call spends its GPU time: per-kernel times from the torch profiler (CUPTI
also sees the kernels of our statically linked CUDA runtime), split into the attention kernel and
the pre-pass (quantization, smoothing statistics, V conversion). Used by ``bench --breakdown`` and
``scripts/smoke.py``; the split itself is pure Python (tested on the CPU).
"""

__all__ = ["kernel_times", "kernel_short_name", "split_prepass", "prepass_kernels_text"]

# Kernel-name fragments: every kernel of the library lives in namespace sageattn; the attention
# kernels are attention_sm80_kernel / attention_sm90_kernel, everything else of ours is pre-pass.
_LIBRARY = "sageattn::"
_ATTENTION = "attention_sm"


def kernel_times(fn, calls=5):
    """[(kernel name, GPU microseconds per call, launches per call)] of ``fn()``, averaged over
    ``calls`` calls after one warm-up call."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    return [(evt.key, evt.device_time_total / calls, evt.count / calls)
            for evt in prof.key_averages() if evt.device_time_total > 0]


def kernel_short_name(name):
    """``quantize_kernel`` from ``void sageattn::(anonymous namespace)::quantize_kernel<__half, ...>(...)``:
    the unqualified name without template arguments or parameters."""
    head = name.replace("(anonymous namespace)", "").split("<", 1)[0].split("(", 1)[0]
    words = head.split("::")[-1].split()
    return words[-1] if words else name


def split_prepass(times):
    """Totals of ``kernel_times`` output: attention, pre-pass and other (torch's own kernels, e.g.
    the padding copies of head dims that are not a multiple of 8) in microseconds, our launches per
    call, the pre-pass share of the GPU time, and the pre-pass per kernel (``prepass_kernels``:
    short name -> microseconds, largest first)."""
    attention = prepass = other = launches = 0.0
    prepass_kernels = {}
    for name, us, count in times:
        if _ATTENTION in name and _LIBRARY in name:
            attention += us
            launches += count
        elif _LIBRARY in name:
            prepass += us
            launches += count
            short = kernel_short_name(name)
            prepass_kernels[short] = prepass_kernels.get(short, 0.0) + us
        else:
            other += us
    total = attention + prepass + other
    return {"attention_us": attention, "prepass_us": prepass, "other_us": other, "total_us": total,
            "launches": launches, "prepass_share": prepass / total if total > 0 else 0.0,
            "prepass_kernels": dict(sorted(prepass_kernels.items(), key=lambda item: -item[1]))}


def prepass_kernels_text(split, empty="none"):
    """``split_prepass``'s pre-pass per kernel as ``quantize_kernel 177, stats_kernel 26`` (us), or
    ``empty`` when the call ran no pre-pass kernel."""
    return ", ".join(f"{name} {us:.0f}" for name, us in split["prepass_kernels"].items()) or empty
