"""What every api function shares: the store and work directory it resolves, the progress view,
the user's platforms and ONNX models registered in this process, the names and scenario
settings a request is checked against, and `Measured`, what a run or sweep returns."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from levit_bench.errors import LevitBenchError
from levit_bench.workdir import resolve_workdir

if TYPE_CHECKING:
    from levit_bench.store import ResultsStore, StoreLocation

PathLike = str | os.PathLike


class Measured(list):
    """The records a `run` or `sweep` stored, in the order measured (a list of dicts), and what
    else it found: the cell-rounds it `skipped` (stored already: a cell's label once per round),
    the cells `refused` before anything was measured ((label, reason): nothing stored), those
    `still_wide` after the last round allowed by `target`, with `sweep(profile=True)` the
    profiles stored and those that failed, and with `sweep(capacity=True)` the capacity searches."""

    def __init__(self, records: Sequence[dict] = (), run_id: str | None = None):
        super().__init__(records)
        self.run_id = run_id
        self.skipped: list[str] = []
        self.refused: list[tuple[str, str]] = []
        self.still_wide: list[str] = []
        self.profiles: list[dict] = []
        self.capacities: list[dict] = []
        self.profile_failures: list[str] = []

    @property
    def failed(self) -> list[tuple[str, str]]:
        """(label, reason) of every record stored as failed (labelled as the sweep's cells are)."""
        from levit_bench.runners.sweep import Cell

        return [(Cell(r["model"], r["runtime"], r.get("mode")).label, r["error"]) for r in self
                if r["status"] == "failed"]


def paths(workdir: PathLike | None, store: PathLike | None) -> tuple[Path, StoreLocation]:
    """The work directory, and the store: `store` (a path, sqlite:///PATH or postgresql://...),
    else $LEVIT_BENCH_STORE, else <workdir>/results.db."""
    from levit_bench.store import default_location

    work = resolve_workdir(workdir)
    return work, default_location(work, store)


def store_location(workdir: PathLike | None = None, store: PathLike | None = None) -> StoreLocation:
    """The results store (see `paths`)."""
    return paths(workdir, store)[1]


def reading_store(workdir: PathLike | None, store: PathLike | None) -> ResultsStore:
    """The store to read: a missing one reads as empty, and is not created."""
    from levit_bench.store import ResultsStore

    return ResultsStore(paths(workdir, store)[1], create=False)


def progress_view(description: str, show: bool, total: int | None = None):
    from levit_bench.views import ProgressView

    return ProgressView(description, total=total, disable=not show)


def calibrate(force: bool = False, progress: bool = False) -> dict:
    """This host's calibration (FMA peak, GEMM per runtime, copy bandwidth), measured once per host
    and cached (`levit-bench calibrate`)."""
    from levit_bench.runners.calibrate import cached, calibrate as measure

    if not force and (found := cached()) is not None:
        return found
    with progress_view("calibrating this host (once; cached)", progress) as view:
        return measure(on_step=lambda step: view.step(f"calibrating: {step}"), force=force)


def use_onnx(onnx: PathLike | None, name: str | None = None, resolution: int | None = None,
             batch: int | None = None, weights: str | None = None) -> tuple[str | None, int | None]:
    """Register a user's ONNX model in this process: (its model name, the batch to measure it at),
    or (None, batch) without `onnx`. A graph with a static batch runs at that batch only."""
    from levit_bench.exporters.onnx_facts import inspect_onnx
    from levit_bench.exporters.onnx_import import model_name, register

    if onnx is None:
        if name or resolution:
            raise LevitBenchError("--name and --resolution describe an --onnx FILE; give one")
        return None, batch
    if weights:
        raise LevitBenchError("--weights does not apply to --onnx: the ONNX file holds its own weights")
    info = inspect_onnx(Path(onnx), resolution)
    registered = model_name(info.path, name)
    register(info, registered)
    if info.batch is not None:
        if batch not in (None, info.batch):
            raise LevitBenchError(f"{Path(onnx).name} has a fixed batch of {info.batch}, not --batch "
                                  f"{batch}: export it with a symbolic batch to measure others")
        batch = info.batch
    return registered, batch


def use_platforms(platforms_file: PathLike | None = None, workdir: PathLike | None = None) -> list[dict]:
    """Register your own platforms in this process: those of <workdir>/platforms.toml when it
    exists, then those of `platforms_file` (which must exist); their definitions, as data."""
    from levit_bench.platforms import PLATFORMS_FILE, load_platforms

    found = load_platforms(resolve_workdir(workdir) / PLATFORMS_FILE, required=False)
    if platforms_file is not None:
        found += load_platforms(Path(platforms_file).expanduser())
    return [p.as_dict() for p in found]


def platforms(platforms_file: PathLike | None = None, workdir: PathLike | None = None) -> list[dict]:
    """Every platform a run may name: the built-in ones, then yours (`use_platforms`), as data
    (`levit-bench platforms`)."""
    from levit_bench.platforms import all_platforms

    use_platforms(platforms_file, workdir)
    return [p.as_dict() for p in all_platforms()]


def listed(names: str | Sequence[str] | None) -> list[str] | None:
    """One name or several, as a list (None: not given)."""
    return [names] if isinstance(names, str) else list(names) if names else None


def model_names_given(names: str | Sequence[str] | None, onnx_model: str | None) -> list[str]:
    """The named models (default: every built-in and registered one), or with --onnx, it after
    the named ones."""
    from levit_bench.registry import get_spec, model_names

    names = listed(names) or []
    if onnx_model:
        return [*(get_spec(n).name for n in names), onnx_model]
    return [get_spec(n).name for n in names] if names else [n for n in model_names() if not get_spec(n).onnx]


def device_options(rpc: str | None, rpc_key: str | None, mcpu: str | None) -> dict:
    """The tvm device options given: `rpc` is HOST:PORT of the device's RPC server, or of an RPC
    tracker when `rpc_key` names the device registered with it; `mcpu` the LLVM CPU."""
    given = {"rpc": rpc, "rpc_key": rpc_key, "mcpu": mcpu}
    return {k: v for k, v in given.items() if v is not None}


def scenario_settings(scenario: str | None, platform: str | None = None, **given) -> dict | None:
    """A LoadGen scenario's settings, checked (ScenarioSettings), as a request carries them; None
    without a scenario, where a scenario's option is refused. Without `scenario`, a user's
    `platform` that names one gives it, and its options where `given` has none."""
    from levit_bench.platforms import get_platform
    from levit_bench.runners.base import as_flags

    given = {k: v for k, v in given.items() if v is not None}
    named = platform and get_platform(platform).scenario
    if scenario is None and named:
        options = json.loads(named)
        scenario = options.pop("scenario")
        given = {**options, **given}
    if scenario is None:
        if given:
            raise LevitBenchError(f"{as_flags(sorted(given))} go with --scenario")
        return None
    from levit_bench.scenarios.settings import ScenarioSettings

    names = {"min_duration": "min_duration_s"}
    settings = ScenarioSettings(scenario, **{names.get(k, k): v for k, v in given.items()}).as_dict()
    foreign = sorted(k for k in given if names.get(k, k) not in settings)
    if foreign:
        raise LevitBenchError(f"{as_flags(foreign)}: not a setting of the {scenario} scenario")
    return settings


DRIVE = "levit_bench.scenarios.cell:drive"  # what measures a request with a scenario, in a worker process too


def check_loadgen() -> None:
    from levit_bench.scenarios.loadgen import import_loadgen

    import_loadgen()  # missing: refused now, before anything is measured
