"""Can a user decide with levit-bench's numbers? Two identical sweeps must agree, and `compare`
must catch a slowdown while it leaves an unchanged runtime alone.

1. `levit-bench sweep --rounds R --target H --max-rounds M` of the five LeViTs x {torch,
   onnxruntime, openvino} on `xeon` (whole rounds until every cell's interval is within ±H, up
   to M), twice back to back, each in a fresh work directory (same seeded weights, so the same
   artifacts). For every model, the OpenVINO / ONNX Runtime and ONNX Runtime / torch ratios of
   both sweeps with their 95% interval half-widths (paired: the cells ran in the same rounds),
   and how far the two sweeps disagree.
2. levit_128s on onnxruntime, an unchanged copy of it, and a copy slowed by 10%
   (benchmarks/slowed_runtime.py, registered through levit_bench.runtimes), C rounds each and
   more by the same --target rule; `compare` verdicts of each copy against onnxruntime.

Goals (the 2-core VM): every ratio's half-width <= 3%, the sweeps agree within 3%, the slowed
copy is `slower` and the unchanged one `same`.
Run: .venv/bin/python benchmarks/stability.py [--rounds 3] [--target 0.02] [--max-rounds 12]
     [--check-rounds 5] [--models ...] [--check-only]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from levit_bench.api import more_rounds
from levit_bench.environment import host_info
from levit_bench.models.levit import LEVIT_CONFIGS
from levit_bench.reports.compare import compare
from levit_bench.store import open_store
from levit_bench.runners.calibrate import calibrate
from levit_bench.runners.session import new_run_id
from levit_bench.runners.sweep import plan, run_sweep, sweep_requests
from levit_bench.runtimes import register_runtime

GOAL = 0.03


def _sweep(workdir: Path, models: list[str], rounds: list[str]) -> list[dict]:
    command = [sys.executable, "-m", "levit_bench", "--workdir", str(workdir), "sweep", "--platform", "xeon",
               "--models", *models, "--runtimes", "torch", "onnxruntime", "openvino", *rounds, "--json"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"sweep failed: {done.stderr.strip().splitlines()[-1:]}")
    print(f"# sweep in {workdir}: {time.monotonic() - started:.0f} s", flush=True)
    return open_store(workdir).records()


def _ratios(records: list[dict]) -> dict[tuple[str, str], dict]:
    out = {}
    for label, a, b in (("OV/ORT", "onnxruntime", "openvino"), ("ORT/torch", "torch", "onnxruntime")):
        for row in compare(records, "runtime", a, b, min_effect=0.0):
            out[(row["model"], label)] = row
    return out


def _half(row: dict) -> float:
    low, high = row["ratio_ci"]
    return (high - low) / 2 / row["ratio"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.02, help="cell half-width to reach (0: fixed rounds)")
    parser.add_argument("--max-rounds", type=int, default=12)
    parser.add_argument("--check-rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(LEVIT_CONFIGS))
    parser.add_argument("--check-only", action="store_true", help="only the compare check (part 2)")
    args = parser.parse_args()
    host = host_info()
    peak = calibrate()
    print(f"# {host.cpu_model} ({host.fingerprint}, {host.logical_cores} cores); xeon: 1 pinned thread, batch 16; "
          f"{args.rounds} rounds per cell"
          + (f", then more until ±{args.target:.1%} (at most {args.max_rounds})" if args.target else ""))
    print(f"# calibrated single core: FMA {peak['fma_gflops']} GFLOP/s; GEMM "
          + ", ".join(f"{k} {v}" for k, v in peak["gemm_gflops"].items()) + f"; copy {peak['memory_gbps']} GB/s")
    with tempfile.TemporaryDirectory() as tmp:
        rounds = ["--rounds", str(args.rounds)]
        if args.target:
            rounds += ["--target", str(args.target), "--max-rounds", str(args.max_rounds)]
        sweeps = [] if args.check_only else \
            [_ratios(_sweep(Path(tmp) / f"sweep{n}", args.models, rounds)) for n in (1, 2)]
        if sweeps:
            _sweeps_table(sweeps)
        _compare_check(Path(tmp) / "check", args)
    return 0


def _sweeps_table(sweeps: list[dict]) -> None:
    """Both sweeps' ratios side by side, their half-widths and disagreement, against the goals."""
    print("\n| model | ratio | sweep 1 (95% interval) | ± | rounds | sweep 2 (95% interval) | ± | rounds "
          "| disagreement |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    worst_half, worst_gap = 0.0, 0.0
    for key in sweeps[0]:
        first, second = sweeps[0][key], sweeps[1].get(key)
        if second is None:
            continue
        gap = abs(second["ratio"] / first["ratio"] - 1)
        worst_half = max(worst_half, _half(first), _half(second))
        worst_gap = max(worst_gap, gap)
        cells = [f"{r['ratio']:.3f} ({r['ratio_ci'][0]:.3f}-{r['ratio_ci'][1]:.3f}) | {_half(r):.1%} | "
                 f"{r['rounds'][0]}+{r['rounds'][1]}" for r in (first, second)]
        print(f"| {key[0]} | {key[1]} | {cells[0]} | {cells[1]} | {gap:.1%} |")
    print(f"\ngoal every half-width <= {GOAL:.0%}: worst {worst_half:.1%}, {'met' if worst_half <= GOAL else 'NOT met'}")
    print(f"goal sweeps agree within {GOAL:.0%}: worst {worst_gap:.1%}, {'met' if worst_gap <= GOAL else 'NOT met'}")


def _compare_check(work: Path, args: argparse.Namespace) -> None:
    """levit_128s on onnxruntime, an unchanged copy and a 10% slowed copy: `compare`'s verdicts."""
    from slowed_runtime import SPECS

    for spec in SPECS:
        register_runtime(spec)
    cells = plan(["levit_128s"], ["onnxruntime", *(s.name for s in SPECS)], work)
    store = open_store(work)
    requests = sweep_requests(cells, "xeon", work, new_run_id())
    run_sweep(requests, work, done_rounds=store.count_ok, on_record=store.insert, rounds=args.check_rounds,
              more=more_rounds(args.target or None, args.max_rounds, store))  # --target 0: fixed rounds
    print(f"\n{max(r['round'] for r in store.records())} rounds of levit_128s, against onnxruntime:")
    ok = True
    for spec, expected in zip(SPECS, ("same", "slower")):
        [row] = compare(store.records(), "runtime", "onnxruntime", spec.name)
        ok &= row["verdict"] == expected
        print(f"  {spec.name}: ratio {row['ratio']:.3f} ({row['ratio_ci'][0]:.3f}-{row['ratio_ci'][1]:.3f}), "
              f"verdict {row['verdict']} (expected {expected})")
    print(f"goal compare catches the 10% slowdown and spares the copy: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    raise SystemExit(main())
