"""True Cloud's Resource Management Service: the node agent every node runs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("truecloud")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
