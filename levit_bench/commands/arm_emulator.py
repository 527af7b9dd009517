"""`levit-bench arm-emulator start|stop|status`."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from levit_bench.commands.common import print_json

EXIT_NOT_RUNNING = 3  # `status` when none runs, as in LSB init scripts


def cmd_start(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.devices import arm_emulator

    state = arm_emulator.start(port=args.port, timeout_s=args.timeout,
                               on_step=lambda step: views.print_note(f"arm-emulator: {step}"))
    print(state.address)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.devices import arm_emulator

    views.print_note("arm-emulator: stopped" if arm_emulator.stop() else "arm-emulator: not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.devices import arm_emulator

    state = arm_emulator.status()
    if args.json:
        print_json(asdict(state) if state else None)
    elif state is None:
        views.print_note("arm-emulator: not running")
    else:
        print(state.address)
        views.print_note(f"arm-emulator: pid {state.pid}, up since {state.started_at}, root {state.root}")
    return 0 if state else EXIT_NOT_RUNNING


def register(commands) -> None:
    emulator = commands.add_parser(
        "arm-emulator",
        help="an emulated aarch64 board (QEMU) serving TVM RPC, to check ARM builds without one",
        description="Run a TVM RPC server inside an emulated aarch64 Debian (QEMU user-mode) on "
        "this machine, so that TVM modules cross-compiled for the `arm` platform (aarch64 + NEON) "
        "can be loaded and their outputs checked without an ARM board. For correctness only: "
        "emulated timings are orders of magnitude slower than real hardware and say nothing about "
        "ARM speed. The first `start` builds the arm64 root in the cache ($LEVIT_BENCH_CACHE, else "
        "~/.cache/levit-bench): a few minutes, as root, with network access to deb.debian.org and "
        "PyPI, and the Debian packages qemu-user-static and debootstrap installed.",
    )
    actions = emulator.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    start = actions.add_parser(
        "start", help="start the emulator (building its root if missing); prints HOST:PORT",
        description="Start the emulated RPC server on 127.0.0.1, detached, and print HOST:PORT once "
        "a TVM RPC session opens. If one is running already, print its address.")
    start.add_argument("--port", type=int, metavar="N", help="port to listen on (default: a free one)")
    start.add_argument("--timeout", type=float, default=300, metavar="S",
                       help="seconds to wait for the server to answer (default 300)")
    start.set_defaults(handler=cmd_start)
    stop = actions.add_parser("stop", help="stop the emulator",
                              description="Stop the emulated RPC server and its workers.")
    stop.set_defaults(handler=cmd_stop)
    status = actions.add_parser(
        "status", help="print HOST:PORT of the running emulator (exit status 3 if none)",
        description="Print HOST:PORT of the running emulator on stdout, or exit with status "
        f"{EXIT_NOT_RUNNING} if none runs.")
    status.add_argument("--json", action="store_true", help="host, port, pid, root, started_at (or null)")
    status.set_defaults(handler=cmd_status)
