"""Command line: `python -m sageattention {demo,bench,info}`."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sageattention",
                                     description="8-bit attention kernels: demo, benchmark, build info.")
    commands = parser.add_subparsers(dest="command", required=True)

    from . import cli_bench, cli_demo

    demo = commands.add_parser("demo", help="one realistic call: timing and accuracy vs float64 "
                                            "(CPU reference emulation without a GPU)")
    cli_demo.add_arguments(demo)
    bench = commands.add_parser("bench", help="speed sweep vs torch SDPA (flash, cuDNN); needs a GPU")
    cli_bench.add_arguments(bench)
    commands.add_parser("info", help="versions, library path and compiled architectures")

    args = parser.parse_args(argv)
    if args.command == "demo":
        return cli_demo.run(args)
    if args.command == "bench":
        return cli_bench.run(args)
    return _info()


def _info():
    from . import _library
    from ._version import __version__

    print(f"sageattention {__version__}")
    try:
        lib = _library.load()
    except _library.LibraryNotFoundError as exc:
        print(f"library: {exc}")
        return 1
    print(f"library {lib.version}: {lib.path}")
    print(f"kernels compiled for: sm {' '.join(lib.compiled_archs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
