"""An emulated aarch64 board: a TVM RPC server running under QEMU user-mode on this x86 host.

It checks that ARM builds (aarch64 + NEON, cross-compiled here) load and compute the right
numbers without an ARM machine. Emulated timings say nothing about ARM speed.

The board is a Debian bookworm arm64 root (debootstrap, built once into the cache) holding
python3.11 and the aarch64 wheels of the TVM runtime and of ExecuTorch (whose runtime libraries
`arm_executorch.py` runs without a server). QEMU runs without binfmt_misc, so every aarch64
program is launched as `qemu-aarch64-static -L ROOT ...`.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from levit_bench.errors import LevitBenchError
from levit_bench.workdir import cache_dir, write_atomic

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
GUEST_PYTHON = "/usr/bin/python3.11"
SITE_PACKAGES = "opt/levit-bench/site-packages"  # inside the root
STAMP = ".levit-bench-root.json"
# The aarch64 side of RPC: the TVM runtime, its FFI (0.1.15 segfaults: pinned like the host's),
# what they import, and cloudpickle for the server's popen worker; and ExecuTorch, whose runtime
# libraries run a `.pte` built on this host (devices/arm_executorch.py: pinned like the host's).
WHEELS = {"apache-tvm": "0.27.0.post1", "apache-tvm-ffi": "0.1.14.post1", "numpy": "2.4.6",
          "typing_extensions": "4.16.0", "cloudpickle": "3.1.2", "executorch": "1.5.1"}
WHEEL_PLATFORM = ["--platform", "manylinux_2_28_aarch64", "--python-version", "3.11",
                  "--only-binary=:all:", "--no-deps"]
INSTALL_HINT = "apt-get install qemu-user-static debootstrap"
LOCALHOST = "127.0.0.1"

_children: dict[int, subprocess.Popen] = {}  # servers this process started, reaped on stop


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class EmulatorState:
    host: str
    port: int
    pid: int  # the server's process group leader
    root: str
    started_at: str  # ISO 8601, UTC

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def root_dir() -> Path:
    return cache_dir() / "arm64-root"


def _run_dir() -> Path:
    return cache_dir() / "arm-emulator"  # state.json, server.log, the python wrapper


def _state_file() -> Path:
    return _run_dir() / "state.json"


def require_tool(name: str, hint: str = INSTALL_HINT) -> str:
    """The path of the command `name`, or a one-line refusal saying how to install it."""
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if not found:
        raise LevitBenchError(f"the ARM emulator needs {name}, which is not installed: {hint}")
    return found


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _run(cmd: list[str], what: str, hint: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise LevitBenchError(f"{what} failed: {last_line(done.stderr + done.stdout)} ({hint})")


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder or starter at a time: a second waits, then finds the work done."""
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        lock = open(cache_dir() / f"{name}.lock", "a")
    except OSError as e:
        raise LevitBenchError(f"cannot write to the cache {cache_dir()}: {e.strerror or e}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _root_is_current(root: Path) -> bool:
    try:
        return json.loads((root / STAMP).read_text()).get("wheels") == WHEELS
    except (OSError, ValueError):
        return False


def ensure_root(on_step: Callable[[str], None] = _quiet) -> Path:
    """The arm64 root, built on first use (minutes; needs root for debootstrap, and network)."""
    root = root_dir()
    if _root_is_current(root):
        return root
    debootstrap, _, _ = require_tool("debootstrap"), require_tool("qemu-aarch64-static"), require_tool("dpkg-deb")
    if os.geteuid() != 0:
        raise LevitBenchError(f"building the arm64 root ({root}) runs debootstrap, which needs "
                              "root: run `levit-bench arm-emulator start` once as root")
    with _locked("arm64-root"):
        if _root_is_current(root):  # built by someone else while we waited
            return root
        for stale in cache_dir().glob(".arm64-root.*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".arm64-root."))
        try:
            _build(tmp, debootstrap, on_step)
            if root.exists() or root.is_symlink():  # an outdated root: swap it out
                old = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".arm64-root.old."))
                os.replace(root, old / "root")
                os.replace(tmp, root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    on_step(f"arm64 root ready in {root}")
    return root


def _build(tmp: Path, debootstrap: str, on_step: Callable[[str], None]) -> None:
    hint = f"is {MIRROR} reachable?"
    on_step(f"downloading Debian {SUITE} arm64 with python3.11 (debootstrap, about a minute)")
    _run([debootstrap, "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3.11",
          SUITE, str(tmp), MIRROR], "debootstrap", hint)
    # The foreign first stage downloads every package but unpacks only the essential ones, and
    # its second stage would need to run under emulation: unpack them all here instead.
    # --keep-directory-symlink keeps the merged /usr (bin -> usr/bin) that debootstrap laid out.
    debs = sorted((tmp / "var/cache/apt/archives").glob("*.deb"))
    on_step(f"unpacking {len(debs)} packages")
    for deb in debs:
        cmd = (f"dpkg-deb --fsys-tarfile {shlex.quote(str(deb))} | "
               f"tar -x --keep-directory-symlink -C {shlex.quote(str(tmp))}")
        _run(["sh", "-ec", cmd], f"unpacking {deb.name}", "is the disk full?")
        deb.unlink()
    pins = [f"{name}=={version}" for name, version in WHEELS.items()]
    on_step(f"downloading aarch64 wheels: {', '.join(pins)}")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    with tempfile.TemporaryDirectory(dir=tmp) as wheels:
        _run([*pip, "download", *WHEEL_PLATFORM, "--dest", wheels, *pins], "pip download",
             "is PyPI reachable?")
        on_step("installing the wheels into the root")
        _run([*pip, "install", *WHEEL_PLATFORM, "--no-index", "--root-user-action=ignore",
              "--target", str(tmp / SITE_PACKAGES), *map(str, Path(wheels).glob("*.whl"))],
             "pip install --target", "see the message above")
    stamp = {"suite": SUITE, "arch": "arm64", "mirror": MIRROR, "python": "3.11",
             "wheels": WHEELS, "packages": sorted(deb.name for deb in debs),
             "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_atomic(tmp / STAMP, (json.dumps(stamp, indent=2) + "\n").encode())
    (tmp / STAMP).chmod(0o644)


# ---- the RPC server ------------------------------------------------------------------------


def _guest_python(root: Path) -> Path:
    """A host script standing in for the aarch64 python.

    tvm.exec.rpc_server re-executes `sys.executable` for its popen worker; under QEMU that is
    the aarch64 binary, which the host kernel cannot run. The server's `sys.executable` is
    pointed at this script, which goes through QEMU instead.
    """
    script = _run_dir() / "python3.11-aarch64"
    qemu = require_tool("qemu-aarch64-static")
    text = (f"#!/bin/sh\nexec {shlex.quote(qemu)} -L {shlex.quote(str(root))} "
            f"{shlex.quote(str(root) + GUEST_PYTHON)} \"$@\"\n")
    write_atomic(script, text.encode())
    script.chmod(0o755)
    return script


def _free_port(port: int | None) -> int:
    """`port` (0 or None: any) if nothing listens there; an occupied port would answer our probes."""
    with socket.socket() as probe:
        try:
            probe.bind((LOCALHOST, port or 0))
        except OSError as e:
            raise LevitBenchError(f"cannot listen on {LOCALHOST}:{port}: {e.strerror or e}") from None
        return probe.getsockname()[1]


def _gone(pid: int) -> bool:
    """Whether `pid` has exited (reaping it if this process started it); a zombie has too."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is not None and _children.pop(pid) is not None
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _alive(pid: int, root: str) -> bool:
    """Whether `pid` runs and is this emulator (its command line names the root), not a reuse."""
    try:
        return not _gone(pid) and root.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def status() -> EmulatorState | None:
    """The running emulator, or None (removing the state of one that has died)."""
    try:
        state = EmulatorState(**json.loads(_state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if _alive(state.pid, state.root):
        return state
    _state_file().unlink(missing_ok=True)
    return None


def _ready(host: str, port: int) -> bool:
    """Whether an RPC session opens: the TCP port first, as rpc.connect retries for a minute."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    from tvm import rpc

    try:
        session = rpc.connect(host, port)
    except Exception:  # noqa: BLE001 - any failure means "not yet"; the caller times out
        return False
    del session
    return True


def start(port: int | None = None, timeout_s: float = 300,
          on_step: Callable[[str], None] = _quiet) -> EmulatorState:
    """Start the emulator (building the root if missing), or return the one already running."""
    try:
        import tvm.rpc  # noqa: F401 - the host side; fail before minutes of work
    except ImportError as e:
        raise LevitBenchError(f"the ARM emulator needs TVM on this host ({e}): "
                              f"pip install apache-tvm=={WHEELS['apache-tvm']}") from None
    root = ensure_root(on_step)
    with _locked("arm-emulator"):
        running = status()
        if running is not None:
            return running
        _run_dir().mkdir(parents=True, exist_ok=True)
        port = _free_port(port)
        python = _guest_python(root)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(TVM_USE_RUNTIME_LIB="1", TVM_NUM_THREADS="1", PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(root / SITE_PACKAGES))
        launcher = ("import runpy, sys; sys.executable = sys.argv[1]; "
                    "sys.argv = ['rpc_server', *sys.argv[2:]]; "
                    "runpy.run_module('tvm.exec.rpc_server', run_name='__main__', alter_sys=True)")
        args = [str(python), "-c", launcher, str(python),
                "--host", LOCALHOST, "--port", str(port), "--port-end", str(port + 1)]
        log = _run_dir() / "server.log"

        def failure(what: str) -> LevitBenchError:
            return LevitBenchError(f"the emulated RPC server {what}: {last_line(log.read_text(errors='replace'))}")

        with open(log, "w") as out:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, cwd=_run_dir(), start_new_session=True)
        _children[proc.pid] = proc
        on_step(f"starting the RPC server on {LOCALHOST}:{port} under QEMU (log: {log})")
        deadline = time.monotonic() + timeout_s
        try:  # poll before probing: if it died, someone else may be listening there
            while proc.poll() is None and not _ready(LOCALHOST, port):
                if time.monotonic() > deadline:
                    raise failure(f"did not answer within {timeout_s:g} s; log {log}")
                time.sleep(1)
            if proc.returncode is not None:
                raise failure(f"exited ({proc.returncode}); log {log}")
        except BaseException:  # interrupted or failed: no server left behind without a state
            _kill(proc.pid)
            raise
        state = EmulatorState(LOCALHOST, port, proc.pid, str(root),
                              datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_atomic(_state_file(), (json.dumps(asdict(state), indent=2) + "\n").encode())
        on_step(f"ARM emulator ready at {state.address}")
        return state


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid` (the server, its popen worker, its forked sessions).

    The server is started as a session leader, so everything it spawns stays in its session
    even when it makes process groups of its own; zombies have exited and are not counted.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:  # state, ppid, pgrp, session
            members.append(int(entry.name))
    return members


def _kill(pid: int, grace_s: float = 5) -> None:
    """SIGTERM every process of the server's session, then SIGKILL; return once all are gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for member in {pid, *session_members(pid)}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, sig)
        deadline = time.monotonic() + grace_s
        while not (_gone(pid) and not session_members(pid)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    left = session_members(pid)
    if left:
        raise LevitBenchError(f"the emulator's processes {left} survived SIGKILL")


def stop() -> bool:
    """Stop the running emulator; False when none was running."""
    state = status()
    if state is None:
        return False
    _kill(state.pid)
    _state_file().unlink(missing_ok=True)
    return True


def is_emulator_address(host: str, port: int) -> bool:
    """Whether host:port is the running emulator (so results measured there are `emulated`)."""
    state = status()
    if state is None or port != state.port:
        return False
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return False
    return address.is_loopback  # the server listens on 127.0.0.1 only
