"""One sweep cell in a process of its own: a JSON request on stdin, its record as JSON on stdout.

`python -m levit_bench.runners.worker` is what a sweep spawns for each cell (to measure it, or
with `sweep --profile` to profile it), so that a crash (even a segfault inside a runtime) ends
this process only. It stores nothing: the sweep's parent stores what it prints. A request
refused in one line exits EXIT_REFUSED with the reason on stderr, and nothing is stored for it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import json
import os
import signal
import sys
from pathlib import Path

from levit_bench import platforms, registry, runtimes
from levit_bench.errors import LevitBenchError, one_line
from levit_bench.exporters.onnx_import import register_file
from levit_bench.runners.session import RunRequest, run_cell

EXIT_REFUSED = 3  # the request was refused in one line (on stderr) before anything was measured
EXIT_ORPHANED = 4  # the sweep that started this worker was gone before it began
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def request_payload(request: RunRequest, workdir: Path, task: str = "measure", drive: str | None = None) -> str:
    """What the parent writes to a worker's stdin: the task and its request, what drives a
    request with a scenario ("module:function", the caller's: this layer imports no scenario), and
    what the worker needs to see as the parent does (`registrations`)."""
    return json.dumps({"task": task, "parent": os.getpid(), "request": dataclasses.asdict(request), "drive": drive,
                       "workdir": str(workdir), **registrations()})


def registrations() -> dict:
    """What this process knows beyond the built-in: its runtimes (and where to import them), its
    users' ONNX models and platforms, and its import path."""
    return {"runtimes": runtimes.added_runtimes(), "onnx_models": registry.added_onnx_models(),
            "platforms": platforms.added_platforms(), "sys_path": sys.path}


def register(known: dict) -> None:
    """Know in this process what `registrations` said of another."""
    sys.path.extend(p for p in known["sys_path"] if p not in sys.path)  # this process's own come first
    for spec in known["runtimes"]:
        runtimes.register_runtime(spec, replace=True)
    for platform in known.get("platforms", ()):
        platforms.register_platform(platform)
    for model in known.get("onnx_models", ()):
        register_file(Path(model["onnx"]), model["name"], model["resolution"])


def _imported(path: str | None):
    if path is None:
        return None
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def die_with(parent: int) -> None:
    """Have the kernel SIGKILL this worker when `parent`, the sweep that started it, dies (even by
    SIGKILL: the worker has a session of its own, so a signal to the sweep's process group does
    not reach it), so that no orphan goes on measuring and holding its core. A parent already
    gone before the death signal was set (this process's parent is then another) ends it here."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(EXIT_ORPHANED)


def main() -> int:
    try:
        payload = json.loads(sys.stdin.read())
        die_with(payload["parent"])
        register(payload)
        request, workdir = RunRequest(**payload["request"]), Path(payload["workdir"])
        if payload.get("task") == "profile":
            from levit_bench.runners.profile_run import profile_cell

            record = profile_cell(request, workdir)
        else:
            record = run_cell(request, workdir, drive=_imported(payload.get("drive")))
    except LevitBenchError as e:
        print(one_line(e), file=sys.stderr)
        return EXIT_REFUSED
    json.dump(record, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
