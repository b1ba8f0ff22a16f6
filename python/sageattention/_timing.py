"""GPU timing by CUDA events (design.md section 6).

Each timed call gets its own pair of events; calls are queued back to back and synchronized once at
the end, as an application would issue them, so host overhead shows only where it exceeds the GPU
time of a call. The result is the median over >= 10 calls, or over >= 3 when one call takes more
than 50 ms (long calls are stable, and a 32K-token sweep must finish in minutes).
"""

import math
import statistics

import torch

MIN_ITERS = 10
MIN_ITERS_SLOW = 3
SLOW_CALL_MS = 50.0
SLOW_BUDGET_MS = 500.0


def _one_call_ms(fn):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def time_cuda(fn, warmup=3):
    """Median milliseconds of fn() on the current stream. Returns a dict with median_ms, min_ms,
    iters and all samples."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    probe_ms = _one_call_ms(fn)
    iters = MIN_ITERS
    if probe_ms > SLOW_CALL_MS:
        iters = max(MIN_ITERS_SLOW, min(MIN_ITERS, math.ceil(SLOW_BUDGET_MS / probe_ms)))
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(iters)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    samples = [start.elapsed_time(end) for start, end in events]
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "iters": iters,
            "samples_ms": samples}
