# Kept equal to pyproject.toml's version and to the C library's sageattn_version() (a test checks
# both), so `sageattention.__version__` works without loading the library.
__version__ = "0.1.0"
