"""INT8 against fp32, per runtime: how much faster, and what it costs in top-1.

1. Draws a synthetic ImageFolder dataset (`levit-bench data synth`) and trains LeViT-128S on
   it (a few minutes, no teacher).
2. Quantizes its export for ONNX Runtime and OpenVINO (`levit-bench quantize`), calibrated on
   the training images, and evaluates fp32 and int8 in both runtimes on the validation split
   (`levit-bench eval`): the top-1 change int8 costs.
3. Measures fp32 and int8 images/s in both runtimes at batch 16 on one pinned core (platform
   `xeon`): the trained LeViT-128S, and LeViT-192, LeViT-384 and EfficientNet-B0 with seeded
   random weights (quantized on synthetic images). The four files of a model run in interleaved
   rounds (ort fp32, ort int8, ov fp32, ov int8, ...), and int8 / fp32 gets the 95% paired
   bootstrap interval of issue 11 (`reports/confidence.paired_ratio`).

Goals (issue 18): int8 >= 2x fp32 on at least one runtime for every LeViT; a top-1 drop of at
most 1 point on the trained LeViT-128S.
Run: .venv/bin/python benchmarks/int8.py [--out DIR] [--epochs 6] [--rounds 7] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from levit_bench.cli import main as cli
from levit_bench.exporters.parity import seeded_images
from levit_bench.platforms import get_platform
from levit_bench.registry import get_spec
from levit_bench.reports.confidence import median_speed, paired_ratio
from levit_bench.runners import core_locks
from levit_bench.runners.artifacts import ensure_artifact, ensure_quantized
from levit_bench.runners.measure import Protocol
from levit_bench.runtimes import get_runtime

RUNTIMES = ("onnxruntime", "openvino")
RANDOM_MODELS = ("levit_192", "levit_384", "efficientnet_b0")
ROUND = Protocol("round", warmup_calls=2, warmup_s=0.2, min_calls=5, min_s=1.0)
BATCH = 16
GOAL_SPEEDUP, GOAL_DROP = 2.0, 1.0


def _cli(*args: str) -> dict | None:
    """Run a levit-bench command; its JSON output when it prints some."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli(list(args))
    if code != 0:
        raise SystemExit(f"levit-bench {' '.join(args)} failed")
    text = buffer.getvalue().strip()
    return json.loads(text) if text.startswith(("{", "[")) else None


def train_and_evaluate(out: Path, epochs: int) -> tuple[Path, dict]:
    """The trained LeViT-128S checkpoint and top-1 per (runtime, precision) on the val split."""
    data = out / "data"
    if not data.exists():
        # 20 classes and a short schedule: top-1 well under 100%, so a drop has room to show
        _cli("data", "synth", "--out", str(data), "--classes", "20", "--per-class", "48", "--val-per-class", "24",
             "--size", "96", "--seed", "0")
    checkpoint = out / "train" / "best.pth"
    if not checkpoint.exists():
        started = time.perf_counter()
        _cli("train", "--model", "levit_128s", "--data", str(data), "--out", str(out / "train"), "--epochs",
             str(epochs), "--batch-size", "32", "--lr", "1e-3", "--warmup-epochs", "1", "--workers", "2")
        print(f"# trained levit_128s for {epochs} epochs in {(time.perf_counter() - started) / 60:.1f} min")
    work = ["--workdir", str(out / "work")]
    for runtime in RUNTIMES:
        _cli(*work, "quantize", "--model", "levit_128s", "--runtime", runtime, "--weights", str(checkpoint),
             "--calib", str(data / "train"), "--calib-size", "256", "--json")
    top1 = {}
    for runtime in RUNTIMES:
        for precision in ("fp32", "int8"):
            record = _cli(*work, "eval", "--model", "levit_128s", "--weights", str(checkpoint), "--data",
                          str(data / "val"), "--runtime", runtime, "--precision", precision, "--workers", "0", "--json")
            top1[(runtime, precision)] = (record["top1"], record["correct_top1"], record["images"])
    return checkpoint, top1


def measure(model: str, workdir: Path, weights: str | None, rounds: int) -> dict:
    """int8 / fp32 per runtime for one model, measured in interleaved rounds on one pinned core."""
    platform = get_platform("xeon")
    fp32 = ensure_artifact(workdir, model, BATCH, weights)
    runners = {}
    for runtime in RUNTIMES:
        cls = get_runtime(runtime).runner_class()
        for precision in ("fp32", "int8"):
            artifact = fp32 if precision == "fp32" else ensure_quantized(fp32, runtime)
            runner = cls(platform, cls.Options.make(runtime, precision, None, workdir))
            runner.load(artifact, BATCH)
            runners[(runtime, precision)] = runner
    images = seeded_images(BATCH, get_spec(model).resolution).numpy()
    speeds: dict[tuple, list[np.ndarray]] = {key: [] for key in runners}
    for _ in range(rounds):
        for key, runner in runners.items():
            timings = runner.measure(runner.to_input(images), ROUND)
            speeds[key].append(BATCH / np.asarray(timings.samples_s))
    result = {}
    for runtime in RUNTIMES:
        ratio = paired_ratio(speeds[(runtime, "fp32")], speeds[(runtime, "int8")], seed=len(model) + len(runtime))
        result[runtime] = {"fp32": median_speed(speeds[(runtime, "fp32")]),
                           "int8": median_speed(speeds[(runtime, "int8")]),
                           "speedup": ratio.value, "ci": list(ratio.ci)}
    for runner in runners.values():
        runner.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="dataset, checkpoint and work directory (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="int8-"))
    checkpoint, top1 = train_and_evaluate(out, args.epochs)
    print("\n| runtime | fp32 top-1 | int8 top-1 | change |\n| --- | --- | --- | --- |")
    drops = []
    for runtime in RUNTIMES:
        (a, ca, n), (b, cb, _) = top1[(runtime, "fp32")], top1[(runtime, "int8")]
        drops.append(a - b)
        print(f"| {runtime} | {a:.2f}% ({ca}/{n}) | {b:.2f}% ({cb}/{n}) | {b - a:+.2f} pt |")

    rows = {}
    with core_locks.pinned(get_platform("xeon")) as cores:
        print(f"\n# speed on core {cores}, batch {BATCH}, {args.rounds} interleaved rounds")
        rows["levit_128s (trained)"] = measure("levit_128s", out / "work", str(checkpoint), args.rounds)
        for model in RANDOM_MODELS:
            rows[model] = measure(model, out / "random", None, args.rounds)
    print("\n| model | ORT fp32 | ORT int8 | ORT int8/fp32 [95%] | OV fp32 | OV int8 | OV int8/fp32 [95%] |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for model, row in rows.items():
        cells = [f"{row[r]['fp32']:.1f} | {row[r]['int8']:.1f} | {row[r]['speedup']:.2f}x "
                 f"[{row[r]['ci'][0]:.2f}, {row[r]['ci'][1]:.2f}]" for r in RUNTIMES]
        print(f"| {model} | " + " | ".join(cells) + " |")
    levits = [m for m in rows if m.startswith("levit")]
    speed_met = all(max(rows[m][r]["speedup"] for r in RUNTIMES) >= GOAL_SPEEDUP for m in levits)
    print(f"\n# goal int8 >= {GOAL_SPEEDUP:g}x fp32 on one runtime for every LeViT: {'met' if speed_met else 'NOT met'}")
    print(f"# goal top-1 drop <= {GOAL_DROP:g} pt on the trained LeViT-128S: "
          + ", ".join(f"{r} drop {d:.2f} pt" for r, d in zip(RUNTIMES, drops))
          + (" (met)" if max(drops) <= GOAL_DROP else " (NOT met)"))
    if args.json:
        args.json.write_text(json.dumps({"top1": {f"{r} {p}": v for (r, p), v in top1.items()}, "speed": rows},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
