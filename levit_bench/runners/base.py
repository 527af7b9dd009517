"""One interface for every runtime: load (timed by the caller), call, describe.

A runner is built for one platform and precision, loads one artifact, and then is called on
inputs it has already placed where it computes (`to_input`), so that the timed call is the
inference alone, as in the paper's speed_test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from levit_bench.errors import LevitBenchError
from levit_bench.platforms import Platform
from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.measure import Protocol, Timings, measure


class RunnerError(LevitBenchError):
    pass


@dataclass(frozen=True)
class RuntimeDescription:
    runtime: str
    version: str
    device: str  # e.g. "CPUExecutionProvider", "CPU", "cpu", "cuda:0 (NVIDIA H100)"
    precision: str  # what was actually asked of (and, where it says, confirmed by) the runtime
    threads: int | None
    mode: str | None = None  # torch: traced | eager | unfused
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class Runner(ABC):
    runtime: str

    def __init__(self, platform: Platform, precision: str | None = None, mode: str | None = None):
        self.platform = platform
        self.precision = self.effective_precision(platform, precision)
        self.mode = self.effective_mode(mode)

    @classmethod
    def effective_precision(cls, platform: Platform, requested: str | None) -> str:
        """The precision a request for `requested` (None: the platform's) runs in."""
        return requested or platform.default_precision

    @classmethod
    def effective_mode(cls, requested: str | None) -> str | None:
        """The mode a request for `requested` (None: the runtime's default) runs in."""
        return requested

    @abstractmethod
    def load(self, artifact: Artifact, batch: int) -> None:
        """Load or compile `artifact` for batches of `batch`; the caller times this."""

    def to_input(self, images: np.ndarray) -> Any:
        """Place a batch where the runtime computes (the default: as it is)."""
        return images

    @abstractmethod
    def __call__(self, inputs: Any) -> Any:
        """One inference, finished (synchronised) when it returns."""

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.asarray(outputs)

    def measure(self, inputs: Any, protocol: Protocol) -> Timings:
        """Time calls on `inputs` under `protocol` (wall clock here, by default)."""
        return measure(lambda: self(inputs), protocol)

    def close(self) -> None:
        """Undo any process-wide setting made in `load` (thread counts)."""

    @abstractmethod
    def describe(self) -> RuntimeDescription:
        ...
