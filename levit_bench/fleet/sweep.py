"""A sweep over the fleet: each cell-round a Ray task placed on a chosen host (its platform's
cores there, and its label), measured there in a worker process of its own, the record sent
back to this driver, which hands it to the caller to store: records still flow one way.

Rounds run one after another, as in a local sweep, every host's cells of a round submitted at
once: Ray runs as many at a time on a host as it offers cores of the platform. Before each round
the hosts say their cells' resume keys (their artifacts, runtime versions, fingerprints), so a
cell-round already stored is skipped. A host that leaves the cluster during a round (found dead
by Ray, or its task lost with it) has its cells moved to another chosen host of the same CPU
model, or stored `failed` with the reason when there is none.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from levit_bench import environment
from levit_bench.errors import LevitBenchError
from levit_bench.fleet.nodes import FleetError, Host, host_resource, platform_resource
from levit_bench.interrupts import sigterm_as_interrupt
from levit_bench.platforms import get_platform
from levit_bench.records import cell_id
from levit_bench.runners.session import RunRequest
from levit_bench.runners.worker import registrations
from levit_bench.runners.sweep import (
    Cell, CellOutcome, MoreRounds, check_cell_timeout, check_rounds, failed_record, round_stored, shuffled)

POLL_S = 0.5  # how often a round in progress looks for hosts that left
_ANYWHERE = 0.001  # a sliver of a host's label resource: places the task there, takes nothing from it


@dataclass(frozen=True)
class Target:
    """A host a fleet sweep measures on: its label, Ray node, what it is, and its cores of the platform."""

    label: str
    node_id: str
    host: environment.HostInfo
    cores: int


def choose_hosts(found: list[Host], wanted: list[str] | None, platform: str) -> list[Host]:
    """The live hosts that measure `platform`, all of them or those `wanted` by label; a label the
    cluster does not have, or one whose host cannot measure the platform, is refused in one line."""
    alive = [h.label for h in found if h.alive]
    twice = sorted({label for label in alive if alive.count(label) > 1})
    if twice:
        raise FleetError(f"more than one host of the cluster is labelled {', '.join(twice)}: give each host its own "
                         "(worker start --label)")
    offering = [h for h in found if h.alive and h.cores.get(platform, (0, 0))[0] >= 1]
    if not wanted or wanted == ["all"]:
        if not offering:
            raise FleetError(f"no host of the cluster measures {platform} "
                             f"(hosts: {', '.join(h.label for h in found if h.alive) or 'none'})")
        return offering
    by_label = {h.label: h for h in found if h.alive}
    missing = [label for label in wanted if label not in by_label]
    if missing:
        raise FleetError(f"no host labelled {', '.join(missing)} in the cluster "
                         f"(its hosts: {', '.join(sorted(by_label)) or 'none'})")
    unable = [label for label in wanted if by_label[label] not in offering]
    if unable:
        raise FleetError(f"{', '.join(unable)} cannot measure {platform}")
    return [by_label[label] for label in dict.fromkeys(wanted)]


def describe_targets(hosts: list[Host], platform: str) -> list[Target]:
    """Each chosen host as it describes itself (a task on it); one that leaves first is refused."""
    from levit_bench.fleet import tasks

    targets = []
    for h in hosts:
        try:
            described = answer(on_host(tasks.describe_host, h.label).remote(), h.node_id, h.label)
        except HostLeft as e:
            raise FleetError(f"host {h.label} left the cluster before the sweep began ({e})") from None
        targets.append(Target(h.label, h.node_id, _host_info(described["host_info"]), int(h.cores[platform][0])))
    return targets


class HostLeft(Exception):
    """The host a task was placed on left the cluster before it answered."""


def answer(ref, node_id: str, label: str):
    """`ref`'s result, or HostLeft once its node is dead: a task placed on a host that is gone
    would wait for it for ever. A task that raised there is one line naming the host."""
    import ray

    while True:
        ready, _ = ray.wait([ref], timeout=POLL_S)
        if ready:
            try:
                return ray.get(ready[0])
            except ray.exceptions.NodeDiedError as e:
                raise HostLeft(_reason(e)) from None
            except ray.exceptions.RayTaskError as e:
                raise FleetError(f"on host {label}: {_reason(e)}") from None
        if node_id not in _alive_nodes():
            ray.cancel(ref, force=True)
            raise HostLeft("Ray found the host dead")


def _host_info(described: dict) -> environment.HostInfo:
    names = {f.name for f in dataclasses.fields(environment.HostInfo)}
    values = {k: v for k, v in described.items() if k in names}
    return environment.HostInfo(**{**values, "isa": tuple(values["isa"])})


def on_host(task, label: str, cores: dict | None = None):
    """`task` placed on the host labelled `label` (and taking `cores` of its resources)."""
    return task.options(resources={host_resource(label): _ANYWHERE, **(cores or {})})


def cores_needed(request: RunRequest, target: Target) -> int:
    """The platform's cores a cell takes on `target` (`--cores all`: all it offers; a GPU cell:
    its one unit, the device)."""
    threads = get_platform(request.platform).threads
    if request.cores == "all" or (request.cores is None and threads == "all"):
        return target.cores
    if request.cores is not None:
        return int(request.cores)
    return threads if isinstance(threads, int) else 1


def run_fleet_sweep(
    requests: list[RunRequest], targets: list[Target], done_rounds: Callable[[dict], int],
    on_record: Callable[[dict], None], force: bool = False, cell_timeout_s: float = 900.0,
    on_cell: Callable[[str, str], None] = lambda label, state: None, rounds: int = 1, seed: int | None = None,
    drive: str | None = None, more: MoreRounds | None = None,
    on_round: Callable[[int, int, int], None] = lambda number, cells, wanting: None,
) -> list[CellOutcome]:
    """Measure each request on every target `rounds` times, and with `more` whole further rounds
    while a cell of a host wants them (as `runners.sweep.run_sweep`); every record to `on_record`,
    with the host's label (`host_label`) and its `round`. `on_cell(label, state)` follows each
    cell-round, `on_round(number, cell-rounds, wanting)` each round."""
    check_rounds(rounds, more and more.most)
    check_cell_timeout(cell_timeout_s)
    for request in requests:
        too_many = [t.label for t in targets if cores_needed(request, t) > t.cores]
        if too_many:
            raise LevitBenchError(f"{request.model} / {request.runtime} needs {cores_needed(request, targets[0])} "
                                  f"cores of {request.platform}; {', '.join(too_many)} offer fewer")
    run = _FleetRun(requests, targets, done_rounds, on_record, force, cell_timeout_s, on_cell, drive,
                    random.Random(seed))
    with sigterm_as_interrupt():
        for number in range(1, (more.most if more else rounds) + 1):
            if not run.round(number, more if number > rounds else None, on_round):
                break
    return run.outcomes


class _Placed(NamedTuple):
    """A cell-round in flight: the cell, the host measuring it, and the host it was planned on."""

    index: int
    target: Target
    planned_on: str


class _FleetRun:
    """The state of one fleet sweep: the hosts it has lost, and the outcomes so far."""

    def __init__(self, requests, targets, done_rounds, on_record, force, cell_timeout_s, on_cell, drive, rng):
        self.requests, self.targets, self.done_rounds = requests, targets, done_rounds
        self.on_record, self.force, self.cell_timeout_s = on_record, force, cell_timeout_s
        self.on_cell, self.drive, self.rng = on_cell, drive, rng
        self.payloads = [dataclasses.asdict(r) for r in requests]
        self.known = registrations()  # the driver's users' models and platforms, for the hosts to know too
        self.cells = [Cell(r.model, r.runtime, r.mode) for r in requests]
        self.lost: dict[str, str] = {}  # label -> why it left
        self.taken: dict[tuple[str, int], int] = {}  # (label, cell) -> rows it measured for a lost host
        self.outcomes: list[CellOutcome] = []

    def _label(self, index: int, target: Target) -> str:
        return f"{self.cells[index].label} on {target.label}"

    def round(self, number: int, more: MoreRounds | None, on_round: Callable[[int, int, int], None]) -> bool:
        """Round `number` on every live host; False (nothing run) when it is a further round that
        no cell wants."""
        import ray

        from levit_bench.fleet import tasks

        keys: dict[str, list] = {}
        for target in self._live():
            try:
                keys[target.label] = answer(on_host(tasks.resume_keys, target.label).remote(self.payloads, self.known),
                                            target.node_id, target.label)
            except HostLeft as e:
                self.lost[target.label] = str(e)
                for cell in self.cells:  # not begun: named, nothing stored (a round later, it is not planned)
                    self.on_cell(f"{cell.label} on {target.label}", "refused")
                    self.outcomes.append(CellOutcome(cell, "refused", error=f"host {target.label} left the cluster "
                                                     f"before round {number} ({e})", host_label=target.label))
        every = range(len(self.requests))
        keys = {label: [key and {**key, "host_label": label} for key in found] for label, found in keys.items()}
        pending = {label: [i for i in every if more is None or found[i] is not None] for label, found in keys.items()}
        wanting = 0 if more is None else sum(more.wanted(keys[label][i]) for label, found in pending.items()
                                             for i in found)
        if more is not None and not wanting:
            return False
        on_round(number, sum(map(len, pending.values())), wanting)
        running: dict = {}
        for target in self._live():
            for index in shuffled(pending[target.label], self.rng, group=lambda i: self.cells[i].model):
                # the rows of a lost host's cells this host took count for that host, not for its own rounds
                taken = self.taken.get((target.label, index), 0)
                if round_stored(self.requests[index], keys[target.label][index], number,
                                lambda key: self.done_rounds(key) - taken, self.force):
                    self.on_cell(self._label(index, target), "skipped")
                    self.outcomes.append(CellOutcome(self.cells[index], "skipped", host_label=target.label))
                    continue
                running[self._submit(index, target)] = _Placed(index, target, target.label)
        try:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    self._finish(ref, running.pop(ref), number, running)
                if not ready:
                    self._move_off_dead_hosts(running, number)
        except BaseException:  # Ctrl-C, SIGTERM: no cell goes on measuring without a driver to store it
            for ref in running:
                ray.cancel(ref, force=True)
            raise
        return True

    def _live(self) -> list[Target]:
        return [t for t in self.targets if t.label not in self.lost]

    def _submit(self, index: int, target: Target):
        from levit_bench.fleet import tasks

        request = self.requests[index]
        cores = {platform_resource(get_platform(request.platform).base): cores_needed(request, target)}
        self.on_cell(self._label(index, target), "running")
        return on_host(tasks.measure_cell, target.label, cores).remote(self.payloads[index], self.known,
                                                                       self.cell_timeout_s, self.drive)

    def _finish(self, ref, placed: _Placed, number: int, running: dict) -> None:
        import ray

        index, target = placed.index, placed.target
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as e:  # the host went (Ray says so, or no longer has it), or the task failed
            if isinstance(e, ray.exceptions.NodeDiedError) or target.node_id not in _alive_nodes():
                self.lost[target.label] = _reason(e)
                self._elsewhere(placed, number, running)
            else:
                self._store(self._failed(index, target, f"the task failed on {target.label}: {_reason(e)}"),
                            placed, number)
            return
        if "refused" in result:
            self.on_cell(self._label(index, target), "refused")
            self.outcomes.append(CellOutcome(self.cells[index], "refused", error=result["refused"],
                                             host_label=placed.planned_on))
            return
        self._store(result["record"], placed, number)

    def _move_off_dead_hosts(self, running: dict, number: int) -> None:
        import ray

        alive = _alive_nodes()
        for ref, placed in list(running.items()):
            if placed.target.node_id not in alive:
                ray.cancel(ref, force=True)
                del running[ref]
                self.lost.setdefault(placed.target.label, "Ray found the host dead")
                self._elsewhere(placed, number, running)

    def _elsewhere(self, placed: _Placed, number: int, running: dict) -> None:
        """The cell of a host that left, moved to another host of the same CPU model, or failed."""
        index, target = placed.index, placed.target
        twins = [t for t in self._live() if t.host.cpu_model == target.host.cpu_model]
        if twins:
            twin = self.rng.choice(twins)
            self.on_cell(self._label(index, target), f"moved to {twin.label}")
            running[self._submit(index, twin)] = _Placed(index, twin, placed.planned_on)
            return
        reason = f"host {target.label} left the cluster during the cell ({self.lost[target.label]})"
        self._store(self._failed(index, target, reason), placed, number)

    def _failed(self, index: int, target: Target, error: str) -> dict:
        return failed_record(self.requests[index], target.host, error, None)

    def _store(self, record: dict, placed: _Placed, number: int) -> None:
        """The record to the caller, labelled with the host that measured it (and, for a lost host's
        cell measured elsewhere, the host it was planned on)."""
        index, target = placed.index, placed.target
        record.update(host_label=target.label, round=number)
        if placed.planned_on != target.label:
            record["planned_on"] = placed.planned_on
            self.taken[(target.label, index)] = self.taken.get((target.label, index), 0) + (record["status"] == "ok")
        record["cell"] = cell_id(record)  # its host's label is part of its cell
        self.on_record(record)
        self.on_cell(self._label(index, target), record["status"])
        self.outcomes.append(CellOutcome(self.cells[index], record["status"], record, record.get("error"),
                                         host_label=placed.planned_on))


def _alive_nodes() -> set[str]:
    import ray

    return {node["NodeID"] for node in ray.nodes() if node.get("Alive")}


def _reason(error: BaseException) -> str:
    """One line of what went wrong: a task's own exception rather than Ray's wrapping of it."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
