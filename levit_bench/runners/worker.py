"""One sweep cell in a process of its own: a JSON request on stdin, its record as JSON on stdout.

`python -m levit_bench.runners.worker` is what a sweep spawns for each cell (to measure it, or
with `sweep --profile` to profile it), so that a crash (even a segfault inside a runtime) ends
this process only. It stores nothing: the sweep's parent stores what it prints. A request
refused in one line exits 1 with the reason on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from levit_bench import registry, runtimes
from levit_bench.errors import LevitBenchError, one_line
from levit_bench.exporters.onnx_import import register_file
from levit_bench.runners.session import RunRequest, run_cell


def request_payload(request: RunRequest, workdir: Path, task: str = "measure") -> str:
    """What the parent writes to a worker's stdin: the task and its request, and what the worker
    needs to see the parent's runtimes (those registered beyond the built-in ones, and where to
    import them) and its users' ONNX models."""
    return json.dumps({"task": task, "request": dataclasses.asdict(request), "workdir": str(workdir),
                       "runtimes": runtimes.added_runtimes(), "onnx_models": registry.added_onnx_models(),
                       "sys_path": sys.path})


def main() -> int:
    try:
        payload = json.loads(sys.stdin.read())
        sys.path.extend(p for p in payload["sys_path"] if p not in sys.path)  # this process's own come first
        for spec in payload["runtimes"]:
            runtimes.register_runtime(spec, replace=True)
        for model in payload.get("onnx_models", ()):
            register_file(Path(model["onnx"]), model["name"], model["resolution"])
        request, workdir = RunRequest(**payload["request"]), Path(payload["workdir"])
        if payload.get("task") == "profile":
            from levit_bench.runners.profile_run import profile_cell

            record = profile_cell(request, workdir)
        else:
            record = run_cell(request, workdir)
    except LevitBenchError as e:
        print(one_line(e), file=sys.stderr)
        return 1
    json.dump(record, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
