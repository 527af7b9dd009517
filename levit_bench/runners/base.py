"""One interface for every runtime: load (timed by the caller), call, describe.

Every runner is made the same way, `Runner(platform, options)`, where `options` is its
runtime's `Options` dataclass (precision, mode and work directory, plus what that runtime
alone takes, as TVM's device address), checked when it is made. A runner loads one
artifact and is then called on inputs it has already placed where it computes (`to_input`),
so that the timed call is the inference alone, as in the paper's speed_test.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from levit_bench import environment
from levit_bench.errors import LevitBenchError
from levit_bench.platforms import Platform
from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.measure import Protocol, Timings, measure, measure_streams
from levit_bench.runners.profiling import Profile


class RunnerError(LevitBenchError):
    pass


@dataclass(frozen=True)
class RuntimeDescription:
    runtime: str
    version: str
    device: str  # e.g. "CPUExecutionProvider", "CPU", "cpu", "cuda:0 (NVIDIA H100)"
    precision: str  # what was actually asked of (and, where it says, confirmed by) the runtime
    threads: int | None
    mode: str | None = None  # the mode it ran in (see levit_bench.runtimes)
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def as_flags(options: list[str]) -> str:
    """Option names as the command line spells them: `rpc_key` -> `--rpc-key`."""
    return ", ".join("--" + name.replace("_", "-") for name in options)


@dataclass(frozen=True)
class RunnerOptions:
    """What every runner is made with; a runtime that takes more subclasses it as its `Options`."""

    precision: str = "fp32"  # resolved already (runtimes.RuntimeSpec.resolve_precision)
    mode: str | None = None  # resolved already (runtimes.RuntimeSpec.resolve_mode)
    workdir: Path = Path(".")  # where a runtime keeps what it builds (TVM's libraries)
    streams: int = 1  # requests in flight at once, each on platform.threads / streams of the held cores

    @classmethod
    def extra_fields(cls) -> set[str]:
        """The options this runtime takes beyond the common ones."""
        return {f.name for f in fields(cls)} - {f.name for f in fields(RunnerOptions)}

    @classmethod
    def make(cls, runtime: str, precision: str, mode: str | None, workdir: Path,
             extra: dict | None = None, streams: int = 1) -> "RunnerOptions":
        """`runtime`'s options, refusing in one line an extra one it does not take."""
        extra = {k: v for k, v in (extra or {}).items() if v is not None}
        unknown = sorted(set(extra) - cls.extra_fields())
        if unknown:
            raise RunnerError(f"{as_flags(unknown)}: not an option of {runtime}")
        return cls(precision=precision, mode=mode, workdir=Path(workdir), streams=streams, **extra)


def check_precision(runtime: str, precision: str, artifact: Artifact) -> None:
    """Refuse to measure the wrong file for the precision asked for (the fp32 export for int8,
    a quantized one for any other): the record would name the wrong thing. bf16 and fp16 are
    the fp32 export run at a reduced precision."""
    if artifact.precision != ("int8" if precision == "int8" else "fp32"):
        raise RunnerError(f"{runtime} {precision} cannot run {artifact.onnx_path.name}, a {artifact.precision} "
                          "artifact" + (" (levit-bench quantize makes an int8 one)" if precision == "int8" else ""))


def quantization_details(artifact: Artifact) -> dict:
    """What a record keeps of how its int8 artifact was made (nothing for fp32)."""
    if artifact.precision != "int8":
        return {}
    return {"quantization": artifact.sidecar["quantization"], "fp32_onnx_sha256": artifact.sidecar["fp32"]["onnx_sha256"]}


class Runner(ABC):
    runtime: str
    Options: type[RunnerOptions] = RunnerOptions
    emulated: bool = False  # True: outputs are checked, timings are not a measurement of anything
    multi_stream: bool = False  # True: `stream_calls` gives `streams` functions that may run at once
    quantizes_onnx: bool = True  # its int8 runs the ONNX file's quantized twin (exporters/quantize.py)
    needs_pytorch_model: bool = False  # True: it runs the PyTorch model, so a user's ONNX file (--onnx) is not for it

    def __init__(self, platform: Platform, options: RunnerOptions):
        if not isinstance(options, self.Options):
            raise RunnerError(f"{type(self).__name__} takes {self.Options.__name__}, not {type(options).__name__}")
        if options.streams != 1 and not self.multi_stream:
            raise RunnerError(f"{self.runtime} runs one stream at a time, not --streams {options.streams}")
        self.platform = platform
        self.options = options
        self.precision = options.precision
        self.mode = options.mode
        self.streams = options.streams

    @property
    def stream_threads(self) -> int | None:
        """The threads each stream computes on (None: the runtime's default, every core)."""
        return self.platform.threads // self.streams if self.platform.threads else None

    @classmethod
    def sweep_modes(cls, model: str, workdir: Path) -> list[str | None]:
        """The modes a sweep measures when it names the runtime bare: the default one."""
        from levit_bench.runtimes import get_runtime

        return [get_runtime(cls.runtime).default_mode]

    @classmethod
    def runs_elsewhere(cls, options: RunnerOptions) -> bool:
        """True when these options run the model on another machine (its host is `device_host`)."""
        return False

    def device_host(self) -> environment.HostInfo | None:
        """The machine measured, when it is not this host (None: this host)."""
        return None

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

    def stream_calls(self) -> list[Callable[[Any], Any]]:
        """One inference function per stream, each safe to call while the others run (each from a
        thread of its own, on its share of the held cores); a runner with `multi_stream` makes
        `streams` of them when it loads. The default: one stream, this runner."""
        return [self]

    def measure(self, inputs: Any, protocol: Protocol) -> Timings:
        """Time calls on `inputs` under `protocol` (wall clock here, by default); with several
        streams, every stream's requests at once (`measure.measure_streams`)."""
        if self.streams == 1:
            return measure(lambda: self(inputs), protocol)
        return measure_streams([functools.partial(call, inputs) for call in self.stream_calls()], protocol)

    def profile(self, inputs: Any, protocol: Protocol) -> Profile:
        """The runtime's own per-kernel times over the protocol's calls (`runners/profiling.py`)."""
        raise RunnerError(f"{self.runtime} cannot be profiled by levit-bench")

    def close(self) -> None:
        """Undo every process-wide setting the runner made (thread counts, environment)."""

    @abstractmethod
    def describe(self) -> RuntimeDescription:
        ...
