"""MLPerf LoadGen as the load: its scenarios issue queries, a system under test made of a
runner's streams answers them.

The query sample library holds the seeded, preprocessed images; single-stream on one stream
is answered in LoadGen's own issuing thread (no hand-off to measure); otherwise the system
under test queues every sample LoadGen issues and one thread per stream takes them in
batches of the loaded batch, gathered into a buffer of its own (a partial batch is padded
with copies of its first image, since a compiled model may take one batch size only). In the
server scenario a batch waits up to `max_wait_ms` for more queued samples; in the others it
takes what is queued. The outputs of every sample answered are kept, one row per QSL image,
for the trust gate.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from levit_bench.runners import thread_use
from levit_bench.scenarios.settings import ScenarioError, ScenarioSettings
from levit_bench.scenarios.summary import parse_summary

SUMMARY, DETAIL = "mlperf_log_summary.txt", "mlperf_log_detail.txt"


def import_loadgen():
    try:
        import mlperf_loadgen
    except ImportError:
        raise ScenarioError("scenarios run under MLPerf LoadGen, which is not installed "
                            "(pip install 'levit-bench[scenarios]')") from None
    return mlperf_loadgen


@dataclass
class ScenarioResult:
    summary: dict  # parse_summary's fields
    log_dir: Path  # where LoadGen's logs are kept
    outputs: dict[int, np.ndarray] = field(default_factory=dict)  # QSL image index -> its output row
    batches: int = 0  # runner calls made
    latencies_s: list[float] = field(default_factory=list)  # each sample's, issued to answered, as the SUT saw it

    @property
    def logs(self) -> dict:
        return {"summary": str(self.log_dir / SUMMARY), "detail": str(self.log_dir / DETAIL)}


def _test_settings(lg, settings: ScenarioSettings, expected_qps: float | None):
    test = lg.TestSettings()
    test.scenario = {"single-stream": lg.TestScenario.SingleStream, "multi-stream": lg.TestScenario.MultiStream,
                     "server": lg.TestScenario.Server, "offline": lg.TestScenario.Offline}[settings.scenario]
    test.mode = lg.TestMode.PerformanceOnly
    test.min_duration_ms = int(settings.min_duration_s * 1000)
    test.min_query_count = settings.min_queries
    if settings.scenario == "server":
        test.server_target_qps = settings.target_qps
        test.server_target_latency_ns = int(settings.latency_bound_ms * 1e6)
    elif settings.scenario == "offline":
        rate = settings.target_qps or expected_qps
        if rate is None:
            raise ScenarioError("the offline scenario needs the rate to expect: --target-qps, or a measured one")
        test.offline_expected_qps = rate
    elif settings.scenario == "multi-stream":
        test.multi_stream_samples_per_query = settings.samples_per_query
    return test


class _System:
    """LoadGen's system under test: a queue of issued samples, a thread per stream answering."""

    def __init__(self, lg, calls: Sequence[Callable[[Any], Any]], images: np.ndarray, batch: int,
                 to_input: Callable[[np.ndarray], Any], to_numpy: Callable[[Any], np.ndarray], wait_s: float,
                 inline: bool = False):
        self.lg, self.calls, self.images, self.batch = lg, calls, images, batch
        self.to_input, self.to_numpy, self.wait_s = to_input, to_numpy, wait_s
        self.pending: queue.Queue = queue.Queue()
        self.outputs: dict[int, np.ndarray] = {}
        self.latencies_s: list[float] = []
        self.failures: list[BaseException] = []
        self.batches = 0
        self.lock = threading.Lock()
        # inline: answered in LoadGen's issuing thread, no hand-off (single-stream on one stream, which
        # issues the next query only once this one is answered)
        self.inline = inline
        self.buffers = [np.empty((batch,) + images.shape[1:], images.dtype) for _ in calls]  # a batch per stream
        self.threads = [] if inline else [
            threading.Thread(target=self._serve, args=(call, buffer), name=f"sut-stream-{i}", daemon=True)
            for i, (call, buffer) in enumerate(zip(calls, self.buffers))]

    def issue(self, samples) -> None:
        issued = time.perf_counter()
        if self.inline:
            self._answer(self.calls[0], [(sample, issued) for sample in samples], self.buffers[0])
            return
        for sample in samples:
            self.pending.put((sample, issued))

    def _take(self) -> list | None:
        """The next batch of issued samples (None: the test is over)."""
        first = self.pending.get()
        if first is None:
            self.pending.put(None)  # the other streams end too
            return None
        taken = [first]
        deadline = time.perf_counter() + self.wait_s
        while len(taken) < self.batch:
            try:
                left = deadline - time.perf_counter()
                sample = self.pending.get(timeout=left) if left > 0 else self.pending.get_nowait()
            except queue.Empty:
                break
            if sample is None:
                self.pending.put(None)  # the other streams end too
                break
            taken.append(sample)
        return taken

    def _serve(self, call: Callable[[Any], Any], buffer: np.ndarray) -> None:
        try:
            while (samples := self._take()) is not None:
                self._answer(call, samples, buffer)
        finally:
            thread_use.ending()

    def _rows(self, indices: list[int], buffer: np.ndarray) -> np.ndarray:
        """The batch's images: a view of the QSL where they lie in order (a batch of one always
        does), else gathered into the stream's buffer, padded with copies of the first; a fresh
        array per batch would be an allocation and a copy the runtime's own tools never make."""
        first = indices[0]
        if indices == list(range(first, first + self.batch)):
            return self.images[first:first + self.batch]
        np.take(self.images, indices + [first] * (self.batch - len(indices)), axis=0, out=buffer)
        return buffer

    def _answer(self, call: Callable[[Any], Any], samples: list, buffer: np.ndarray) -> None:
        # in index order: a batch of every QSL image (offline issues them as one shuffled order
        # repeated) is then the QSL itself, taken without a copy
        samples = sorted(samples, key=lambda taken: taken[0].index)
        indices = [s.index for s, _ in samples]
        rows = self._rows(indices, buffer)
        try:
            if not self.failures:
                outputs = self.to_numpy(call(self.to_input(rows)))
                with self.lock:
                    self.batches += 1
                    for i, index in enumerate(indices):
                        if index not in self.outputs:  # the first answer of each image is kept
                            self.outputs[index] = np.array(outputs[i], copy=True)
        except BaseException as e:  # the runtime's error: every sample is still answered
            self.failures.append(e)
        answered = time.perf_counter()
        with self.lock:
            self.latencies_s.extend(answered - issued for _, issued in samples)
        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(s.id, 0, 0) for s, _ in samples])

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.pending.put(None)
        for thread in self.threads:
            thread.join()


def run_scenario(calls: Sequence[Callable[[Any], Any]], images: np.ndarray, batch: int, settings: ScenarioSettings,
                 log_dir: Path | None = None, expected_qps: float | None = None,
                 to_input: Callable[[np.ndarray], Any] = lambda a: a,
                 to_numpy: Callable[[Any], np.ndarray] = np.asarray) -> ScenarioResult:
    """Run `settings`' scenario under LoadGen against `calls` (one inference function per stream,
    each taking a batch of `batch` images), the QSL holding `images`; its logs go to `log_dir`
    (a new temporary folder when None). A runtime error in a stream is raised once LoadGen ends."""
    lg = import_loadgen()
    test = _test_settings(lg, settings, expected_qps)
    log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="levit-bench-loadgen-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = lg.LogSettings()
    log.log_output.outdir = str(log_dir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False  # a JSON event per sample, written by a thread on the held cores: not free
    wait_s = settings.max_wait_ms / 1e3 if settings.scenario == "server" else 0.0
    system = _System(lg, calls, images, batch, to_input, to_numpy, wait_s,
                     inline=settings.scenario == "single-stream" and len(calls) == 1)
    count = len(images)
    sut = lg.ConstructSUT(system.issue, lambda: None)
    qsl = lg.ConstructQSL(count, count, lambda indices: None, lambda indices: None)  # the images are in memory
    try:
        with system:
            lg.StartTestWithLogSettings(sut, qsl, test, log)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    if system.failures:
        raise system.failures[0]
    summary = parse_summary((log_dir / SUMMARY).read_text())
    return ScenarioResult(summary, log_dir, system.outputs, system.batches, system.latencies_s)
