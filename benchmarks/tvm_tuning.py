"""TVM against ONNX Runtime as tuning proceeds (xeon, batch 16, one pinned thread).

levit_128s is tuned in wall-clock segments up to each checkpoint (cumulative minutes, as a user
would spend them); after each, TVM with the database and ONNX Runtime are measured in
`--pairs` interleaved pairs (ORT, TVM, ORT, TVM, ...; each a process of its own), and the
median of the pairs' ratios is reported with their range: this VM drifts +-10% between
processes, so one pair decides nothing. Then levit_192 is tuned from the same database (its
shared kernels already measured) for `--second-minutes`, and measured the same way. Last, the
per-component profile of tuned TVM next to ONNX Runtime's (`levit-bench profile`).

Goals (issue 16): untuned TVM >= 0.25x ONNX Runtime; tuned >= 1.0x within 30 minutes;
levit_192 >= 0.9x within 10 more minutes from the shared database.
Run: .venv/bin/python benchmarks/tvm_tuning.py [--checkpoints 5 10 20 30] [--second-minutes 10]
     [--pairs 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from levit_reference import randomise  # noqa: E402

from levit_bench.environment import host_info  # noqa: E402
from levit_bench.exporters.pipeline import ExportOptions, export_model  # noqa: E402
from levit_bench.models.checkpoints import save_weights  # noqa: E402
from levit_bench.registry import get_spec  # noqa: E402
from levit_bench.store import open_store  # noqa: E402
from levit_bench.runners.session import RunRequest, new_run_id, run_cell  # noqa: E402

FIRST, SECOND, BATCH = "levit_128s", "levit_192", 16


def _measure(workdir: Path, model: str, runtime: str, mode: str | None, run_id: str) -> dict:
    record = run_cell(RunRequest(model, runtime, "xeon", batch=BATCH, mode=mode, run_id=run_id), workdir)
    open_store(workdir).insert_or_keep(record)
    if record["status"] != "ok":
        raise SystemExit(f"{model} on {runtime} {mode or ''} failed: {record['error']}")
    return record


def _tune(workdir: Path, model: str, minutes: float) -> dict:
    from levit_bench.runners.tvm.tuning import TuningRequest, tune_models

    return tune_models(TuningRequest(models=(model,), platform="xeon", minutes=minutes, batch=BATCH), workdir)


def _profile(workdir: Path, model: str, runtime: str, mode: str | None) -> dict:
    command = [sys.executable, "-m", "levit_bench", "--workdir", str(workdir), "profile", "--model", model,
               "--runtime", runtime, "--platform", "xeon", "--batch", str(BATCH), "--json",
               *(["--mode", mode] if mode else [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"profile {model} on {runtime} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def _pairs(workdir: Path, model: str, mode: str, pairs: int, run_id: str) -> tuple[list[dict], list[float]]:
    """`pairs` interleaved (ORT, TVM) measurements: the TVM records and each pair's speed ratio."""
    tvm_records, ratios = [], []
    for _ in range(pairs):
        ort = _measure(workdir, model, "onnxruntime", None, run_id)
        tvm = _measure(workdir, model, "tvm", mode, run_id)
        tvm_records.append(tvm)
        ratios.append(ort["median_ms"] / tvm["median_ms"])
    return tvm_records, ratios


def _row(label: str, minutes: float | None, trials: int | None, records: list[dict], ratios: list[float],
         estimate: float | None) -> str:
    details = records[0].get("runtime_info", {}).get("details", {})
    tuned = f"{details['tuned_tasks']}/{details['tasks']}" if "tasks" in details else "-"
    tvm_ms = statistics.median(r["median_ms"] for r in records)
    return (f"| {label} | {f'{minutes:.1f}' if minutes is not None else '-'} | {trials if trials is not None else '-'} "
            f"| {tvm_ms:.1f} | {f'{estimate:.1f}' if estimate else '-'} | {statistics.median(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) | {tuned} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=float, nargs="+", default=[5, 10, 20, 30],
                        help="cumulative tuning minutes of levit_128s to measure at (default 5 10 20 30)")
    parser.add_argument("--second-minutes", type=float, default=10.0,
                        help="tuning minutes of levit_192 from the shared database (default 10; 0: skip)")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved ORT/TVM pairs per point (default 3)")
    parser.add_argument("--workdir", type=Path, help="keep the work directory (default: a temporary one)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tvm-tuning-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for model in (FIRST, SECOND):
        weights = workdir / f"{model}-random.safetensors"
        save_weights(randomise(get_spec(model).build(), seed=11), weights, model)
        export_model(ExportOptions(model=model, out_dir=workdir / "models", weights=str(weights), batch=BATCH))
    run_id = new_run_id()
    host = host_info()
    print(f"# xeon, batch {BATCH}, 1 thread, on {host.cpu_model} ({host.logical_cores} cores); workdir {workdir}")
    print("\n| model, state | tuning min | trials | TVM ms (median) | kernels' estimate ms | TVM/ORT speed, "
          f"median of {args.pairs} pairs (range) | tasks from database |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(_row(f"{FIRST} untuned", 0, 0, *_pairs(workdir, FIRST, "untuned", args.pairs, run_id), None))
    spent_s, trials = 0.0, 0
    for checkpoint in args.checkpoints:
        result = _tune(workdir, FIRST, checkpoint - spent_s / 60)
        spent_s += result["seconds"]
        trials += result["trials"]
        print(_row(f"{FIRST} tuned", spent_s / 60, trials, *_pairs(workdir, FIRST, "tuned", args.pairs, run_id),
                   result["estimated_ms"][FIRST]))
    if args.second_minutes > 0:
        print(_row(f"{SECOND} untuned", 0, 0, *_pairs(workdir, SECOND, "untuned", args.pairs, run_id), None))
        result = _tune(workdir, SECOND, args.second_minutes)
        print(_row(f"{SECOND} tuned (shared database)", result["seconds"] / 60, result["trials"],
                   *_pairs(workdir, SECOND, "tuned", args.pairs, run_id), result["estimated_ms"][SECOND]))
    profiles = {"tvm tuned": _profile(workdir, FIRST, "tvm", "tuned"),
                "onnxruntime": _profile(workdir, FIRST, "onnxruntime", None)}
    print(f"\n## {FIRST}: ms per batch by component (share)\n")
    print("| component | " + " | ".join(profiles) + " |")
    print("| --- |" + " --- |" * len(profiles))
    names = [row["name"] for row in next(iter(profiles.values()))["components"]]
    for index, name in enumerate(names):
        cells = [p["components"][index] for p in profiles.values()]
        if any(c["ms"] for c in cells):
            print(f"| {name} | " + " | ".join(f"{c['ms']:.2f} ({c['share']:.1%})" for c in cells) + " |")
    for label, key in (("kernels sum", "kernels_ms"), ("outside kernels", "outside_kernels_ms"),
                       ("unprofiled median", "median_ms")):
        print(f"| {label} | " + " | ".join(f"{p[key]:.2f}" for p in profiles.values()) + " |")


if __name__ == "__main__":
    main()
