"""Named platforms: a measurement protocol (cores, batch, precision, streams) plus a host check.

Plain data that every layer reads (runners measure on them, reports label by them); holding
a platform's cores while measuring is the runners' (`runners.core_locks.pinned`).

`xeon` and `arm` are the paper's single-thread CPU settings; any host of the right
architecture may run them, and the record keeps the real CPU model (an AMD EPYC measured as
`xeon` stays an AMD EPYC in every report). A user's own platforms (a TOML file, see
`load_platforms`) are named settings on top of one of these: `base` says which host check and
which compiler target they take.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from levit_bench.environment import HostInfo
from levit_bench.errors import LevitBenchError
from levit_bench.runtimes import all_precisions

X86 = ("x86_64", "amd64")
ARM = ("aarch64", "arm64")
GPU_MAX_BATCH = 2048
PLATFORMS_FILE = "platforms.toml"  # a user's platforms, in the work directory


class PlatformError(LevitBenchError):
    pass


@dataclass(frozen=True)
class Platform:
    name: str
    description: str
    device: str  # "cpu" or "cuda"
    # the cores a measurement holds, one thread each; None: every core (the GPU's); "all" (a user's
    # platform): every physical core this process may use, counted when a run holds them
    threads: int | str | None
    default_batch: int | None  # None: the largest power of two that fits (GPU)
    default_precision: str  # "fp32", or "mixed" (autocast) on the GPU
    base: str = ""  # the built-in platform this one is settings of ("" for a built-in: itself)
    streams: int = 1  # requests in flight at once on the held cores
    source: str = "built-in"  # where it was defined: built-in, or the TOML file
    # a user's: the LoadGen scenario its runs take unless told otherwise, as JSON
    # {"scenario": name, option: value, ...} (options named as api.run's: target_qps, min_duration, ...)
    scenario: str | None = None

    def __post_init__(self):
        if not self.base:
            object.__setattr__(self, "base", self.name)

    def check_host(self, host: HostInfo, runtime: str) -> None:
        """Refuse, in one line, a host this platform cannot be measured on."""
        if self.base == "xeon" and host.architecture not in X86:
            raise PlatformError(f"platform {self.name} needs an x86-64 CPU; this host is {host.architecture}")
        if self.base == "arm" and (host.architecture not in ARM or "neon" not in host.isa):
            hint = {"tvm": " (give --rpc HOST:PORT of a device's TVM rpc_server, or --rpc emulator)",
                    "executorch": " (--rpc emulator checks its .pte on ExecuTorch's aarch64 runtime under QEMU)"}.get(
                runtime, " (`--runtime tvm` cross-compiles for ARM and runs it over RPC)")
            raise PlatformError(
                f"platform {self.name} needs an aarch64 CPU with NEON to run {runtime}; "
                f"this host is {host.architecture} ({host.cpu_model}){hint}"
            )
        if self.base == "gpu" and not host.gpu:
            raise PlatformError(f"platform {self.name} needs a CUDA GPU; torch sees none on this host")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


BUILT_IN: Mapping[str, Platform] = MappingProxyType({
    "xeon": Platform("xeon", "x86-64 server CPU, one pinned thread (the paper's Intel column)",
                     "cpu", threads=1, default_batch=16, default_precision="fp32"),
    "arm": Platform("arm", "aarch64 NEON CPU, one pinned thread (the paper's Graviton2 column)",
                    "cpu", threads=1, default_batch=16, default_precision="fp32"),
    "gpu": Platform("gpu", "one CUDA GPU, mixed precision, the largest power-of-two batch that fits",
                    "cuda", threads=None, default_batch=None, default_precision="mixed"),
})
ALIASES = {"graviton": "arm", "intel": "xeon", "cuda": "gpu"}
_ADDED: dict[str, Platform] = {}


def get_platform(name: str) -> Platform:
    key = ALIASES.get(name.lower(), name.lower())
    if key in BUILT_IN:
        return BUILT_IN[key]
    if name in _ADDED:
        return _ADDED[name]
    known = ", ".join([*BUILT_IN, *(f"{a} (= {t})" for a, t in ALIASES.items()), *_ADDED])
    raise PlatformError(f"unknown platform {name!r}; known platforms: {known}"
                        + ("" if _ADDED else f" (your own go in <workdir>/{PLATFORMS_FILE} or --platforms FILE)"))


def all_platforms() -> list[Platform]:
    """The built-in platforms, then the user's registered in this process."""
    return [*BUILT_IN.values(), *_ADDED.values()]


def register_platform(platform: Platform | dict) -> Platform:
    """Add a user's platform (a `Platform` or its `as_dict()`); a built-in name or alias is refused."""
    if isinstance(platform, dict):
        platform = Platform(**platform)
    if platform.name.lower() in BUILT_IN or platform.name.lower() in ALIASES:
        raise PlatformError(f"{platform.source}: {platform.name} is a built-in platform; give yours another name")
    _ADDED[platform.name] = platform
    return platform


def added_platforms() -> list[dict]:
    """The user's platforms registered in this process, as data a worker process registers again."""
    return [p.as_dict() for p in _ADDED.values()]


def positive_int(value: object) -> bool:
    """An integer >= 1 (True is not one): what cores, batch and streams must be, however given."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# What a TOML entry may say: key -> (what it must be, its check)

_KEYS = {
    "base": (f"one of {', '.join(BUILT_IN)}", lambda v: v in BUILT_IN),
    "description": ("text", lambda v: isinstance(v, str)),
    "cores": ("a positive integer or \"all\"", lambda v: v == "all" or positive_int(v)),
    "batch": ("a positive integer", positive_int),
    "streams": ("a positive integer", positive_int),
    "precision": ("a precision some runtime offers", lambda v: v in all_precisions()),
    "scenario": ("a scenario's name, or a table {name = ..., its options}", lambda v: isinstance(v, (str, dict))),
}
SCENARIO_OPTIONS = ("target_qps", "latency_bound_ms", "samples_per_query", "min_duration", "min_queries",
                    "max_wait_ms")


def _scenario(value: str | dict, where: str) -> str:
    """A TOML entry's scenario, checked as a run would check it, as the Platform keeps it (JSON)."""
    from levit_bench.scenarios.settings import ScenarioSettings

    options = {"name": value} if isinstance(value, str) else dict(value)
    unknown = sorted(set(options) - {"name", *SCENARIO_OPTIONS})
    if unknown or "name" not in options:
        raise PlatformError(f"{where}: " + (f"unknown key {unknown[0]!r} (known: name, {', '.join(SCENARIO_OPTIONS)})"
                                            if unknown else "needs name = the scenario's"))
    name = options.pop("name")
    try:
        ScenarioSettings(name, **{"min_duration_s" if k == "min_duration" else k: v for k, v in options.items()})
    except LevitBenchError as e:
        raise PlatformError(f"{where}: {e}") from None
    return json.dumps({"scenario": name, **options}, sort_keys=True)


def parse_platforms(text: str, source: str) -> list[Platform]:
    """The platforms a TOML text defines, each a table `[platforms.NAME]` with `base` and any of
    cores, batch, streams, precision, scenario, description; a PlatformError naming `source` and
    the key otherwise. `cores = "all"` is kept as said and resolved when a run holds them."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PlatformError(f"{source}: not TOML ({e})") from None
    unknown = sorted(set(data) - {"platforms"})
    if unknown:
        raise PlatformError(f"{source}: unknown key {unknown[0]!r} (platforms are tables [platforms.NAME])")
    tables = data.get("platforms", {})
    if not isinstance(tables, dict):
        raise PlatformError(f"{source}: platforms must be tables [platforms.NAME]")
    found = []
    for name, entry in tables.items():
        if not isinstance(entry, dict):
            raise PlatformError(f"{source}: platforms.{name} must be a table")
        for key, value in entry.items():
            if key not in _KEYS:
                raise PlatformError(f"{source}: platforms.{name}: unknown key {key!r} (known: {', '.join(_KEYS)})")
            what, valid = _KEYS[key]
            if not valid(value):
                if key == "precision":
                    what = f"one of {', '.join(all_precisions())}"
                raise PlatformError(f"{source}: platforms.{name}.{key} must be {what}, not {value!r}")
        if "base" not in entry:
            raise PlatformError(f"{source}: platforms.{name} needs base = one of {', '.join(BUILT_IN)}")
        base = BUILT_IN[entry["base"]]
        if base.device != "cpu" and "cores" in entry:
            raise PlatformError(f"{source}: platforms.{name}.cores: cores apply to the CPU platforms, not {base.name}")
        cores = entry.get("cores", base.threads)
        found.append(Platform(
            name=name, description=entry.get("description", f"{base.name}, your settings"), device=base.device,
            threads=cores, default_batch=entry.get("batch", base.default_batch),
            default_precision=entry.get("precision", base.default_precision), base=base.name,
            streams=entry.get("streams", 1), source=source,
            scenario=_scenario(entry["scenario"], f"{source}: platforms.{name}.scenario") if "scenario" in entry
            else None))
    return found


def load_platforms(path: Path, required: bool = True) -> list[Platform]:
    """Register the platforms of the TOML file at `path` (`required=False`: a missing file is none)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        if not required:
            return []
        raise PlatformError(f"no platforms file {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PlatformError(f"cannot read the platforms file {path}: {getattr(e, 'strerror', None) or e}") from None
    return [register_platform(p) for p in parse_platforms(text, str(path))]
