"""Where LeViT's time goes, per runtime: `levit-bench profile` of each model on each runtime.

For every (model, runtime): the components' ms per call and share, the kernels' sum against
the profiler's total, and the profiler's overhead against the unprofiled median, all measured
in one process on one held core. Goals (issue 15): the components sum to within 10% of the
profiled total, and the profiled total is within 25% of the unprofiled median.
Run: .venv/bin/python benchmarks/profiles.py [--models levit_128s levit_384] [--runtimes ...]
     [--batch N] [--protocol default|smoke]
(untuned TVM is ~60x slower than ONNX Runtime: profile it with --batch 2 --protocol smoke)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile


def _profile(workdir: str, model: str, runtime: str, batch: int, protocol: str) -> dict:
    command = [sys.executable, "-m", "levit_bench", "--workdir", workdir, "profile", "--model", model,
               "--runtime", runtime, "--platform", "xeon", "--batch", str(batch), "--protocol", protocol, "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"profile {model} on {runtime} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["levit_128s", "levit_384"])
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino", "torch"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--protocol", default="default")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each model's table as soon as it is measured
    met = True
    with tempfile.TemporaryDirectory() as workdir:
        for model in args.models:
            results = {runtime: _profile(workdir, model, runtime, args.batch, args.protocol)
                       for runtime in args.runtimes}
            print(f"\n## {model} (xeon: 1 pinned thread, batch {args.batch}): ms per call (share)\n")
            print("| component | " + " | ".join(args.runtimes) + " |")
            print("| --- |" + " --- |" * len(args.runtimes))
            names = [row["name"] for row in next(iter(results.values()))["components"]]
            for index, name in enumerate(names):
                cells = [results[r]["components"][index] for r in args.runtimes]
                if any(c["ms"] for c in cells):
                    print(f"| {name} | " + " | ".join(f"{c['ms']:.2f} ({c['share']:.1%})" for c in cells) + " |")
            for label, key in (("kernels sum", "kernels_ms"), ("outside kernels", "outside_kernels_ms"),
                               ("profiled total", "total_ms"), ("unprofiled median", "median_ms")):
                print(f"| {label} | " + " | ".join(f"{results[r][key]:.2f}" for r in args.runtimes) + " |")
            for runtime, result in results.items():
                summed = result["kernels_ms"] / result["total_ms"] - 1
                ok = abs(summed) <= 0.10 and abs(result["overhead"]) <= 0.25
                met &= ok
                print(f"{runtime}: components sum {summed:+.1%} of the profiled total; profiler overhead "
                      f"{result['overhead']:+.1%} of the unprofiled median ({'ok' if ok else 'NOT met'})")
    print(f"\ngoals (sum within 10%, overhead within 25%): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
