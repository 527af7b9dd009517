"""A fleet's overhead, and the store's insert rate, measured on this machine.

1. The store: records inserted one transaction each, by one process and by 4 at once, into
   SQLite and into a throwaway PostgreSQL (a unix socket): records/s.
2. The fleet: the same N cell-rounds (a tiny ONNX net on ONNX Runtime, the smoke protocol) swept
   locally, then over a Ray cluster of K=1 and K=2 hosts on this machine (one core each), in a
   network namespace of their own. Overhead per cell = (fleet K=1 - local) / N; the K=2 speed-up
   against K=1 (ideal 2 on two cores).

Run as root (it makes the namespace with `unshare -n`):
    .venv/bin/python benchmarks/fleet.py [--cells 8] [--records 1000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the throwaway PostgreSQL of the tests

from postgres_server import new_database, running_postgres  # noqa: E402
from records import make_record  # noqa: E402

from levit_bench.store import ResultsStore  # noqa: E402

BIN = Path(sys.executable).parent
PORT = 6399


def _insert(url: str, count: int) -> None:
    store = ResultsStore(url)
    for _ in range(count):
        store.insert(make_record(uid=uuid.uuid4().hex))


def insert_rate(url: str, records: int, processes: int) -> float:
    """Records per second stored by `processes` writers at once, `records` in all."""
    ResultsStore(url)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_insert, args=(url, records // processes)) for _ in range(processes)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    assert len(ResultsStore(url).records()) == records // processes * processes
    return records // processes * processes / elapsed


def _tiny_onnx(path: Path) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10)).eval()
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), str(path), dynamo=True, verbose=False,
                      input_names=["pixels"], dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))


def sweep_times(work: Path, onnx: Path, cells: int) -> dict:
    """Seconds for `cells` cell-rounds: locally, and over K=1 and K=2 hosts (in a new network namespace)."""
    rounds = cells  # one cell (tiny on onnxruntime) per round
    sweep = (f"--platform xeon --onnx {onnx} --runtimes onnxruntime --rounds {rounds} --protocol smoke")
    script = textwrap.dedent(f"""
        set -euo pipefail
        ip link set lo up
        export RAY_USAGE_STATS_ENABLED=0
        LB="{BIN / "levit-bench"}"
        trap '"{BIN / "ray"}" stop --force >/dev/null 2>&1 || true' EXIT
        clock() {{ python3 -c 'import time; print(time.monotonic())'; }}
        $LB --workdir {work}/local sweep {sweep} >/dev/null 2>&1  # the artifact, and the imports' caches, first
        t0=$(clock); $LB --workdir {work}/local sweep --force {sweep} >/dev/null 2>&1; t1=$(clock)
        echo "local $(python3 -c "print($t1 - $t0)")"
        "{BIN / "ray"}" start --head --node-ip-address=127.0.0.1 --port={PORT} --num-cpus=0 \\
            --include-dashboard=false --disable-usage-stats >/dev/null 2>&1
        $LB --workdir {work}/a worker start --address 127.0.0.1:{PORT} --label a --cores 1 \\
            --node-ip-address 127.0.0.1 >/dev/null
        $LB --workdir {work}/k1 sweep --cluster 127.0.0.1:{PORT} {sweep} >/dev/null 2>&1  # builds a's artifact
        t0=$(clock); $LB --workdir {work}/k1 sweep --cluster 127.0.0.1:{PORT} --force {sweep} >/dev/null 2>&1; t1=$(clock)
        echo "k1 $(python3 -c "print($t1 - $t0)")"
        $LB --workdir {work}/b worker start --address 127.0.0.1:{PORT} --label b --cores 1 \\
            --node-ip-address 127.0.0.1 >/dev/null
        $LB --workdir {work}/k2 sweep --cluster 127.0.0.1:{PORT} --hosts b {sweep} >/dev/null 2>&1  # b's artifact
        half=$(( {rounds} / 2 ))
        t0=$(clock); $LB --workdir {work}/k2 sweep --cluster 127.0.0.1:{PORT} --force \\
            --platform xeon --onnx {onnx} --runtimes onnxruntime --rounds $half --protocol smoke >/dev/null 2>&1
        t1=$(clock)
        echo "k2 $(python3 -c "print($t1 - $t0)")"
    """)
    done = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"the fleet run failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return {name: float(value) for name, value in (line.split() for line in done.stdout.splitlines())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8, help="cell-rounds per sweep (even: K=2 splits them)")
    parser.add_argument("--records", type=int, default=1000, help="records per insert-rate measurement")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/fleet.py makes a network namespace (unshare -n): run it as root")
    figures: dict = {"insert_rate": {}}
    with tempfile.TemporaryDirectory(prefix="levit-fleet-") as scratch, running_postgres() as server:
        work = Path(scratch)
        for processes in (1, 4):
            sqlite = insert_rate(f"sqlite:///{work / f'rate-{processes}.db'}", args.records, processes)
            postgres = insert_rate(new_database(server, f"rate_{processes}"), args.records, processes)
            figures["insert_rate"][processes] = {"sqlite": sqlite, "postgresql": postgres}
            print(f"# store, {processes} writer(s), {args.records} records: SQLite {sqlite:.0f} records/s, "
                  f"PostgreSQL {postgres:.0f} records/s", flush=True)
        onnx = work / "tiny.onnx"
        _tiny_onnx(onnx)
        times = sweep_times(work, onnx, args.cells)
    figures["sweep_s"] = times
    figures["overhead_per_cell_s"] = (times["k1"] - times["local"]) / args.cells
    figures["k2_speedup"] = times["k1"] / times["k2"]
    print(f"# {args.cells} cell-rounds: local {times['local']:.1f} s, fleet K=1 {times['k1']:.1f} s, "
          f"K=2 {times['k2']:.1f} s")
    print(f"# overhead per cell (K=1 - local) / N: {figures['overhead_per_cell_s']:.2f} s (goal < 1 s: "
          f"{'met' if figures['overhead_per_cell_s'] < 1 else 'NOT met'}); K=2 speed-up {figures['k2_speedup']:.2f}x "
          f"(ideal 2)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
