"""PyTorch's own fast paths against TorchScript, ONNX Runtime and OpenVINO, on one pinned core.

For every model and batch, seven columns, each a real runner of levit-bench loading what its
runtime measures (all from the same seeded weights):
  traced        torch.jit.trace of the fused model (the paper's speed_test; MKL GEMMs)
  compiled      torch:compiled: AOTInductor with freezing, a `.pt2` compiled once
  max-autotune  the same with Inductor's GEMM templates benchmarked (--compile-mode max-autotune)
  et fp32       executorch: the fused model in its XNNPACK form, lowered to a `.pte`
  et int8       the same PT2E-quantized for XNNPACK (synthetic calibration images)
  ORT, OV       ONNX Runtime and OpenVINO (f32) on levit-bench's export
The columns run in interleaved rounds (a new random order each round, one short measurement of
each per round), so drift hits them alike; each ratio gets the 95% paired bootstrap interval
(`reports/confidence.paired_ratio`). Printed besides: each column's outputs against the unfused
PyTorch model (max |diff| relative to the largest logit, top-1 agreement), what it cost to
build (compile or lowering seconds) and how long a second, fresh process takes to load the
built file (no compilation), and XNNPACK's delegation (delegates, ops left to portable kernels).

Goals (issue 32): compiled >= 1.3x traced on every LeViT at batch 16; et fp32 >= 0.9x ORT on
every LeViT at batch 1; et int8 >= 1.5x et fp32; a second process loads a built file in <= 5 s.
Run: .venv/bin/python benchmarks/pytorch_paths.py [--models ...] [--batches 16 1] [--rounds 5]
     [--columns ...] [--workdir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from levit_bench.environment import host_info
from levit_bench.exporters.parity import seeded_images
from levit_bench.models.levit import LEVIT_CONFIGS
from levit_bench.platforms import get_platform
from levit_bench.reports.confidence import median_speed, paired_ratio
from levit_bench.runners import core_locks
from levit_bench.runners.artifacts import ensure_artifact
from levit_bench.runners.measure import Protocol
from levit_bench.runtimes import get_runtime

COLUMNS = {  # column -> (runtime, mode, precision)
    "traced": ("torch", "traced", "fp32"),
    "compiled": ("torch", "compiled", "fp32"),
    "max-autotune": ("torch", "compiled-max-autotune", "fp32"),
    "et fp32": ("executorch", None, "fp32"),
    "et int8": ("executorch", None, "int8"),
    "ORT": ("onnxruntime", None, "fp32"),
    "OV": ("openvino", None, "fp32"),
}
RATIOS = [("compiled", "traced"), ("max-autotune", "traced"), ("compiled", "ORT"), ("compiled", "OV"),
          ("et fp32", "ORT"), ("et int8", "et fp32")]
ROUND = Protocol("round", warmup_calls=2, warmup_s=0.2, min_calls=5, min_s=1.0)
BASELINES = ("efficientnet_b0", "deit_tiny", "mobilevit_xxs")  # one of each family the paper compares with
GOAL_COMPILED, GOAL_ET, GOAL_INT8, GOAL_LOAD_S = 1.3, 0.9, 1.5, 5.0

_LOAD_AGAIN = """
import json, sys, time
kind, path = sys.argv[1], sys.argv[2]
if kind == "pt2":
    import torch
    t0 = time.perf_counter()
    torch._inductor.aoti_load_package(path)
else:
    from executorch.runtime import Runtime
    t0 = time.perf_counter()
    Runtime.get().load_program(path).load_method("forward")
print(json.dumps({"load_s": time.perf_counter() - t0}))
"""


def load_in_new_process(kind: str, path: str) -> float:
    """Seconds a fresh Python process takes to load the built file (its imports excluded; the
    ExecuTorch runtime's start included)."""
    done = subprocess.run([sys.executable, "-c", _LOAD_AGAIN, kind, path], capture_output=True, text=True,
                          timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["load_s"]


def _parity(outputs: np.ndarray, expected: np.ndarray) -> dict:
    scale = max(1.0, float(np.abs(expected).max()))
    return {"max_rel_diff": float(np.abs(outputs - expected).max() / scale),
            "top1_agreement": float((outputs.argmax(1) == expected.argmax(1)).mean())}


def measure(model: str, batch: int, columns: list[str], workdir: Path, rounds: int) -> dict:
    """Every column of one model and batch: built, loaded, checked, then measured interleaved."""
    platform = get_platform("xeon")
    artifact = ensure_artifact(workdir, model, batch, None)
    images = seeded_images(batch, artifact.resolution).numpy()
    with torch.no_grad():
        expected = artifact.reference_model(torch.from_numpy(images)).numpy()
    runners, facts, failed = {}, {}, {}
    for column in columns:
        runtime, mode, precision = COLUMNS[column]
        cls = get_runtime(runtime).runner_class()
        runner = cls(platform, cls.Options.make(runtime, precision, mode, workdir))
        started = time.perf_counter()
        try:
            runner.load(artifact, batch)
        except Exception as error:  # a column that cannot be built is said, and the others still run
            print(f"#   {model} b{batch} {column}: FAILED to build: {type(error).__name__}: {error}", flush=True)
            failed[column] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
            runner.close()
            continue
        details = runner.describe().details
        fact = {"load_s": time.perf_counter() - started,
                **_parity(runner.to_numpy(runner(runner.to_input(images))), expected)}
        built = details.get("pt2") or details.get("pte")
        if built:
            kind = "pt2" if details.get("pt2") else "pte"
            fact.update(built_now=details["built_now"], build_s=details.get("compile_s", details.get("build_s")),
                        second_process_load_s=load_in_new_process(kind, built))
        if "delegation" in details:
            fact["delegation"] = {k: details["delegation"][k] for k in ("delegates", "delegated_ops", "portable_ops",
                                                                          "portable")}
        runners[column], facts[column] = runner, fact
        print(f"#   {model} b{batch} {column}: ready ({fact['load_s']:.1f} s)", flush=True)
    columns = [c for c in columns if c in runners]
    speeds: dict[str, list[np.ndarray]] = {column: [] for column in columns}
    rng = random.Random(batch * 1000 + len(model))
    for _ in range(rounds):
        order = list(columns)
        rng.shuffle(order)
        for column in order:
            runner = runners[column]
            timings = runner.measure(runner.to_input(images), ROUND)
            speeds[column].append(batch / np.asarray(timings.samples_s))
    for runner in runners.values():
        runner.close()
    result = {"speed": {c: median_speed(speeds[c]) for c in columns}, "facts": facts, "failed": failed, "ratios": {}}
    for a, b in RATIOS:
        if a in columns and b in columns:
            ratio = paired_ratio(speeds[b], speeds[a], seed=batch + len(model) + len(a))
            result["ratios"][f"{a} / {b}"] = {"value": ratio.value, "ci": list(ratio.ci)}
    return result


def _ratio_cell(ratio: dict | None) -> str:
    return f"{ratio['value']:.2f}x [{ratio['ci'][0]:.2f}, {ratio['ci'][1]:.2f}]" if ratio else "-"


def _print_tables(results: dict, columns: list[str]) -> None:
    for batch in sorted({b for _, b in results}, reverse=True):
        rows = [(m, r) for (m, b), r in results.items() if b == batch]
        print(f"\n## batch {batch}: images/s (median of rounds)\n")
        print("| model | " + " | ".join(columns) + " |\n| --- |" + " --- |" * len(columns))
        for model, r in rows:
            print(f"| {model} | " + " | ".join(f"{r['speed'][c]:.1f}" if c in r["speed"] else "failed"
                                               for c in columns) + " |")
        names = [f"{a} / {b}" for a, b in RATIOS if a in columns and b in columns]

        print(f"\n## batch {batch}: ratios [95% paired interval]\n")
        print("| model | " + " | ".join(names) + " |\n| --- |" + " --- |" * len(names))
        for model, r in rows:
            cells = [_ratio_cell(r["ratios"].get(n)) for n in names]
            print(f"| {model} | " + " | ".join(cells) + " |")
        print(f"\n## batch {batch}: build, load, parity (max |diff| / max |logit|, top-1 agreement)\n")
        print("| model | column | built now | build s | load s (this process) | load s (new process) | "
              "max rel diff | top-1 | delegation |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for model, r in rows:
            for column, error in r["failed"].items():
                print(f"| {model} | {column} | failed: {error} | | | | | | |")
            for column in (c for c in columns if c in r["facts"]):
                f = r["facts"][column]
                delegation = f.get("delegation")
                shown = (f"{delegation['delegates']} delegates, {delegation['delegated_ops']} ops, "
                         f"{delegation['portable_ops']} portable {delegation['portable'] or ''}") if delegation else ""
                build = f"{f['build_s']:.1f}" if f.get("build_s") is not None else ""
                again = f"{f['second_process_load_s']:.3f}" if "second_process_load_s" in f else ""
                print(f"| {model} | {column} | {f.get('built_now', '')} | {build} | {f['load_s']:.2f} | {again} | "
                      f"{f['max_rel_diff']:.1e} | {f['top1_agreement']:.2f} | {shown} |")


def _goal(results: dict, name: str, batch: int, threshold: float, levits_only: bool = True) -> str:
    found = [(m, r["ratios"][name]) for (m, b), r in results.items()
             if b == batch and name in r["ratios"] and (m.startswith("levit") or not levits_only)]
    if not found:
        return "not measured"
    short = [f"{m} {q['value']:.2f}x" for m, q in found if q["value"] < threshold]
    return "met" if not short else "NOT met (" + ", ".join(short) + ")"


def _print_goals(results: dict) -> None:
    print(f"\n# goal compiled >= {GOAL_COMPILED:g}x traced, every LeViT at batch 16: "
          + _goal(results, "compiled / traced", 16, GOAL_COMPILED))
    for batch in sorted({b for _, b in results}, reverse=True):
        for peer in ("ORT", "OV"):
            found = [(m, r["ratios"][f"compiled / {peer}"]) for (m, b), r in results.items()
                     if b == batch and f"compiled / {peer}" in r["ratios"]]
            faster = [m for m, q in found if q["ci"][0] > 1]
            slower = [m for m, q in found if q["ci"][1] < 1]
            if found:
                print(f"# batch {batch}: torch:compiled is faster than {peer} on {len(faster)} of {len(found)} "
                      f"models{' (' + ', '.join(faster) + ')' if faster else ''}, slower on {len(slower)}, "
                      f"the rest within the interval")
    print(f"# goal et fp32 >= {GOAL_ET:g}x ORT, every LeViT at batch 1: " + _goal(results, "et fp32 / ORT", 1, GOAL_ET))
    for batch in sorted({b for _, b in results}, reverse=True):
        print(f"# goal et int8 >= {GOAL_INT8:g}x et fp32 at batch {batch}: "
              + _goal(results, "et int8 / et fp32", batch, GOAL_INT8))
    loads = [(m, b, c, f["second_process_load_s"]) for (m, b), r in results.items() for c, f in r["facts"].items()
             if "second_process_load_s" in f]
    slow = [f"{m} b{b} {c} {s:.1f} s" for m, b, c, s in loads if s > GOAL_LOAD_S]
    worst = max((s for *_, s in loads), default=float("nan"))
    print(f"# goal a second process loads a built file in <= {GOAL_LOAD_S:g} s: "
          + ("met" if loads and not slow else "NOT met (" + ", ".join(slow) + ")" if slow else "not measured")
          + f" (slowest {worst:.3f} s of {len(loads)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[*LEVIT_CONFIGS, *BASELINES])
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--columns", nargs="+", choices=list(COLUMNS), default=list(COLUMNS))
    parser.add_argument("--workdir", type=Path, help="keeps the exports and built files (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pytorch-paths-"))
    host = host_info()
    results = {}
    with core_locks.pinned(get_platform("xeon")) as cores:
        print(f"# {host.cpu_model}, core {cores}, torch {torch.__version__}, {args.rounds} interleaved rounds; "
              f"work directory {workdir}", flush=True)
        for model in args.models:
            for batch in args.batches:
                results[(model, batch)] = measure(model, batch, args.columns, workdir, args.rounds)
    _print_tables(results, args.columns)
    _print_goals(results)
    if args.json:
        args.json.write_text(json.dumps({f"{m} b{b}": r for (m, b), r in results.items()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
