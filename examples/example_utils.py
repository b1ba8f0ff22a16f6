"""What the example scripts share: their GPU check and the error measure they print.

The examples need a CUDA GPU to show anything (without one every call falls back to torch SDPA).
Without a GPU they say so and exit with status 0, so that running them is always safe; with
--require-gpu a missing GPU is an error (status 2) instead.
"""

import argparse
import sys

import torch


def parse_args(description, argv=None, add_arguments=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--require-gpu", action="store_true",
                        help="exit with status 2 instead of 0 when no CUDA GPU is available")
    parser.add_argument("--seed", type=int, default=0)
    if add_arguments is not None:
        add_arguments(parser)
    return parser.parse_args(argv)


def gpu_or_exit(args, what):
    """Returns when a CUDA GPU is available; otherwise explains and exits (0, or 2 with --require-gpu)."""
    if torch.cuda.is_available():
        return
    print(f"{what} needs a CUDA GPU (torch.cuda.is_available() is False); nothing to show here.")
    sys.exit(2 if args.require_gpu else 0)


def rel_l1(out, ref):
    """sum|out - ref| / sum|ref| in float64: the project's accuracy measure (docs/accuracy.md)."""
    out, ref = out.double(), ref.double()
    return ((out - ref).abs().sum() / ref.abs().sum()).item()


def report(rows, columns, max_error, calls):
    """Prints rows (name, error, *more numbers, routing counters as a dict) under `columns` (the
    headers of the numbers) and returns the exit status: 1 if a row's error is not below
    `max_error` or its counters differ from `calls` routed calls (`calls` mask fallbacks for the
    cases whose name mentions a mask, which must stay on SDPA)."""
    width = max(len(row[0]) for row in rows) + 2
    print("case".ljust(width) + "".join(f"{c:>24s}" for c in columns) + "  routing")
    failed = False
    for name, error, *numbers, stats in rows:
        expected = ({"routed": 0, "fallbacks": {"attn_mask": calls}} if "mask" in name
                    else {"routed": calls, "fallbacks": {}})
        ok = error < max_error and {key: stats[key] for key in expected} == expected
        failed |= not ok
        print(name.ljust(width) + "".join(f"{x:24.2e}" for x in (error, *numbers))
              + f"  {stats}{'' if ok else '  <-- FAIL'}")
    return 1 if failed else 0
