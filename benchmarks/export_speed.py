"""How fast the runtimes run levit-bench's export of each LeViT, against plainer exports of it.

Three ONNX files per LeViT and batch, all from the same seeded weights:
  (a) plain: `torch.onnx.export` of the unfused eval model (BatchNorm and all), not simplified;
  (b) plain + onnxsim;
  (c) levit-bench's export (folded, the inference graph of `models/levit_fused.py`, onnxsim,
      parity-checked).
Each runs in ONNX Runtime and OpenVINO f32 on one pinned core (platform `xeon`), in interleaved
rounds (a, b, c, a, b, c, ...; one short measurement of each per round), so drift hits the three
alike. Printed: images/s (median of the rounds), b/a and c/a with their 95% paired bootstrap
interval (issue 11's, `reports/confidence.paired_ratio`), node counts as written and after ONNX
Runtime's own optimisation, the share of (c)'s kernel time that its GEMMs, convolutions and
MatMuls take in each runtime's own profile (what no graph shape can remove: 1 / share bounds
what removing everything else could gain; OpenVINO's fused `Subgraph` kernels, its attention
with the MatMuls inside and its elementwise chains, are not counted, so its share is a lower
bound), and, per model, the best f32 GFLOP/s as a share of the calibrated single-core FMA peak.

Goals (issue 17): c/a >= 1.10 in both runtimes for every LeViT at batch 16 and 1; the best f32
runtime of every LeViT >= 75% of the calibrated FMA peak.
Run: .venv/bin/python benchmarks/export_speed.py [--models ...] [--batches 16 1] [--rounds 7]
     [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from levit_bench.environment import host_info
from levit_bench.exporters import onnx_graph
from levit_bench.exporters.parity import seeded_images
from levit_bench.exporters.pipeline import ExportOptions, export_model, load_model
from levit_bench.models.levit import LEVIT_CONFIGS
from levit_bench.platforms import get_platform
from levit_bench.registry import get_spec
from levit_bench.reports.confidence import median_speed, paired_ratio
from levit_bench.runners import core_locks
from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.calibrate import calibrate
from levit_bench.runners.measure import Protocol
from levit_bench.runners.onnxruntime_runner import OnnxRuntimeRunner
from levit_bench.runners.openvino_runner import OpenVinoRunner

EXPORTS = ("plain", "plain+onnxsim", "levit-bench")
RUNNERS = {"onnxruntime": OnnxRuntimeRunner, "openvino": OpenVinoRunner}
ROUND = Protocol("round", warmup_calls=2, warmup_s=0.2, min_calls=5, min_s=1.0)
# Kernels that compute (the rest moves data or is elementwise), in either runtime's spelling
# (OpenVINO names a kernel "node type/implementation").
COMPUTE_OPS = {"Gemm", "FusedGemm", "Conv", "FusedConv", "MatMul", "FusedMatMul", "FullyConnected",
               "Convolution"}
GOAL_RATIO, GOAL_PEAK = 1.10, 0.75


def write_exports(name: str, batch: int, directory: Path) -> dict[str, Path]:
    """The three ONNX files of `name` at `batch`, from the same seeded weights."""
    model, _ = load_model(name, None, 0)
    example = seeded_images(batch, get_spec(name).resolution)
    plain = onnx_graph.export(model, example, onnx_graph.DEFAULT_OPSET, dynamic_batch=False)
    paths = {"plain": directory / f"{name}-b{batch}-plain.onnx",
             "plain+onnxsim": directory / f"{name}-b{batch}-plain-onnxsim.onnx"}
    onnx.save(plain, paths["plain"])
    onnx.save(onnx_graph.simplify(plain), paths["plain+onnxsim"])
    paths["levit-bench"] = export_model(ExportOptions(name, directory / f"b{batch}", batch=batch)).onnx_path
    return paths


def node_counts(path: Path, optimised_path: Path) -> tuple[int, int]:
    """Nodes as written, and after ONNX Runtime's own optimisation (ORT_ENABLE_ALL, one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # its warning that an NCHWc graph is specific to this CPU
    options.optimized_model_filepath = str(optimised_path)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return len(onnx.load(path).graph.node), len(onnx.load(optimised_path).graph.node)


def measure_interleaved(runtime: str, name: str, paths: dict[str, Path], batch: int,
                        rounds: int) -> tuple[dict[str, list[np.ndarray]], float, float]:
    """Images/s samples per export and round, the largest output difference between exports, and
    the share of levit-bench's export's kernel time in computing kernels (`COMPUTE_OPS`)."""
    platform = get_platform("xeon")
    runners = {}
    for label, path in paths.items():
        runner = RUNNERS[runtime](platform, RUNNERS[runtime].Options.make(runtime, "fp32", None, path.parent))
        runner.load(Artifact(name, path, {}), batch)
        runners[label] = runner
    images = seeded_images(batch, get_spec(name).resolution).numpy()
    outputs = [r.to_numpy(r(r.to_input(images))) for r in runners.values()]
    difference = max(float(np.abs(o - outputs[-1]).max()) for o in outputs)
    speeds: dict[str, list[np.ndarray]] = {label: [] for label in paths}
    for _ in range(rounds):
        for label, runner in runners.items():
            timings = runner.measure(runner.to_input(images), ROUND)
            speeds[label].append(batch / np.asarray(timings.samples_s))
    profile = runners["levit-bench"].profile(images, ROUND)
    compute_share = sum(k.ms for k in profile.kernels if k.op.split("/")[0] in COMPUTE_OPS) / sum(k.ms for k in profile.kernels)
    for runner in runners.values():
        runner.close()
    return speeds, difference, compute_share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(LEVIT_CONFIGS), choices=list(LEVIT_CONFIGS))
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 1])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    host = host_info()
    calibration = calibrate()
    peak = calibration["fma_gflops"]
    print(f"host: {host.cpu_model} ({host.fingerprint}); 1 pinned thread; {args.rounds} interleaved rounds "
          f"of >= {ROUND.min_s:g} s; calibrated FMA peak {peak:.1f} GFLOP/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, core_locks.pinned(get_platform("xeon")):
        work = Path(tmp)
        for name in args.models:
            for batch in args.batches:
                paths = write_exports(name, batch, work)
                nodes = {label: node_counts(path, work / f"{path.stem}.ort.onnx") for label, path in paths.items()}
                for runtime in RUNNERS:
                    speeds, difference, compute = measure_interleaved(runtime, name, paths, batch, args.rounds)
                    row = {"model": name, "batch": batch, "runtime": runtime, "max_output_difference": difference,
                           "compute_share": compute,
                           "images_per_s": {label: median_speed(s) for label, s in speeds.items()},
                           "nodes": nodes}
                    for label in EXPORTS[1:]:
                        estimate = paired_ratio(speeds["plain"], speeds[label], seed=len(rows))
                        row[f"{label} / plain"] = [estimate.value, estimate.low, estimate.high]
                    rows.append(row)
                    print(_line(row), flush=True)
    _summary(rows, peak)
    if args.json:
        args.json.write_text(json.dumps({"host": host.fingerprint, "peak_gflops": peak, "rows": rows}, indent=2))
    return 0


def _line(row: dict) -> str:
    speeds = "  ".join(f"{row['images_per_s'][label]:8.1f}" for label in EXPORTS)
    ratios = "  ".join("{:.3f} [{:.3f}, {:.3f}]".format(*row[f"{label} / plain"]) for label in EXPORTS[1:])
    nodes = " / ".join(f"{written}->{optimised}" for written, optimised in row["nodes"].values())
    return (f"{row['model']:<11}{row['batch']:>3}  {row['runtime']:<12}{speeds}  {ratios}  "
            f"compute {row['compute_share']:.0%}  nodes {nodes}  max|diff| {row['max_output_difference']:.1e}")


def _summary(rows: list[dict], peak: float) -> None:
    print("\ncolumns: model, batch, runtime, images/s of plain, plain+onnxsim, levit-bench; "
          "(plain+onnxsim)/plain and levit-bench/plain [95% interval]; share of levit-bench's kernel time "
          "in GEMM/Conv/MatMul kernels; nodes written->after ORT")
    met = all(row["levit-bench / plain"][0] >= GOAL_RATIO for row in rows)
    print(f"goal levit-bench/plain >= {GOAL_RATIO:.2f} everywhere: {'met' if met else 'NOT met'} "
          f"(lowest {min(row['levit-bench / plain'][0] for row in rows):.3f})")
    best: dict[tuple[str, int], tuple[float, str]] = collections.defaultdict(lambda: (0.0, ""))
    for row in rows:
        key = (row["model"], row["batch"])
        best[key] = max(best[key], (row["images_per_s"]["levit-bench"], row["runtime"]))
    print(f"\n{'model':<11}{'batch':>6}{'best f32':>14}{'GFLOP/s':>9}{'% peak':>8}")
    for (name, batch), (speed, runtime) in best.items():
        gflops = speed * get_spec(name).measured_counts()[1] * 2 / 1e9
        share = gflops / peak
        print(f"{name:<11}{batch:>6}{runtime:>14}{gflops:>9.1f}{share:>8.0%}{'' if share >= GOAL_PEAK else '  < goal'}")


if __name__ == "__main__":
    sys.exit(main())
