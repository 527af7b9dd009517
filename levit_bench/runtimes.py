"""The runtimes levit-bench measures: one table of their names, modes, precisions and packages.

Plain data that every layer reads: the runners make a runtime's runner from its `runner`
reference (imported only then, so a missing runtime is one clear error), the environment
records its package's version, the sweep expands its modes, reports order and mark points by
it. `register_runtime` is the public way to add one (a plugin, or a test); a runtime
registered in a process is registered in the sweep's worker processes too.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType

from levit_bench.errors import LevitBenchError


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    runner: str  # "package.module:Class", a `runners.base.Runner` subclass
    package: str | None  # the distribution whose version every record keeps
    precisions: tuple[str, ...] = ("fp32",)  # what it may be asked for (a runner refuses per device)
    modes: tuple[str, ...] = ()  # programs of the same runtime measured as separate variants
    default_mode: str | None = None  # None with modes: the runner decides when it loads (see its docs)
    plotted_modes: tuple[str, ...] = ()  # modes that are a variant of their own in reports (not the default's)
    swept_modes: tuple[str, ...] = ()  # modes a sweep of the default runtimes measures beside the bare runtime
    marker: str = "o"  # its matplotlib marker in figures
    mode_markers: Mapping[str, str] = field(default_factory=dict)
    precision_markers: Mapping[str, str] = field(default_factory=dict)  # a reduced precision's own marker
    short: str | None = None  # its name where a table is too narrow for the whole one (None: the name)
    builtin: bool = False

    def __post_init__(self):
        if ":" not in self.runner:
            raise LevitBenchError(f"runtime {self.name}: runner must be 'module:Class', not {self.runner!r}")
        if self.default_mode is not None and self.default_mode not in self.modes:
            raise LevitBenchError(f"runtime {self.name}: default mode {self.default_mode} is not one of its modes")
        if not set(self.swept_modes) <= set(self.modes):
            raise LevitBenchError(f"runtime {self.name}: swept modes {self.swept_modes} are not all its modes")

    def resolve_mode(self, requested: str | None) -> str | None:
        """The mode a request for `requested` (None: the default) runs in; an unknown one raises."""
        if requested is None:
            return self.default_mode
        if not self.modes:
            having = ", ".join(r.name for r in _RUNTIMES.values() if r.modes)
            raise LevitBenchError(f"--mode applies to {having}, not {self.name}")
        if requested not in self.modes:
            raise LevitBenchError(f"{self.name} modes are {', '.join(self.modes)}, not {requested}")
        return requested

    def resolve_precision(self, requested: str | None, platform_default: str) -> str:
        """`requested`, or the platform's precision when this runtime offers it, else fp32."""
        if requested is not None:
            return requested
        return platform_default if platform_default in self.precisions else "fp32"

    def variant(self, mode: str | None) -> str:
        """`torch`, `torch:eager`, `tvm:tuned`: the name a record's runtime and mode show under."""
        return f"{self.name}:{mode}" if mode in self.plotted_modes else self.name

    def runner_class(self) -> type:
        module, _, name = self.runner.partition(":")
        return getattr(importlib.import_module(module), name)

    def as_dict(self) -> dict:
        return {**asdict(self), "mode_markers": dict(self.mode_markers),
                "precision_markers": dict(self.precision_markers)}


_RUNTIMES: dict[str, RuntimeSpec] = {}
RUNTIMES: Mapping[str, RuntimeSpec] = MappingProxyType(_RUNTIMES)


def register_runtime(spec: RuntimeSpec | dict, replace: bool = False) -> RuntimeSpec:
    """Add a runtime to the table (a `RuntimeSpec`, or its `as_dict()`); its name must be new."""
    if isinstance(spec, dict):
        spec = RuntimeSpec(**{**spec, "precisions": tuple(spec["precisions"]), "modes": tuple(spec["modes"]),
                              "plotted_modes": tuple(spec["plotted_modes"]),
                              "swept_modes": tuple(spec.get("swept_modes", ()))})
    if spec.name in _RUNTIMES and not replace:
        raise LevitBenchError(f"a runtime named {spec.name} is already registered")
    _RUNTIMES[spec.name] = spec
    return spec


def unregister_runtime(name: str) -> None:
    if name in _RUNTIMES and _RUNTIMES[name].builtin:
        raise LevitBenchError(f"{name} is built in and cannot be unregistered")
    _RUNTIMES.pop(name, None)


def get_runtime(name: str) -> RuntimeSpec:
    if name not in _RUNTIMES:
        raise LevitBenchError(f"unknown runtime {name!r}; known runtimes: {', '.join(_RUNTIMES)}")
    return _RUNTIMES[name]


def variant_name(runtime: str, mode: str | None) -> str:
    """`torch`, `torch:eager`, `tvm:tuned`: how a record's runtime and mode are named in reports
    and `compare` (an unregistered runtime keeps any mode it names)."""
    spec = _RUNTIMES.get(runtime)
    if spec is not None:
        return spec.variant(mode)
    return f"{runtime}:{mode}" if mode else runtime


def short_label(runtime: str, mode: str | None) -> str:
    """`ort`, `ov`, `torch:traced`: a record's runtime and mode with the runtime's short name, as
    every table too narrow for the whole names shows them."""
    spec = _RUNTIMES.get(runtime)
    name = spec.short if spec is not None and spec.short else runtime
    return f"{name}:{mode}" if mode else name


def short_names_legend(runtimes: Iterable[str]) -> str | None:
    """`ort = onnxruntime, ov = openvino`: the short names `short_label` gives `runtimes`."""
    pairs = {_RUNTIMES[r].short: r for r in runtimes if r in _RUNTIMES and _RUNTIMES[r].short}
    return ", ".join(f"{short} = {name}" for short, name in pairs.items()) or None


def all_precisions() -> list[str]:
    """Every precision some registered runtime offers, in the table's order."""
    return list(dict.fromkeys(p for spec in _RUNTIMES.values() for p in spec.precisions))


def default_sweep() -> list[str]:
    """What a sweep measures when no runtimes are named: every runtime bare, and beside it each of
    its `swept_modes` (`torch:compiled`)."""
    return [entry for spec in _RUNTIMES.values() for entry in (spec.name, *(f"{spec.name}:{m}" for m in spec.swept_modes))]


COMPILE_MODES = {"default": "compiled", "max-autotune": "compiled-max-autotune"}  # --compile-mode -> torch mode


def with_compile_mode(runtime: str, mode: str | None, compile_mode: str | None) -> str | None:
    """The torch mode `--compile-mode` makes of `runtime` and `mode` (a bare torch: compiled); it
    applies to torch's compiled modes only."""
    if compile_mode is None:
        return mode
    if compile_mode not in COMPILE_MODES:
        raise LevitBenchError(f"--compile-mode is {' or '.join(COMPILE_MODES)}, not {compile_mode}")
    if runtime != "torch" or mode not in (None, *COMPILE_MODES.values()):
        shown = f"{runtime}:{mode}" if mode else runtime
        raise LevitBenchError(f"--compile-mode applies to torch:compiled (Inductor), not {shown}")
    return COMPILE_MODES[compile_mode]


def added_runtimes() -> list[dict]:
    """The runtimes registered beyond the built-in ones, as data a worker process registers again."""
    return [spec.as_dict() for spec in _RUNTIMES.values() if not spec.builtin]


for _spec in (
    # compiled: AOTInductor with freezing (torch.compile ahead of time); compiled-max-autotune: its
    # GEMM templates benchmarked too (--compile-mode max-autotune)
    RuntimeSpec("torch", "levit_bench.runners.torch_runner:TorchRunner", "torch", precisions=("fp32", "mixed"),
                modes=("traced", "eager", "unfused", "compiled", "compiled-max-autotune"),
                default_mode="traced",  # traced: the paper's speed_test
                plotted_modes=("eager", "unfused", "compiled", "compiled-max-autotune"), swept_modes=("compiled",),
                marker="o",
                mode_markers={"compiled": "p", "compiled-max-autotune": "8"}, builtin=True),
    # int8: the artifact quantized for that runtime (exporters/quantize.py)
    RuntimeSpec("onnxruntime", "levit_bench.runners.onnxruntime_runner:OnnxRuntimeRunner", "onnxruntime",
                precisions=("fp32", "int8"), marker="s", precision_markers={"int8": "X"}, short="ort", builtin=True),
    RuntimeSpec("openvino", "levit_bench.runners.openvino_runner:OpenVinoRunner", "openvino",
                precisions=("fp32", "bf16", "fp16", "int8"), marker="^",
                precision_markers={"int8": "P", "bf16": "h", "fp16": "H"}, short="ov", builtin=True),
    # tvm's default mode is decided at load: tuned when the work directory has a database
    RuntimeSpec("tvm", "levit_bench.runners.tvm.runner:TvmRunner", "apache-tvm", modes=("tuned", "untuned"),
                plotted_modes=("tuned", "untuned"), marker="D", mode_markers={"tuned": "D", "untuned": "d"},
                builtin=True),
    # the fused model lowered by torch.export to ExecuTorch's XNNPACK delegate (int8: PT2E-quantized)
    RuntimeSpec("executorch", "levit_bench.runners.executorch_runner:ExecuTorchRunner", "executorch",
                precisions=("fp32", "int8"), marker="v", precision_markers={"int8": "*"}, short="et", builtin=True),
):
    register_runtime(_spec)
