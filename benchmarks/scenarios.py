"""Cores, streams and LoadGen scenarios, measured against the goals of issue 31.

Five parts, each in interleaved rounds (the settings compared run back to back in a new random
order every round, so that a drift of the host moves them alike), every ratio the median over
rounds with a 95% paired bootstrap interval (`reports/confidence.paired_ratio`):

  scaling   offline images/s (LoadGen, batch 16) on 2 cores, 2 streams / on 1 core, per LeViT and
            runtime (onnxruntime, openvino); goal: the best runtime's ratio >= 1.85x.
  tool      OpenVINO through levit-bench against its own benchmark_app, on the same ONNX file and
            cores, each side a command in a process of its own: offline throughput at --cores 2
            --streams 2 against `-hint throughput` (goal >= 0.97x), and single-stream batch-1 p50
            on 1 core against `-hint latency` on that core (taskset; benchmark_app refuses
            -nthreads beside a hint) (goal <= 1.03x). What benchmark_app chose (streams, requests)
            is printed. benchmark_app's latency is OpenVINO's own timing of the request
            (`InferRequest.latency`), levit-bench's LoadGen's, from issue to answer.
  harness   LoadGen's single-stream p50 at batch 1 against `run --batch 1`'s median (closed loop),
            per runtime; goal: within 3%.
  capacity  two `capacity` searches of levit_128s on onnxruntime; goal: within 5% of each other.
  ort       onnxruntime with 2 streams on 2 cores: a session per stream (levit-bench's way)
            against 2 threads calling one session of 1 intra-op thread each (the other way the
            issue allows); which is faster, by how much.

Run: .venv/bin/python benchmarks/scenarios.py [--parts scaling tool harness capacity ort]
     [--models ...] [--rounds 3] [--min-duration 3] [--workdir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

from levit_bench import api, environment
from levit_bench.models.levit import LEVIT_CONFIGS
from levit_bench.reports.confidence import paired_ratio, round_speeds
from levit_bench.runners import core_locks

PARTS = ("scaling", "tool", "harness", "capacity", "ort")
GOALS = {"scaling": 1.85, "tool_throughput": 0.97, "tool_latency": 1.03, "harness": 0.03, "capacity": 0.05}
BENCHMARK_APP = Path(sys.executable).with_name("benchmark_app")


def _ratio(a: list[float], b: list[float], label: str) -> tuple[float, float, float]:
    """b / a over paired rounds of one value each: the median ratio and its 95% bootstrap interval."""
    ratios = np.asarray(b) / np.asarray(a)
    rng = np.random.default_rng(zlib.crc32(label.encode()))
    draws = np.median(rng.choice(ratios, size=(4000, len(ratios))), axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(np.median(ratios)), float(low), float(high)


def _fmt(found: tuple[float, float, float]) -> str:
    value, low, high = found
    return f"{value:.3f} ({low:.3f}-{high:.3f})"


def _run(model: str, runtime: str, **settings) -> dict:
    (record,) = api.run(model, runtime, "xeon", **settings)
    if record["status"] != "ok":
        raise SystemExit(f"{model} on {runtime} failed: {record['error']}")
    return record


def _run_process(model: str, runtime: str, workdir: str, **settings) -> dict:
    """`levit-bench run ... --json` in a process of its own, as a user runs it and as benchmark_app
    runs (not in this process, which has loaded every runtime before)."""
    command = [sys.executable, "-m", "levit_bench", "--workdir", workdir, "run", "--model", model, "--runtime",
               runtime, "--platform", "xeon", "--json"]
    for key, value in settings.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    (record,) = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    if record["status"] != "ok":
        raise SystemExit(f"{model} on {runtime} failed: {record['error']}")
    return record


def scaling(models: list[str], rounds: int, duration: float, common: dict) -> list[dict]:
    deployments = {"1c": dict(cores=1, streams=1), "2c2s": dict(cores=2, streams=2)}
    runs: dict[tuple, list[dict]] = {}
    rng = random.Random(31)
    for number in range(1, rounds + 1):
        for model in rng.sample(models, len(models)):
            for runtime in rng.sample(["onnxruntime", "openvino"], 2):
                for name in rng.sample(list(deployments), 2):
                    print(f"scaling round {number}: {model} {runtime} {name}", file=sys.stderr, flush=True)
                    record = _run(model, runtime, scenario="offline", min_duration=duration, **deployments[name],
                                  **common)
                    runs.setdefault((model, runtime, name), []).append(record)
    rows = []
    for model in models:
        for runtime in ("onnxruntime", "openvino"):
            one, two = runs[(model, runtime, "1c")], runs[(model, runtime, "2c2s")]
            found = paired_ratio([round_speeds(r) for r in one], [round_speeds(r) for r in two],
                                 zlib.crc32(f"{model}{runtime}".encode()))
            rows.append({"model": model, "runtime": runtime,
                         "one_core": statistics.median(r["images_per_s"] for r in one),
                         "two_cores_two_streams": statistics.median(r["images_per_s"] for r in two),
                         "ratio": [found.value, found.low, found.high]})
    return rows


def _benchmark_app(onnx: str, batch: int, hint: str, duration: float, core: int | None = None) -> dict:
    """benchmark_app's throughput, median latency and what it chose, f32 as levit-bench runs OpenVINO.
    Its UI refuses -nthreads beside a -hint, so one core is given by `taskset` (it then runs one
    thread: printed as INFERENCE_NUM_THREADS)."""
    command = [str(BENCHMARK_APP), "-m", onnx, "-d", "CPU", "-hint", hint, "-infer_precision", "f32",
               "-shape", f"[{batch},3,224,224]", "-t", f"{duration:g}"]
    if core is not None:
        command = ["taskset", "-c", str(core)] + command
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    number = lambda pattern: float(re.search(pattern, out).group(1))  # noqa: E731
    return {"throughput": number(r"Throughput:\s+([\d.]+) FPS"), "median_ms": number(r"Median:\s+([\d.]+) ms"),
            "streams": int(number(r"NUM_STREAMS: (\d+)")), "threads": int(number(r"INFERENCE_NUM_THREADS: (\d+)")),
            # "Start inference synchronously": one request, no queue
            "requests": int(number(r"(\d+) inference requests")) if "inference requests" in out else 1,
            "command": " ".join(command)}


def tool(rounds: int, duration: float, common: dict) -> dict:
    model = "levit_128s"
    onnx = _run(model, "openvino", protocol="smoke", batch=16, **common)["artifact"]
    onnx_b1 = _run(model, "openvino", protocol="smoke", batch=1, **common)["artifact"]
    core = max(os.sched_getaffinity(0))  # the core levit-bench's 1-core run holds: the highest free one
    ours_t, theirs_t, ours_l, theirs_l, chosen = [], [], [], [], {}
    rng = random.Random(17)
    for number in range(1, rounds + 1):
        for side in rng.sample(["ours-t", "theirs-t", "ours-l", "theirs-l"], 4):
            print(f"tool round {number}: {side}", file=sys.stderr, flush=True)
            if side == "ours-t":
                ours_t.append(_run_process(model, "openvino", common["workdir"], scenario="offline", batch=16,
                                           cores=2, streams=2, min_duration=duration)["images_per_s"])
            elif side == "theirs-t":
                found = _benchmark_app(onnx, 16, "throughput", duration)
                chosen["throughput"] = {k: found[k] for k in ("streams", "requests", "threads", "command")}
                theirs_t.append(found["throughput"])
            elif side == "ours-l":
                ours_l.append(_run_process(model, "openvino", common["workdir"], scenario="single-stream", batch=1,
                                           cores=1, min_duration=duration)["latency_ms"]["p50"])
            else:
                found = _benchmark_app(onnx_b1, 1, "latency", duration, core=core)
                chosen["latency"] = {k: found[k] for k in ("streams", "requests", "threads", "command")}
                theirs_l.append(found["median_ms"])
    return {"throughput": {"ours": statistics.median(ours_t), "benchmark_app": statistics.median(theirs_t),
                           "ratio": _ratio(theirs_t, ours_t, "tool-t")},
            "latency_p50": {"ours": statistics.median(ours_l), "benchmark_app": statistics.median(theirs_l),
                            "ratio": _ratio(theirs_l, ours_l, "tool-l")},
            "benchmark_app_chose": chosen}


def harness(runtimes: list[str], rounds: int, duration: float, common: dict) -> list[dict]:
    closed, loadgen = {r: [] for r in runtimes}, {r: [] for r in runtimes}
    rng = random.Random(3)
    for number in range(1, rounds + 1):
        for runtime in rng.sample(runtimes, len(runtimes)):
            for side in rng.sample(["run", "single-stream"], 2):
                print(f"harness round {number}: {runtime} {side}", file=sys.stderr, flush=True)
                if side == "run":
                    closed[runtime].append(_run("levit_128s", runtime, batch=1, **common)["median_ms"])
                else:
                    loadgen[runtime].append(_run("levit_128s", runtime, batch=1, scenario="single-stream",
                                                 min_duration=duration, **common)["latency_ms"]["p50"])
    return [{"runtime": r, "run_median_ms": statistics.median(closed[r]),
             "loadgen_p50_ms": statistics.median(loadgen[r]), "ratio": _ratio(closed[r], loadgen[r], f"h{r}")}
            for r in runtimes]


def capacity(duration: float, common: dict) -> dict:
    settings = dict(batch=1, cores=2, streams=2, latency_bound_ms=50.0, min_duration=duration)
    found = []
    for number in (1, 2):
        print(f"capacity search {number}", file=sys.stderr, flush=True)
        record = api.capacity("levit_128s", "onnxruntime", "xeon", **settings, **common)
        found.append(record)
    first, second = (r["capacity_qps"] for r in found)
    return {"settings": settings, "capacities_qps": [first, second], "probes": [len(r["probes"]) for r in found],
            "offline_qps": [r["offline_qps"] for r in found],
            "difference": abs(second - first) / min(first, second) if first and second else None}


def ort_streams(rounds: int, common: dict) -> dict:
    """A session per stream against one session called from both streams' threads, 2 cores."""
    from levit_bench.exporters.parity import seeded_images
    from levit_bench.runners.artifacts import ensure_artifact
    from levit_bench.runners.measure import PROTOCOLS
    from levit_bench.runners.session import RunRequest, RunSettings, checked_runner

    work = Path(common["workdir"])
    request = RunRequest("levit_128s", "onnxruntime", "xeon", cores=2, streams=2)
    platform = RunSettings.of(request).platform
    artifact = ensure_artifact(work, "levit_128s", 16, None, lambda step: None)
    inputs = seeded_images(16, artifact.resolution).numpy()
    speeds = {"session per stream": [], "one shared session": []}
    rng = random.Random(5)
    with core_locks.pinned(platform):
        for number in range(1, rounds + 1):
            for way in rng.sample(list(speeds), 2):
                runner = checked_runner(request, work)
                runner.load(artifact, 16)
                if way == "one shared session":
                    runner.sessions = [runner.sessions[0]] * 2  # both streams' threads call it
                timings = runner.measure(inputs, PROTOCOLS["default"])
                speeds[way].append(16 * len(timings.samples_s) / timings.wall_s)
                runner.close()
    own, shared = speeds["session per stream"], speeds["one shared session"]
    return {"images_per_s": {k: statistics.median(v) for k, v in speeds.items()},
            "shared_over_own": _ratio(own, shared, "ort")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--models", nargs="+", default=[m for m in LEVIT_CONFIGS])
    parser.add_argument("--harness-runtimes", nargs="+", default=["torch", "onnxruntime", "openvino"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-duration", type=float, default=3.0)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "levit-bench-scenarios"))
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    common = {"workdir": args.workdir}
    found: dict = {"host": environment.host_info().as_dict()}
    if "scaling" in args.parts:
        found["scaling"] = scaling(args.models, args.rounds, args.min_duration, common)
        print("\nScaling: LoadGen offline images/s, batch 16 (2 cores, 2 streams / 1 core; goal >= 1.85x for the "
              "best runtime)")
        print(f"{'model':12} {'runtime':12} {'1 core':>9} {'2c 2s':>9}  ratio (95% interval)")
        for row in found["scaling"]:
            print(f"{row['model']:12} {row['runtime']:12} {row['one_core']:9.1f} {row['two_cores_two_streams']:9.1f}"
                  f"  {_fmt(row['ratio'])}")
        for model in args.models:
            best = max((r for r in found["scaling"] if r["model"] == model), key=lambda r: r["two_cores_two_streams"])
            print(f"  {model}: best {best['runtime']}, {best['ratio'][0]:.3f}x -> "
                  f"{'met' if best['ratio'][0] >= GOALS['scaling'] else 'NOT met'}")
    if "tool" in args.parts:
        found["tool"] = result = tool(args.rounds, max(args.min_duration, 10.0), common)  # as long as benchmark_app -t
        print("\nOpenVINO: levit-bench against benchmark_app, levit_128s, same ONNX file")
        t, lat = result["throughput"], result["latency_p50"]
        print(f"  throughput (2 cores): ours {t['ours']:.1f} images/s, benchmark_app {t['benchmark_app']:.1f} FPS, "
              f"ours / theirs {_fmt(t['ratio'])} (goal >= 0.97)")
        print(f"  batch-1 p50 (1 core): ours {lat['ours']:.3f} ms, benchmark_app {lat['benchmark_app']:.3f} ms, "
              f"ours / theirs {_fmt(lat['ratio'])} (goal <= 1.03)")
        for hint, chose in result["benchmark_app_chose"].items():
            print(f"  benchmark_app -hint {hint} chose {chose['streams']} streams, {chose['requests']} requests, "
                  f"{chose['threads']} threads")
    if "harness" in args.parts:
        found["harness"] = harness(args.harness_runtimes, args.rounds, args.min_duration, common)
        print("\nHarness: LoadGen single-stream p50 against `run --batch 1`'s median, levit_128s, 1 core "
              "(goal within 3%)")
        for row in found["harness"]:
            print(f"  {row['runtime']:12} run {row['run_median_ms']:.3f} ms, LoadGen {row['loadgen_p50_ms']:.3f} ms, "
                  f"LoadGen / run {_fmt(row['ratio'])}")
    if "capacity" in args.parts:
        found["capacity"] = result = capacity(max(args.min_duration, 5.0), common)
        print(f"\nCapacity: levit_128s on onnxruntime, {result['settings']}")
        print(f"  two searches: {result['capacities_qps']} QPS ({result['probes']} probes), difference "
              f"{result['difference']:.1%} (goal <= 5%)" if result["difference"] is not None
              else f"  two searches: {result['capacities_qps']}: no VALID rate in one")
    if "ort" in args.parts:
        found["ort"] = result = ort_streams(args.rounds, common)
        print("\nonnxruntime, 2 streams on 2 cores, levit_128s batch 16 (closed loop)")
        for way, speed in result["images_per_s"].items():
            print(f"  {way:20} {speed:.1f} images/s")
        print(f"  one shared session / a session per stream: {_fmt(result['shared_over_own'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
