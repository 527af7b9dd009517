"""levit-bench: the LeViT speed-accuracy study as a tool."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("levit-bench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
