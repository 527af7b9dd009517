"""Does a measurement own its core, and is a disturbed one flagged? levit_128s, ONNX Runtime, `xeon`.

Four situations, each `--repeats` times, interleaved so drift hits them alike:
- alone: one `levit-bench run`;
- pair: two `levit-bench run` processes started together (each must take its own core);
- same core: two runs restricted to one core (the second must wait for the first, not share);
- spinner: one run while another process, holding no lock, burns the core the run takes
  (what a foreign program does; the run must be stored `noisy`).
Prints the median ms of every run, its pinned core, its noisy flag and other_share, the
waiting time of the same-core pair, and each situation's median against `alone`.

Run: .venv/bin/python benchmarks/measurement_isolation.py [--repeats 3] [--protocol default]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from levit_bench.exporters.pipeline import ExportOptions, export_model

MODEL = "levit_128s"


def _run(workdir: Path, protocol: str, cores: set[int] | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "levit_bench", "--workdir", str(workdir), "run", "--runtime", "onnxruntime",
               "--platform", "xeon", "--model", MODEL, "--protocol", protocol, "--json"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)


def _record(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    if process.returncode != 0:
        raise SystemExit(f"a run failed: {err.strip().splitlines()[-1]}")
    (record,) = json.loads(out)
    record["_finished"] = time.monotonic()
    return record


def _spinner(core: int) -> subprocess.Popen:
    code = f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def _row(situation: str, record: dict) -> str:
    load = record["load"]
    return (f"{situation:<10} {record['median_ms']:>9.1f} {record['cv']:>6.1%} {str(record['pinned_cores']):>6} "
            f"{str(record['noisy']):>6} {load.get('other_share', float('nan')):>7.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--protocol", default="default")
    args = parser.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise SystemExit("this benchmark needs two cores (the pair takes one each)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "work"
        export_model(ExportOptions(model=MODEL, out_dir=workdir / "models"))
        medians: dict[str, list[float]] = {}
        waits = []
        print(f"{'situation':<10} {'median ms':>9} {'CV':>6} {'core':>6} {'noisy':>6} {'other':>7}")
        for repeat in range(args.repeats):
            alone = _record(_run(workdir, args.protocol))
            print(_row("alone", alone))
            medians.setdefault("alone", []).append(alone["median_ms"])

            first, second = _run(workdir, args.protocol), _run(workdir, args.protocol)
            pair = [_record(first), _record(second)]
            assert pair[0]["pinned_cores"] != pair[1]["pinned_cores"], "two measurements shared a core"
            for record in pair:
                print(_row("pair", record))
                medians.setdefault("pair", []).append(record["median_ms"])

            one = {allowed[-1]}
            started = time.monotonic()
            first, second = _run(workdir, args.protocol, one), _run(workdir, args.protocol, one)
            same = [_record(first), _record(second)]
            for record in same:
                print(_row("same core", record))
                medians.setdefault("same core", []).append(record["median_ms"])
            waits.append(max(r["_finished"] for r in same) - started)

            spinner = _spinner(allowed[-1])
            try:
                noisy = _record(_run(workdir, args.protocol, one))
            finally:
                spinner.kill()
                spinner.wait()
            print(_row("spinner", noisy))
            medians.setdefault("spinner", []).append(noisy["median_ms"])
        base = statistics.median(medians["alone"])
        print(f"\nmedian of medians, ratio to alone ({args.repeats} repeats):")
        for situation, values in medians.items():
            print(f"  {situation:<10} {statistics.median(values):8.1f} ms  x{statistics.median(values) / base:.2f}"
                  f"  (spread {min(values):.1f}-{max(values):.1f})")
        print(f"  same-core pair: both done {statistics.median(waits):.1f} s after starting (run one after another)")


if __name__ == "__main__":
    main()
