"""Hosts in the cluster: how a host joins (`ray start` with levit-bench's resources) and how the
driver finds the hosts and what each can measure."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from levit_bench import environment
from levit_bench.console import native_stderr_quiet
from levit_bench.errors import LevitBenchError
from levit_bench.platforms import BUILT_IN, PlatformError
from levit_bench.workdir import resolve_workdir

PREFIX = "levit-bench/"
HOST_PREFIX = PREFIX + "host/"  # one unit on each host: the resource that places a task there
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
INSTALL_HINT = "pip install 'levit-bench[fleet]'"


class FleetError(LevitBenchError):
    pass


def platform_resource(platform: str) -> str:
    """The resource a host has a unit of per physical core it measures `platform` on."""
    return PREFIX + platform


def host_resource(label: str) -> str:
    return HOST_PREFIX + label


def check_label(label: str) -> str:
    if not LABEL.match(label):
        raise FleetError(f"a host label is 1-63 letters, digits, '.', '_' or '-', starting with a letter or "
                         f"digit, not {label!r}")
    return label


def measurable_platforms(host: environment.HostInfo) -> list[str]:
    """The built-in platforms this host can be measured as (its CPU's, and gpu with a GPU)."""
    found = []
    for name, platform in BUILT_IN.items():
        try:
            platform.check_host(host, "onnxruntime")
        except PlatformError:
            continue
        found.append(name)
    return found


def worker_command(address: str | None, platforms: list[str], label: str, cores: int, node_ip: str | None,
                   ray: str, head_port: int | None = None, gpus: int = 0) -> list[str]:
    """`ray start` joining the cluster at `address` (or, with `head_port`, starting one with this
    host as its head) with this host's levit-bench resources: `cores` units of each CPU platform,
    a unit per GPU of the gpu platform (a GPU cell takes the whole device)."""
    resources = {platform_resource(p): gpus if BUILT_IN[p].device == "cuda" else cores for p in platforms}
    resources[host_resource(label)] = 1
    joining = [f"--address={address}"] if head_port is None else ["--head", f"--port={head_port}",
                                                                    "--include-dashboard=false"]
    command = [ray, "start", *joining, f"--resources={json.dumps(resources)}", f"--num-cpus={cores}",
               "--disable-usage-stats"]
    return command + ([f"--node-ip-address={node_ip}"] if node_ip else [])


def start_worker(address: str | None, platforms: list[str] | None = None, label: str | None = None,
                 cores: int | None = None, node_ip: str | None = None, workdir: Path | None = None,
                 head_port: int | None = None) -> dict:
    """Join this host to the cluster at `address` (HEAD:PORT of `ray start --head`), or with
    `head_port` start a cluster with this host as its head; what it advertised. Platforms it
    cannot measure and more cores than it has are refused in one line."""
    host = environment.host_info()
    measurable = measurable_platforms(host)
    platforms = list(platforms or measurable)
    refused = [p for p in platforms if p not in measurable]
    if refused:
        raise FleetError(f"this host ({host.cpu_model}, {host.architecture}) cannot measure {', '.join(refused)}; "
                         f"it can measure {', '.join(measurable) or 'no built-in platform'}")
    from levit_bench.runners.core_locks import usable_physical_cores

    most = usable_physical_cores()  # those this process may pin (affinity, cgroups), as core locks count
    cores = most if cores is None else cores
    if isinstance(cores, bool) or not isinstance(cores, int) or not 1 <= cores <= most:
        raise FleetError(f"--cores must be from 1 to this host's {most} physical cores, not {cores}")
    label = check_label(label or os.uname().nodename.split(".")[0])
    ray = _ray_command()
    # the cells' work directory: Ray's workers inherit ray start's environment
    environment_ = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", LEVIT_BENCH_HOME=str(resolve_workdir(workdir).absolute()))
    gpus = _gpu_count() if "gpu" in platforms else 0
    done = subprocess.run(worker_command(address, platforms, label, cores, node_ip, ray, head_port, gpus),
                          capture_output=True, text=True, env=environment_, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        what = f"join {address}" if head_port is None else f"start a head on port {head_port}"
        raise FleetError(f"ray start could not {what}: {lines[-1] if lines else 'no output'}")
    if head_port is not None:
        address = f"{node_ip or _own_address()}:{head_port}"
    return {"address": address, "label": label, "platforms": platforms, "cores": cores,
            "host": host.fingerprint, "cpu_model": host.cpu_model}


def _own_address() -> str:
    """This host's address as Ray's head took it (what other hosts join)."""
    from ray._private.services import get_node_ip_address

    return get_node_ip_address()


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def stop_worker() -> None:
    """Leave the cluster: `ray stop` (every Ray process this host's user started on it)."""
    done = subprocess.run([_ray_command(), "stop"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise FleetError(f"ray stop failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")


def _ray_command() -> str:
    """The `ray` of this Python (the same install runs the cells), else the one on PATH."""
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.is_file() else shutil.which("ray")
    if not found:
        raise FleetError(f"Ray is not installed: {INSTALL_HINT}")
    return found


@contextmanager
def connected(address: str) -> Iterator[None]:
    """This process as a driver of the cluster at `address` (HEAD:PORT, or ray://HEAD:PORT for a
    machine outside it); refused in one line when no cluster answers there."""
    try:
        import ray
    except ImportError:
        raise FleetError(f"Ray is not installed: {INSTALL_HINT}") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        with native_stderr_quiet():  # Ray's C++ core logs its start-up (network probes) on stderr
            ray.init(address=address, logging_level="ERROR", log_to_driver=False, **_local_driver(address))
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise FleetError(f"no Ray cluster at {address}: {str(e).strip().splitlines()[0] if str(e).strip() else e}"
                         ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _local_driver(address: str) -> dict:
    """A head on a loopback address is on this machine: so is this driver's node address (Ray
    would otherwise probe for a route to the internet to find one, and warn where there is none)."""
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return {"_node_ip_address": "127.0.0.1"} if loopback and not address.startswith("ray://") else {}


@dataclass(frozen=True)
class Host:
    """A host of the cluster as its resources say: its label, Ray node, and the cores it offers
    per platform (total, free now)."""

    label: str
    node_id: str
    address: str
    alive: bool
    cores: dict[str, tuple[float, float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"label": self.label, "node_id": self.node_id, "address": self.address, "alive": self.alive,
                "cores": {p: {"total": t, "free": f} for p, (t, f) in self.cores.items()}}


def hosts() -> list[Host]:
    """Every levit-bench host the connected cluster has or had (a dead one: `alive` False)."""
    import ray

    free = _free_per_node()
    found = []
    for node in ray.nodes():
        resources = node.get("Resources") or {}
        labels = [name.removeprefix(HOST_PREFIX) for name in resources if name.startswith(HOST_PREFIX)]
        if not labels:
            continue  # the head, or a node that did not join as a levit-bench worker
        node_id = node["NodeID"]
        cores = {name.removeprefix(PREFIX): (total, free.get(node_id, {}).get(name, 0.0))
                 for name, total in resources.items() if name.startswith(PREFIX) and not name.startswith(HOST_PREFIX)}
        found.append(Host(labels[0], node_id, node.get("NodeManagerAddress", ""), bool(node.get("Alive")), cores))
    return sorted(found, key=lambda h: (not h.alive, h.label))


def _free_per_node() -> dict[str, dict[str, float]]:
    """Each node's resources free now: Ray's public API gives them for the whole cluster only."""
    from ray._private import state

    return {node_id: dict(resources) for node_id, resources in state.available_resources_per_node().items()}
