"""radmesh: ask a CT scan a question in plain words."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("radmesh")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
