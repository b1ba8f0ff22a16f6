"""Finding, loading and calling ``libsageattn.so`` through ctypes.

Why ctypes and not a torch extension: the binary then has no torch or Python ABI in it, so one build
serves every torch >= 2.3 and every Python (design.md section 2).

Loading is lazy (importing the package must work on machines without the library or without a GPU)
and guarded by a lock, so two threads that make their first call at once load it once.
"""

import ctypes
import os
import struct
import threading

from . import _abi
from ._abi import ABI_VERSION, SageattnParams, Status

LIBRARY_ENV_VAR = "SAGEATTN_LIBRARY"
LIBRARY_FILENAME = "libsageattn.so"
REASON_CAPACITY = 1024

_BUILD_HINT = (
    "Build it from the repository root with `pip install --no-build-isolation .` (installs it inside "
    "the package), or with `cmake -S . -B build -G Ninja && cmake --build build` and then point "
    f"{LIBRARY_ENV_VAR} at build/{LIBRARY_FILENAME}."
)


class LibraryNotFoundError(ImportError, RuntimeError):
    """The shared library is missing or cannot be loaded.

    Both an ImportError (it is a missing piece of the installation) and a RuntimeError (it surfaces
    at the first call, not at import), so callers may catch either.
    """


class AbiMismatchError(LibraryNotFoundError):
    """The library was built from a different version of the C header than this Python code."""


def library_path():
    """The path that will be loaded: $SAGEATTN_LIBRARY if set, else the copy inside the package."""
    override = os.environ.get(LIBRARY_ENV_VAR)
    if override:
        return os.path.abspath(os.path.expanduser(override))
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_FILENAME)


# --- status -> exception -------------------------------------------------------------------------

_STATUS_EXCEPTIONS = {
    Status.INVALID_ARGUMENT: ValueError,
    Status.UNSUPPORTED: NotImplementedError,
    Status.WORKSPACE_TOO_SMALL: RuntimeError,
    Status.CUDA_ERROR: RuntimeError,
}

_tls = threading.local()


def reason_buffer():
    """A per-thread buffer for the library's reason text (allocating one per call costs time)."""
    buf = getattr(_tls, "reason", None)
    if buf is None:
        buf = _tls.reason = ctypes.create_string_buffer(REASON_CAPACITY)
    return buf


def status_error(status, function_name, reason):
    """The exception for a non-OK status; `reason` is the buffer the library wrote into (or None)."""
    try:
        status = Status(status)
        exc_type = _STATUS_EXCEPTIONS[status]
        status_name = status.name
    except (ValueError, KeyError):
        exc_type, status_name = RuntimeError, f"unknown status {int(status)}"
    text = reason.value.decode("utf-8", "replace") if reason is not None else ""
    return exc_type(f"{function_name} failed ({status_name}): {text or 'no reason given'}")


def call(function_name, *args):
    """Calls a status-returning entry point whose last two arguments are (reason, capacity), and
    raises the mapped exception on any non-OK status."""
    fn = getattr(load(), function_name)
    reason = reason_buffer()
    reason.value = b""
    status = fn(*args, reason, REASON_CAPACITY)
    if status != Status.OK:
        raise status_error(status, function_name, reason)


# --- fast packing of sageattn_params -------------------------------------------------------------

_STRUCT_CODES = {
    ctypes.c_uint32: "I",
    ctypes.c_int32: "i",
    ctypes.c_int64: "q",
    ctypes.c_float: "f",
    ctypes.c_double: "d",
    ctypes.c_void_p: "P",
}


def _flat_format(ctype):
    codes = []
    for _, field_type in ctype._fields_:
        if issubclass(field_type, ctypes.Structure):
            codes.extend(_flat_format(field_type))
        else:
            codes.append(_STRUCT_CODES[field_type])
    return codes


def _make_params_packer():
    """A struct.Struct whose pack_into writes a whole sageattn_params in one C call.

    Setting ~30 ctypes fields one by one costs several microseconds per attention call; one
    pack_into costs well under one. Native ('@') alignment reproduces the C layout of the flattened
    struct (every nested struct starts with a pointer, so nesting adds no padding); '0P' adds the
    trailing padding. The layout is verified against the ctypes mirror before use.
    """
    packer = struct.Struct("@" + "".join(_flat_format(SageattnParams)) + "0P")
    if packer.size != ctypes.sizeof(SageattnParams):
        raise AssertionError("sageattn_params packer size does not match the ctypes mirror")
    values = list(range(1, len(_flat_format(SageattnParams)) + 1))
    probe = SageattnParams()
    packer.pack_into(probe, 0, *values)
    read_back = []
    for name, field_type in SageattnParams._fields_:
        value = getattr(probe, name)
        if issubclass(field_type, ctypes.Structure):
            read_back.extend(getattr(value, sub) for sub, _ in field_type._fields_)
        else:
            read_back.append(value)
    if [int(x) for x in read_back] != values:
        raise AssertionError("sageattn_params packer field order does not match the ctypes mirror")
    return packer


PARAMS_PACKER = _make_params_packer()


# --- loading --------------------------------------------------------------------------------------


class Library:
    """The loaded library: every entry point bound with its exact argtypes/restype."""

    def __init__(self, path):
        try:
            self.cdll = ctypes.CDLL(path)
        except OSError as exc:
            raise LibraryNotFoundError(f"cannot load {path}: {exc}. {_BUILD_HINT}") from exc
        self.path = path
        # The ABI version is read through a function that passes no struct, before anything that
        # returns sageattn_params by value: a library with a larger struct would otherwise write past
        # ctypes' return buffer before the mismatch could be noticed.
        try:
            abi_version = self.cdll.sageattn_abi_version
        except AttributeError as exc:
            raise AbiMismatchError(
                f"{path} does not export sageattn_abi_version: it predates ABI version checks or is "
                f"not a libsageattn build. {_BUILD_HINT}"
            ) from exc
        abi_version.restype, abi_version.argtypes = ctypes.c_uint32, []
        abi = abi_version()
        if abi != ABI_VERSION:
            raise AbiMismatchError(
                f"{path} implements C ABI version {abi}, but this Python package expects version "
                f"{ABI_VERSION}: rebuild the library from the same source tree. {_BUILD_HINT}"
            )
        for name, (restype, argtypes) in _abi.FUNCTIONS.items():
            try:
                fn = getattr(self.cdll, name)
            except AttributeError as exc:
                raise LibraryNotFoundError(
                    f"{path} does not export {name}: it is not a libsageattn build matching this "
                    f"package. {_BUILD_HINT}"
                ) from exc
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        if self.sageattn_default_params().abi_version != ABI_VERSION:
            raise AbiMismatchError(f"{path}: sageattn_default_params disagrees with sageattn_abi_version")
        self.version = self.sageattn_version().decode()
        self.compiled_archs = self.sageattn_compiled_archs().decode().split()


_lock = threading.Lock()
_library = None


def load():
    """The library, loaded on first use (thread-safe). Raises LibraryNotFoundError."""
    global _library
    lib = _library
    if lib is not None:
        return lib
    with _lock:
        if _library is None:
            path = library_path()
            if not os.path.exists(path):
                where = (
                    f"{LIBRARY_ENV_VAR}={os.environ[LIBRARY_ENV_VAR]!r} points to a missing file"
                    if os.environ.get(LIBRARY_ENV_VAR)
                    else f"{LIBRARY_FILENAME} is not installed next to the package ({path})"
                )
                raise LibraryNotFoundError(f"sageattention: {where}. {_BUILD_HINT}")
            _library = Library(path)
        return _library


def is_available():
    """True when the library can be loaded (does not raise)."""
    try:
        load()
        return True
    except LibraryNotFoundError:
        return False
