"""What a benchmark report must say about where it ran (design.md section 6): card, clocks,
torch / CUDA / cuDNN versions, library version and the source commit. Every probe is optional and
never raises: a missing nvidia-smi or git only leaves a field empty."""

import os
import platform
import subprocess

from . import _library
from ._version import __version__


def _run(cmd, cwd=None):
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def gpu_clocks(device_index=0):
    """Current and max SM clock in MHz from nvidia-smi (None when unavailable)."""
    text = _run(["nvidia-smi", f"--id={device_index}", "--query-gpu=clocks.sm,clocks.max.sm,power.limit",
                 "--format=csv,noheader,nounits"])
    if not text:
        return None
    parts = [p.strip() for p in text.splitlines()[0].split(",")]
    keys = ("sm_clock_mhz", "max_sm_clock_mhz", "power_limit_w")
    return {key: value for key, value in zip(keys, parts)}


def git_commit():
    """The commit of the source tree the package or the working directory lives in, if any."""
    for where in (os.path.dirname(os.path.abspath(__file__)), os.getcwd()):
        commit = _run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where)
        if commit:
            dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where)
            return commit + ("-dirty" if dirty else "")
    return None


def collect(device_index=0):
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "sageattention": __version__,
        "git_commit": git_commit(),
    }
    try:
        lib = _library.load()
        info.update(library=lib.path, library_version=lib.version, library_archs=" ".join(lib.compiled_archs))
    except _library.LibraryNotFoundError as exc:
        info["library"] = f"not loaded: {exc}"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device_index)
        info.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), sm_count=props.multi_processor_count)
        clocks = gpu_clocks(device_index)
        if clocks:
            info.update(clocks)
    return info


def format_header(info):
    keys = ("gpu", "compute_capability", "sm_clock_mhz", "max_sm_clock_mhz", "power_limit_w", "torch",
            "cuda", "cudnn", "sageattention", "library_version", "library_archs", "git_commit")
    return "\n".join(f"  {key:<20} {info[key]}" for key in keys if info.get(key) is not None)
