"""The one door to Apache TVM: its version, checked, and the import.

Every module of this package is written against the Relax-era API of apache-tvm 0.27
(`tvm.relax.frontend.onnx`, `tvm.compile`, targets as JSON dicts, `tvm.runtime.tensor`,
MetaSchedule under `tvm.s_tir`); those names move between releases, so the version range is
checked when TVM is imported, and TVM is imported only when a TVM runner, build or tuning is made.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import metadata

from levit_bench.runners.base import RunnerError

SUPPORTED = ((0, 27), (0, 28))  # [low, high): the API this package is written for


def tvm_version() -> str:
    try:
        return metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:
        raise RunnerError("apache-tvm is not installed (pip install 'levit-bench[tvm]')") from None


def import_tvm():
    """`tvm`, after checking that the installed release has the API this module uses."""
    version = tvm_version()
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    if not SUPPORTED[0] <= major_minor < SUPPORTED[1]:
        raise RunnerError(
            f"apache-tvm {version} is installed; levit-bench is written for "
            f">={'.'.join(map(str, SUPPORTED[0]))},<{'.'.join(map(str, SUPPORTED[1]))}"
        )
    import tvm
    import tvm.relax  # noqa: F401 - registers the Relax passes and the VM

    return tvm


@contextlib.contextmanager
def thread_count(threads: int | None) -> Iterator[None]:
    """TVM_NUM_THREADS = `threads` inside (None: left as it is), restored on the way out.

    TVM's thread pool reads it once, when it starts: set it before the first parallel call.
    """
    saved = os.environ.get("TVM_NUM_THREADS")
    if threads:
        os.environ["TVM_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TVM_NUM_THREADS", None)
        else:
            os.environ["TVM_NUM_THREADS"] = saved
