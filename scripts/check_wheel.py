"""Checks a built sageattention wheel before anyone installs it.

    python3 scripts/check_wheel.py dist/sageattention-*.whl

What must hold, and why:
- Tag py3-none-<linux platform>: the library is loaded through ctypes, so the wheel must not claim
  a Python or torch ABI (one file for every Python >= 3.9 and every torch >= 2.3).
- Archive: only the package and its dist-info, libsageattn.so inside the package (where
  _library.library_path() looks), no byte code, no absolute or build-folder paths.
- The library loads without torch or a GPU and says which SASS targets it was built for
  (sageattn_compiled_archs); its NEEDED list has no CUDA runtime, torch or Python library (the
  CUDA runtime is static, and anything else would tie the wheel to one environment).
- Device code (with cuobjdump): SASS for exactly those targets; every unit that has SASS for a
  plain target also carries PTX of a plain target at least as new as the newest SASS, so GPUs
  newer than all targets JIT-compile it. An arch-specific PTX (compute_90a) would run nowhere.

Exit status 1 on any failed check. A check whose tool is missing (cuobjdump, readelf) is reported
as NOT CHECKED on its own line, never passed silently.
"""

import argparse
import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "sageattention"
LIBRARY = f"{PACKAGE}/libsageattn.so"
# NEEDED entries that would tie the wheel to one CUDA, torch or Python installation.
FORBIDDEN_NEEDED = re.compile(r"libcudart|libcuda\.so|libtorch|libc10|libpython")
WHEEL_NAME = re.compile(r"^sageattention-[^-]+-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


class Report:
    def __init__(self):
        self.failures = 0

    def ok(self, what):
        print(f"ok           {what}")

    def fail(self, what):
        self.failures += 1
        print(f"FAIL         {what}")

    def not_checked(self, what):
        print(f"NOT CHECKED  {what}")

    def expect(self, condition, what):
        (self.ok if condition else self.fail)(what)


def check_tag(report, wheel_path):
    match = WHEEL_NAME.match(os.path.basename(wheel_path))
    if not match:
        report.fail(f"wheel file name {os.path.basename(wheel_path)!r} is not name-version-py-abi-platform")
        return
    tag = f"{match['py']}-{match['abi']}-{match['plat']}"
    good = (match["py"] == "py3" and match["abi"] == "none"
            and re.fullmatch(r"(linux|manylinux_\d+_\d+)_x86_64", match["plat"]))
    report.expect(bool(good), f"tag {tag} (want py3-none-linux_x86_64 or py3-none-manylinux_X_Y_x86_64)")


def check_archive(report, names):
    dist_info = re.compile(rf"^{PACKAGE}-[^/]+\.dist-info/")
    strays = [n for n in names if not (n.startswith(PACKAGE + "/") or dist_info.match(n))]
    report.expect(not strays, f"only {PACKAGE}/ and its dist-info in the archive{': stray ' + str(strays) if strays else ''}")
    leaks = [n for n in names if n.startswith("/") or ".." in n.split("/")
             or re.search(r"(^|/)(build[^/]*|_skbuild|CMakeFiles)/", n)]
    report.expect(not leaks, f"no absolute or build-folder paths{': ' + str(leaks) if leaks else ''}")
    byte_code = [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    report.expect(not byte_code, f"no byte code{': ' + str(byte_code) if byte_code else ''}")
    report.expect(LIBRARY in names, f"{LIBRARY} inside the package")
    report.expect(f"{PACKAGE}/__init__.py" in names, f"{PACKAGE}/__init__.py present")


def library_archs(report, so_path):
    """The SASS targets the library reports, loaded without torch and without a GPU."""
    try:
        cdll = ctypes.CDLL(so_path)
    except OSError as exc:
        report.fail(f"the library loads with ctypes: {exc}")
        return None
    fn = cdll.sageattn_compiled_archs
    fn.restype, fn.argtypes = ctypes.c_char_p, []
    archs = fn().decode().split()
    report.expect(bool(archs), f"library reports SASS targets: {' '.join(archs) or 'none'}")
    return archs


def check_needed(report, so_path):
    readelf = shutil.which("readelf")
    if readelf is None:
        report.not_checked("NEEDED libraries (no readelf)")
        return
    dynamic = subprocess.run([readelf, "-d", so_path], check=True, capture_output=True, text=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    bad = [lib for lib in needed if FORBIDDEN_NEEDED.search(lib)]
    report.expect(not bad, f"NEEDED {' '.join(needed)}{' (forbidden: ' + ' '.join(bad) + ')' if bad else ''}")


def find_cuobjdump():
    candidates = [os.environ.get("CUOBJDUMP"), shutil.which("cuobjdump"), "/usr/local/cuda/bin/cuobjdump"]
    # The PyPI package nvidia-cuda-cuobjdump (scripts/install_deps.sh --wheel) ships the binary
    # inside the `nvidia` namespace package; machines with only nvcc have no cuobjdump otherwise.
    for entry in sys.path:
        candidates.extend(glob.glob(os.path.join(entry, "nvidia", "cu*", "bin", "cuobjdump")))
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def device_code(cuobjdump, so_path):
    """{unit: {"sass": set of "80"/"90a", "ptx": set}} from cuobjdump's listing."""
    listing = subprocess.run([cuobjdump, "--list-elf", "--list-ptx", so_path], check=True,
                             capture_output=True, text=True).stdout
    units = {}
    for kind, unit, arch in re.findall(r"^(ELF|PTX) file\s+\d+: (.+)\.sm_(\w+)\.(?:cubin|ptx)$", listing, re.M):
        units.setdefault(unit, {"sass": set(), "ptx": set()})["sass" if kind == "ELF" else "ptx"].add(arch)
    return units


def plain_number(arch):
    return int(re.match(r"\d+", arch).group())


def check_device_code(report, so_path, archs):
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        report.not_checked("device code (no cuobjdump: install it with `bash scripts/install_deps.sh --wheel`)")
        return
    units = device_code(cuobjdump, so_path)
    if not units:
        report.fail("cuobjdump lists no device code in the library")
        return
    sass = set().union(*(u["sass"] for u in units.values()))
    ptx = set().union(*(u["ptx"] for u in units.values()))
    report.expect(sass == set(archs), f"SASS {' '.join(sorted(sass, key=plain_number))} == the library's targets")
    specific_ptx = sorted(a for a in ptx if not a.isdigit())
    report.expect(not specific_ptx, f"PTX {' '.join('compute_' + a for a in sorted(ptx)) or 'none'} "
                                    f"is of plain targets only{' (not: ' + ' '.join(specific_ptx) + ')' if specific_ptx else ''}")
    newest = max(plain_number(a) for a in sass)
    portable = [name for name, u in units.items() if any(a.isdigit() for a in u["sass"])]
    uncovered = [name for name in portable
                 if not any(a.isdigit() and int(a) >= newest for a in units[name]["ptx"])]
    report.expect(not uncovered, f"every portable unit ({len(portable)}) has PTX >= compute_{newest} for newer GPUs"
                                 f"{': missing in ' + ' '.join(uncovered) if uncovered else ''}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel")
    wheel_path = parser.parse_args().wheel
    report = Report()
    check_tag(report, wheel_path)
    with zipfile.ZipFile(wheel_path) as archive, tempfile.TemporaryDirectory() as tmp:
        names = archive.namelist()
        check_archive(report, names)
        if LIBRARY in names:
            so_path = archive.extract(LIBRARY, tmp)
            archs = library_archs(report, so_path)
            check_needed(report, so_path)
            if archs:
                check_device_code(report, so_path, archs)
    size = os.path.getsize(wheel_path)
    print(f"{os.path.basename(wheel_path)}: {size / 2**20:.1f} MiB")
    if report.failures:
        print(f"{report.failures} check(s) failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
