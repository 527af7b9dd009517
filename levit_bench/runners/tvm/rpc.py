"""Devices behind TVM RPC: an address (a server, or a tracker and key), checked and connected."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from levit_bench.runners.base import RunnerError
from levit_bench.runners.tvm.api import import_tvm


@dataclass(frozen=True)
class RpcAddress:
    """A TVM RPC server (`host:port`), or a tracker (`host:port` and the device's key)."""

    host: str
    port: int
    key: str | None = None  # set: the address is a tracker's

    @classmethod
    def parse(cls, text: str, key: str | None = None) -> "RpcAddress":
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise RunnerError(f"an RPC address is HOST:PORT with a port from 1 to 65535, not {text!r}")
        return cls(host, int(port), key)

    def check_reachable(self, timeout_s: float = 5.0) -> None:
        """Refuse, in one line, an address where nothing accepts connections (before compiling)."""
        what = "tracker" if self.key else "RPC server"
        try:
            socket.create_connection((self.host, self.port), timeout=timeout_s).close()
        except OSError as e:
            raise RunnerError(f"no TVM {what} at {self.host}:{self.port}: {e.strerror or e}") from None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" + (f" (tracker, key {self.key})" if self.key else "")


def connect(address: RpcAddress, timeout_s: float = 60.0):
    """An RPC session to the device, or a one-line error saying which address failed."""
    import_tvm()
    from tvm import rpc

    try:
        if address.key:
            tracker = rpc.connect_tracker(address.host, address.port)
            return tracker.request(address.key, priority=1, session_timeout=0)
        return rpc.connect(address.host, address.port, session_timeout=0)
    except Exception as e:  # noqa: BLE001 - TVM raises RuntimeError/TVMError/OSError alike
        reason = str(e).strip().splitlines()
        what = "tracker" if address.key else "RPC server"
        raise RunnerError(
            f"cannot reach the TVM {what} at {address.host}:{address.port}"
            + (f": {reason[-1][:160]}" if reason else "")
        ) from None


def resolve_address(rpc: str | None, key: str | None) -> RpcAddress | None:
    """`HOST:PORT`, a tracker's `HOST:PORT` with a key, or `emulator` (the running QEMU one)."""
    if rpc is None:
        if key:
            raise RunnerError("--rpc-key needs --rpc-tracker HOST:PORT")
        return None
    if rpc == "emulator":
        from levit_bench.devices import arm_emulator

        state = arm_emulator.status()
        if state is None:
            raise RunnerError("the ARM emulator is not running: levit-bench arm-emulator start")
        return RpcAddress(state.host, state.port)
    return RpcAddress.parse(rpc, key)


def is_emulated(address: RpcAddress | None) -> bool:
    """Whether `address` is levit-bench's QEMU emulator (its outputs count, its timings do not)."""
    if address is None or address.key:
        return False
    from levit_bench.devices import arm_emulator

    return arm_emulator.is_emulator_address(address.host, address.port)
