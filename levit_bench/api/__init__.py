"""levit-bench from Python: measure, read, compare and report, exactly as the commands do.

Each command is a thin layer over one of these functions (arguments parsed, one call, its
result printed), so a script or a notebook gets what the command line gets: the same checks,
the same records stored in the same store, and the same one-line errors, raised as
`LevitBenchError` (and its subclasses) instead of printed.

    from levit_bench import api

    records = api.run("levit_128s", "onnxruntime", "xeon", protocol="smoke")  # list of dicts, stored
    api.sweep("xeon", models=["levit_128s"], runtimes=["torch", "onnxruntime"], rounds=3)
    api.results(model="levit_128s")              # pandas DataFrame, one row per stored measurement
    api.aggregate()                              # one row per cell, images/s with its 95% interval
    api.compare("runtime", "torch", "onnxruntime")  # B / A per cell, interval and verdict
    api.report("out")                            # Path of out/index.html

`workdir` is where artifacts go (default: $LEVIT_BENCH_HOME, else ./levit-bench-out); `store`
is the results store: a file path, `sqlite:///PATH` or `postgresql://USER@HOST/DB` (default:
$LEVIT_BENCH_STORE, else <workdir>/results.db). `progress=True` shows the command
line's progress display on stderr.
"""

from __future__ import annotations

from levit_bench.api.capacity import capacity, capacity_settings
from levit_bench.api.common import (
    Measured, calibrate, platforms, scenario_settings, store_location, use_onnx, use_platforms)
from levit_bench.api.measuring import more_rounds, profile, run, sweep
from levit_bench.api.reading import (
    aggregate, capacities, cells, compare, comparison, merge, records, report, report_result, results)
from levit_bench.errors import LevitBenchError

__all__ = ["LevitBenchError", "Measured", "aggregate", "calibrate", "capacities", "capacity", "capacity_settings",
           "cells", "compare", "comparison", "merge",
           "more_rounds", "platforms", "profile", "records", "report", "report_result", "results", "run",
           "scenario_settings", "store_location", "sweep", "use_onnx", "use_platforms"]
