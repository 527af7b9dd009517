"""The whole matrix, one isolated cell at a time, resumable.

Each cell runs in a worker process of its own (`runners/worker.py`): a crash (even a segfault
in a runtime), an unsupported op or a timeout ends that process only, and becomes a failed
record. Every cell runs `rounds` times, the cells shuffled afresh each round, and, when the
caller asks for a given precision, more rounds for the cells still short of it. Every record
goes to the caller's `on_record`, which stores it; a cell-round the caller already holds (as
many successful rounds with the same artifact, runtime version, protocol and host) is
skipped unless forced.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from levit_bench import environment
from levit_bench.errors import LevitBenchError
from levit_bench.interrupts import sigterm_as_interrupt
from levit_bench.platforms import get_platform
from levit_bench.records import cell_id
from levit_bench.registry import get_spec
from levit_bench.runners.artifacts import find_artifact
from levit_bench.runners.base import as_flags
from levit_bench.runners.core_locks import DEFAULT_WAIT_TIMEOUT_S
from levit_bench.runners.session import RunRequest, RunSettings, checked_options, checked_runner, new_record
from levit_bench.runners.worker import EXIT_REFUSED, request_payload
from levit_bench.runtimes import COMPILE_MODES, RUNTIMES, get_runtime, with_compile_mode

DEFAULT_CELL_TIMEOUT_S = 900.0
MAX_ROUNDS = 12  # --max-rounds: the rounds a --target may take a cell to
MIN_ROUNDS_FOR_TARGET = 3


@dataclass(frozen=True)
class Cell:
    model: str
    runtime: str
    mode: str | None = None

    @property
    def label(self) -> str:
        runtime = f"{self.runtime}:{self.mode}" if self.mode else self.runtime
        return f"{self.model} / {runtime}"


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # ok | failed | skipped | refused (nothing measured, nothing stored)
    record: dict | None = None
    error: str | None = None
    host_label: str | None = None  # the fleet host it was planned on

    @property
    def label(self) -> str:
        return self.cell.label + (f" on {self.host_label}" if self.host_label else "")


def parse_runtime(entry: str) -> tuple[str, str | None]:
    """`torch`, `torch:eager`, `onnxruntime`, `tvm:tuned`, ... -> (runtime, mode)."""
    name, _, mode = entry.partition(":")
    runtime = get_runtime(name)
    if mode and mode not in runtime.modes:
        variants = ", ".join(f"{r.name}:{m}" for r in RUNTIMES.values() for m in r.modes)
        raise LevitBenchError(f"unknown runtime variant {entry!r}; the variants are {variants}")
    return name, mode or None


def compiled_as(entries: list[str], compile_mode: str | None) -> list[str]:
    """`entries` with every torch:compiled cell compiled in `compile_mode` (None: as named)."""
    if compile_mode is None:
        return entries
    compiled = [e for e in entries if parse_runtime(e) in (("torch", m) for m in COMPILE_MODES.values())]
    if not compiled:
        raise LevitBenchError("--compile-mode applies to torch:compiled, which this sweep does not measure")
    return [f"torch:{with_compile_mode('torch', parse_runtime(e)[1], compile_mode)}" if e in compiled else e
            for e in entries]


def plan(models: Iterable[str], runtimes: Iterable[str], workdir: Path) -> list[Cell]:
    """The cells; a bare runtime gives the modes its runner sweeps for the model (tvm: untuned,
    plus tuned where the work directory has a tuning database), a `runtime:mode` that mode. A
    user's ONNX model has no cell on a runtime that runs a PyTorch model (torch, executorch)."""
    specs = [get_spec(m) for m in models]
    variants = [parse_runtime(r) for r in runtimes]
    cells = []
    for spec in specs:
        m = spec.name
        for runtime, mode in variants:
            if spec.onnx is not None and get_runtime(runtime).runner_class().needs_pytorch_model:
                continue
            modes = [mode] if mode else get_runtime(runtime).runner_class().sweep_modes(m, workdir)
            cells.extend(Cell(m, runtime, each) for each in modes)
    return cells


def resume_key(cell: Cell, request: RunRequest, workdir: Path, host) -> dict | None:
    """The stored columns a finished twin of this cell would have; None if its artifact is missing.

    Settings are the effective ones (session.RunSettings); a batch of None (the GPU's
    searched batch) matches whatever batch the twin found.
    """
    settings = RunSettings.of(request)
    artifact = find_artifact(workdir, cell.model, settings.batch)
    if artifact is None:
        return None
    return {
        "model": cell.model, "runtime": cell.runtime,
        "runtime_version": environment.package_versions().get(cell.runtime),
        "platform": get_platform(request.platform).name, "host": host.fingerprint,
        "artifact_sha256": artifact.sha256, **settings.key(),
    }


@dataclass(frozen=True)
class Isolated:
    """What a worker process gave back: its record, or why there is none. `refused`: the request
    was refused before anything was measured (no core came free, a checkpoint that cannot be
    read, ...), so there is nothing to store; otherwise the cell failed (a crash, a timeout)."""

    record: dict | None
    error: str | None = None
    refused: bool = False


def run_isolated(request: RunRequest, workdir: Path, timeout_s: float, task: str = "measure",
                 drive: str | None = None) -> Isolated:
    """The record a worker process returned for `task`, or the reason it returned none; `drive`
    ("module:function") is what measures a request with a scenario (the caller's)."""
    process = subprocess.Popen([sys.executable, "-m", "levit_bench.runners.worker"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(request_payload(request, workdir, task, drive), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return Isolated(None, f"timed out after {timeout_s:g} s")
    except BaseException:  # Ctrl-C: take the child down with us
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    last = (stderr.strip().splitlines() or [f"exit status {process.returncode}"])[-1]
    if process.returncode == 0:
        try:
            return Isolated(json.loads(stdout))
        except ValueError:
            pass
    if process.returncode == EXIT_REFUSED:
        return Isolated(None, last, refused=True)
    if process.returncode < 0:
        return Isolated(None, f"crashed with {signal.Signals(-process.returncode).name}")
    return Isolated(None, last)


def failed_record(request: RunRequest, host, error: str, key: dict | None) -> dict:
    """The record of a cell-round whose worker returned none (a crash, a timeout), on `host`."""
    record = new_record(request, host)
    record.update(error=error, artifact_sha256=key and key["artifact_sha256"])
    record["cell"] = cell_id(record)
    return record


def sweep_requests(
    cells: list[Cell], platform: str, workdir: Path, run_id: str,
    batch: int | None = None, precision: str | None = None, protocol: str = "default",
    weights: str | None = None, runtime_options: dict | None = None,
    wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S, cores: int | str | None = None, streams: int | None = None,
    scenario: dict | None = None, here: bool = True,
) -> list[RunRequest]:
    """Each cell's request, checked: an invalid one refuses the whole sweep before any cell runs.

    `runtime_options` (e.g. tvm's rpc) go to the cells of the runtimes that take them; one
    that no runtime of the sweep takes is refused. Not `here` (a fleet's hosts measure them):
    the requests are checked, not this host's CPU against their platform, and no runner is made.
    """
    host = environment.host_info()
    given = {k: v for k, v in (runtime_options or {}).items() if v is not None}
    accepted = {c.runtime: get_runtime(c.runtime).runner_class().Options.extra_fields() for c in cells}
    unused = sorted(set(given) - set().union(*accepted.values()))
    if unused:
        swept = " or ".join(sorted(accepted)) or "any runtime swept"
        raise LevitBenchError(f"{as_flags(unused)}: not an option of {swept}")
    requests = [RunRequest(cell.model, cell.runtime, platform, batch=batch, precision=precision,
                           mode=cell.mode, protocol=protocol, weights=weights, run_id=run_id,
                           runtime_options={k: v for k, v in given.items() if k in accepted[cell.runtime]},
                           wait_timeout_s=wait_timeout_s, cores=cores, streams=streams, scenario=scenario)
                for cell in cells]
    checked = set()
    for request in requests:  # one runner per runtime variant proves the settings valid
        if (request.runtime, request.mode) not in checked:
            if here or request.runtime_options:  # a device behind --rpc is measured from here, fleet or not
                checked_runner(request, workdir, host).close()
            else:
                checked_options(request, workdir)
            checked.add((request.runtime, request.mode))
    return requests


def shuffled(indices: Iterable[int], rng: random.Random, group: Callable[[int], object] = lambda index: index
             ) -> list[int]:
    """A round's order of its cells, shuffled afresh every round (as google-benchmark's random
    interleaving), so that no cell always runs first or after the same neighbour. Cells of one
    `group` run back to back, the groups and the cells within each in random order: a sweep
    groups a model's runtimes, so that the cells a runtime ratio compares are measured seconds
    apart, not minutes, and a drift of the host (15-20% over an hour on the reference VM) moves
    both alike."""
    groups: dict[object, list[int]] = {}
    for index in indices:
        groups.setdefault(group(index), []).append(index)
    keys = list(groups)
    rng.shuffle(keys)
    order = []
    for key in keys:
        rng.shuffle(groups[key])
        order += groups[key]
    return order


@dataclass(frozen=True)
class MoreRounds:
    """Rounds past a sweep's first ones while a cell is still too uncertain: after each round,
    while any cell's `wanted(resume key)` is true, every cell runs again, up to `most` rounds.

    Whole rounds, not just the wanting cells: the host drifts over a sweep (on the reference VM
    levit_384 on ONNX Runtime went from 41 to 36 images/s, levit_192 on OpenVINO from 152 to
    136 over one 22-minute sweep), and a cell let go after round 3 while its twin ran on until
    round 16 was measured in a faster hour: their ratio was off by 5%. Rounds run together
    keep every ratio interleaved (and paired: `reports/confidence.cell_ratio`)."""

    most: int
    wanted: Callable[[dict], bool]


def check_rounds(rounds: int, most: int | None = None) -> None:
    """Refuse a number of rounds a sweep cannot run (`most`: the cap on further rounds, if any)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise LevitBenchError(f"--rounds must be at least 1, not {rounds}")
    if most is not None and most < rounds:
        raise LevitBenchError(f"--max-rounds ({most}) must be at least --rounds ({rounds})")


def check_target(target: float | None, rounds: int, most: int) -> None:
    """Refuse a precision to reach (`--target`, a half-width relative to the median) that rounds
    cannot show, and the rounds with it."""
    check_rounds(rounds, most if target is not None else None)
    if target is None:
        return
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise LevitBenchError(f"--target must be between 0 and 1 (0.02 is 2%), not {target}")
    if rounds < MIN_ROUNDS_FOR_TARGET:
        raise LevitBenchError(f"--target needs --rounds {MIN_ROUNDS_FOR_TARGET} or more: fewer rounds cannot "
                              "show how much a cell moves between processes")


def check_cell_timeout(seconds: float) -> None:
    if not (isinstance(seconds, (int, float)) and 0 < seconds < float("inf")):
        raise LevitBenchError(f"the cell timeout must be a positive number of seconds, not {seconds}")


def run_sweep(
    requests: list[RunRequest], workdir: Path, done_rounds: Callable[[dict], int],
    on_record: Callable[[dict], None], force: bool = False, cell_timeout_s: float = DEFAULT_CELL_TIMEOUT_S,
    on_cell: Callable[[Cell, str], None] = lambda cell, state: None, rounds: int = 1, seed: int | None = None,
    more: MoreRounds | None = None,
    on_round: Callable[[int, int, int], None] = lambda number, cells, wanting: None, drive: str | None = None,
) -> list[CellOutcome]:
    """Measure each request `rounds` times, every cell-round in a worker process of its own, the
    cells shuffled afresh each round (`seed`: reproducibly); hand every record to `on_record`
    (the caller stores it). With `more`, further whole rounds while a cell wants them.

    Round k of a cell is skipped, unless `force`, when `done_rounds` (the caller's count of
    finished rounds with the cell's resume key) is at least k: a killed sweep resumes where it
    stopped. Each record carries its `round`; `on_round(k, cells, wanting)` announces each
    round (`wanting`: how many cells asked for it, past the first `rounds`). `drive`
    ("module:function", as session.run_cell takes it) measures the requests with a scenario.
    """
    check_rounds(rounds, more and more.most)
    check_cell_timeout(cell_timeout_s)
    host = environment.host_info()
    rng = random.Random(seed)
    cells = [Cell(r.model, r.runtime, r.mode) for r in requests]
    pending = list(range(len(requests)))
    outcomes = []
    with sigterm_as_interrupt():  # the running cell's process group goes with the sweep
        for number in range(1, (more.most if more else rounds) + 1):
            wanting = 0
            if number > rounds:
                keys = {i: resume_key(cells[i], requests[i], workdir, host) for i in range(len(requests))}
                pending = [i for i, key in keys.items() if key is not None]
                wanting = sum(1 for i in pending if more.wanted(keys[i]))
                if not wanting:
                    break
            on_round(number, len(pending), wanting)
            for index in shuffled(pending, rng, group=lambda index: cells[index].model):
                outcomes.append(_sweep_cell(cells[index], requests[index], workdir, host, number, done_rounds,
                                            on_record, force, cell_timeout_s, on_cell, drive))
    return outcomes


def round_stored(request: RunRequest, key: dict | None, number: int, rounds_stored: Callable[[dict], int],
                 force: bool) -> bool:
    """Round `number` of the cell whose resume key is `key` is in the store, so a sweep skips it:
    never when forced, and never for a weights file of the user's (its key does not name it)."""
    return not force and request.weights is None and key is not None and rounds_stored(key) >= number


def _sweep_cell(cell: Cell, request: RunRequest, workdir: Path, host, number: int,
                done_rounds: Callable[[dict], int], on_record: Callable[[dict], None], force: bool,
                cell_timeout_s: float, on_cell: Callable[[Cell, str], None], drive: str | None = None) -> CellOutcome:
    key = resume_key(cell, request, workdir, host)
    if round_stored(request, key, number, done_rounds, force):
        on_cell(cell, "skipped")
        return CellOutcome(cell, "skipped")
    on_cell(cell, "running")
    outcome = run_isolated(request, workdir, cell_timeout_s, drive=drive)
    if outcome.refused:
        on_cell(cell, "refused")
        return CellOutcome(cell, "refused", error=outcome.error)
    record = outcome.record or failed_record(request, host, outcome.error, key)
    record["round"] = number
    on_record(record)
    on_cell(cell, record["status"])
    return CellOutcome(cell, record["status"], record, record.get("error"))
