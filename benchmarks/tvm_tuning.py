"""levit_128s on `xeon` (batch 16, one pinned thread): ONNX Runtime vs TVM untuned vs TVM tuned.

Tunes with MetaSchedule up to each budget in turn (a later budget continues the earlier
database, so the tuning wall time is cumulative as a user would spend it), measures TVM with
the database after each, and ONNX Runtime before and after, so drift of the machine shows.

Goal: tuned TVM at least on par with ONNX Runtime within a budget a user can afford (<= 30 min).
Run: .venv/bin/python benchmarks/tvm_tuning.py [--budgets 124 372] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from levit_reference import randomise  # noqa: E402

from levit_bench.environment import host_info  # noqa: E402
from levit_bench.exporters.pipeline import ExportOptions, export_model  # noqa: E402
from levit_bench.models.checkpoints import save_weights  # noqa: E402
from levit_bench.registry import get_spec  # noqa: E402
from levit_bench.reports.store import open_store  # noqa: E402
from levit_bench.runners.session import RunRequest, new_run_id, run_cell  # noqa: E402

MODEL, BATCH = "levit_128s", 16


def _measure(workdir: Path, runtime: str, mode: str | None, run_id: str) -> dict:
    request = RunRequest(MODEL, runtime, "xeon", batch=BATCH, mode=mode, protocol="default", run_id=run_id)
    record = run_cell(request, workdir)
    open_store(workdir).insert_or_keep(record)
    if record["status"] != "ok":
        raise SystemExit(f"{runtime} {mode or ''} failed: {record['error']}")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[124, 372],
                        help="cumulative trial budgets to measure at (default 124 372)")
    parser.add_argument("--workdir", type=Path, help="keep the work directory (default: a temporary one)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tvm-tuning-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)

    weights = workdir / "levit_128s-random.safetensors"
    save_weights(randomise(get_spec(MODEL).build(), seed=11), weights, MODEL)
    export_model(ExportOptions(model=MODEL, out_dir=workdir / "models", weights=str(weights), batch=BATCH))
    run_id = new_run_id()
    host = host_info()
    print(f"# {MODEL}, xeon, batch {BATCH}, 1 thread, on {host.cpu_model} ({host.logical_cores} cores)")
    print(f"# work directory: {workdir}", flush=True)

    from levit_bench.runners.tvm.tuning import TuningRequest, tune_model

    rows = []  # (label, trials, tuning seconds, record)
    rows.append(("onnxruntime (before)", None, None, _measure(workdir, "onnxruntime", None, run_id)))
    rows.append(("tvm untuned", 0, 0.0, _measure(workdir, "tvm", "untuned", run_id)))
    spent_trials, spent_s = 0, 0.0
    for budget in args.budgets:
        started = time.perf_counter()
        result = tune_model(TuningRequest(MODEL, "xeon", trials=budget - spent_trials, batch=BATCH), workdir)
        spent_s += time.perf_counter() - started
        spent_trials += result["trials"]
        print(f"# tuned to {spent_trials} trials ({result['tasks']} tasks) in {spent_s / 60:.1f} min", flush=True)
        rows.append((f"tvm tuned {budget}", spent_trials, spent_s, _measure(workdir, "tvm", "tuned", run_id)))
    rows.append(("onnxruntime (after)", None, None, _measure(workdir, "onnxruntime", None, run_id)))

    reference = min(r["median_ms"] for label, _, _, r in rows if label.startswith("onnxruntime"))
    print("\n| runtime | trials | tuning wall | median ms | images/s | CV | tuned tasks | ORT ms / this |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, trials, seconds, record in rows:
        details = record.get("runtime_info", {}).get("details", {})
        tuned = f"{details['tuned_tasks']}/{details['tasks']}" if "tasks" in details else "-"
        wall = f"{seconds / 60:.1f} min" if seconds else "-"
        print(f"| {label} | {trials if trials is not None else '-'} | {wall} | {record['median_ms']:.1f} | "
              f"{record['images_per_s']:.1f} | {record['cv'] * 100:.1f}% | {tuned} | "
              f"{reference / record['median_ms']:.2f} |")


if __name__ == "__main__":
    main()
