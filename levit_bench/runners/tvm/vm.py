"""The Relax VM that runs a compiled library: here, or on a device behind RPC."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from levit_bench.runners.tvm.api import import_tvm


class LocalVm:
    """The Relax VM on this host's CPU."""

    def __init__(self, library: Path, threads: int | None = None):
        tvm = import_tvm()
        from tvm import relax

        self.tvm = tvm
        self.device = tvm.cpu()
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), self.device)
        self.threads_asked = threads
        self._configure_pool()

    def _configure_pool(self) -> None:
        """Size the calling thread's pool (TVM_NUM_THREADS is read when a pool starts: one already
        running is resized)."""
        if self.threads_asked:
            self.tvm.get_global_func("runtime.config_threadpool")(1, self.threads_asked)

    def in_any_thread(self):
        """This VM as a function any thread may call: a thread's first call sizes its own pool."""
        configured = threading.local()

        def call(tensor):
            if not getattr(configured, "done", False):
                self._configure_pool()
                configured.done = True
            return self(tensor)

        return call

    def threads(self) -> int:
        """The threads TVM's pool runs the kernels on, as the runtime reports them."""
        return int(self.tvm.get_global_func("runtime.NumThreads")())

    def tensor(self, array: np.ndarray):
        return self.tvm.runtime.tensor(array, device=self.device)

    def __call__(self, tensor):
        return self.vm["main"](tensor)

    @contextlib.contextmanager
    def instrumented(self) -> Iterator[list[tuple[str, float]]]:
        """While open, every function the VM calls is appended to the yielded list, in order, as
        (symbol, seconds), timed by the VM's instrument hook (called before and after each call)."""
        events: list[tuple[str, float]] = []
        started = 0.0

        def instrument(function, symbol, before_run, result, *arguments) -> int:
            nonlocal started
            now = time.perf_counter()
            if before_run:
                started = now
            else:
                events.append((symbol, now - started))
            return 0  # VMInstrumentReturnKind.NO_OP: run on

        self.vm.set_instrument(instrument)
        try:
            yield events
        finally:
            self.vm.set_instrument(None)


class RemoteVm:
    """The Relax VM on a device behind RPC: the library is uploaded, loaded and run there."""

    def __init__(self, session, library: Path):
        tvm = import_tvm()
        from tvm import relax

        self.tvm = tvm
        self.session = session
        session.upload(str(library))
        self.device = session.cpu()
        self.vm = relax.VirtualMachine(session.load_module(library.name), self.device)

    def tensor(self, array: np.ndarray):
        return self.tvm.runtime.tensor(array, device=self.device)

    def __call__(self, tensor):
        return self.vm["main"](tensor)

    def time_calls(self, tensor, calls: int) -> list[float]:
        """`calls` timings (seconds) measured on the device by the VM's time evaluator."""
        self.vm.set_input("main", tensor)
        evaluator = self.vm.time_evaluator("invoke_stateful", self.device, number=1, repeat=calls)
        return [float(t) for t in evaluator("main").results]

    def download(self, path: str) -> str:
        """A text file of the device ('' when it cannot be read), for its fingerprint."""
        try:
            return bytes(self.session.download(path)).decode(errors="replace")
        except Exception:  # noqa: BLE001 - a missing file is simply not described
            return ""

    def remote_function(self, name: str):
        try:
            return self.session.get_function(name)
        except Exception:  # noqa: BLE001 - a runtime-only device lacks compiler functions
            return None


def to_numpy(output) -> np.ndarray:
    if hasattr(output, "numpy"):
        return output.numpy()
    return output[0].numpy()  # a tuple of one tensor
