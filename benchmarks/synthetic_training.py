"""Learning curves of LeViT-128S on synthetic data, with and without a teacher, measured here.

Draws a synthetic ImageFolder dataset, trains a teacher (LeViT-192, no distillation), then
LeViT-128S twice with the same seed and schedule: without a teacher (both heads learn the
labels) and with hard distillation from that teacher. Prints one row per epoch and writes
curves.png (validation top-1 and training loss per epoch) beside the runs.

Run: .venv/bin/python benchmarks/synthetic_training.py [--out DIR] [--epochs 8] [--classes 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from levit_bench.cli import main as cli


def _train(model: str, data: Path, out: Path, epochs: int, extra: list[str]) -> tuple[list[dict], float]:
    started = time.perf_counter()
    code = cli(["train", "--model", model, "--data", str(data), "--out", str(out), "--epochs", str(epochs),
                "--batch-size", "32", "--lr", "1e-3", "--warmup-epochs", "1", "--workers", "2", *extra])
    if code != 0:
        raise SystemExit(f"training {model} into {out} failed")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return log, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: a temporary directory")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--teacher-epochs", type=int, default=12)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=64)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="synthetic-training-"))
    data = out / "data"
    if not data.exists():
        cli(["data", "synth", "--out", str(data), "--classes", str(args.classes), "--per-class",
             str(args.per_class), "--val-per-class", str(args.per_class // 4), "--size", "96", "--seed", "0"])

    teacher_log, teacher_s = _train("levit_192", data, out / "teacher", args.teacher_epochs, [])
    runs = {"no teacher": ["--distillation", "none"],
            "hard distillation": ["--teacher", f"levit_192:{out / 'teacher' / 'best.pth'}", "--distillation", "hard"]}
    logs = {}
    for label, extra in runs.items():
        logs[label], seconds = _train("levit_128s", data, out / label.replace(" ", "-"), args.epochs, extra)
        print(f"# levit_128s, {label}: {seconds / 60:.1f} min")
    print(f"# teacher levit_192: best top-1 {max(r['top1'] for r in teacher_log):.1f}% "
          f"after {args.teacher_epochs} epochs ({teacher_s / 60:.1f} min)")
    print("\n| epoch | " + " | ".join(f"{label} loss | {label} top-1" for label in logs) + " |")
    print("| --- |" + " --- | --- |" * len(logs))
    for epoch in range(args.epochs):
        cells = " | ".join(f"{log[epoch]['loss']:.3f} | {log[epoch]['top1']:.1f}%" for log in logs.values())
        print(f"| {epoch + 1} | {cells} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top1, loss) = plt.subplots(1, 2, figsize=(10, 4), dpi=150)
    for label, log in logs.items():
        epochs = [r["epoch"] for r in log]
        top1.plot(epochs, [r["top1"] for r in log], marker="o", label=f"LeViT-128S, {label}")
        loss.plot(epochs, [r["loss"] for r in log], marker="o", label=f"LeViT-128S, {label}")
    top1.axhline(max(r["top1"] for r in teacher_log), color="grey", linestyle="--", label="teacher (LeViT-192) best")
    top1.axhline(100 / args.classes, color="grey", linestyle=":", label="chance")
    top1.set(xlabel="epoch", ylabel="validation top-1 (%)", title=f"synthetic data, {args.classes} classes")
    loss.set(xlabel="epoch", ylabel="training loss", title="training loss (mixup/CutMix targets)")
    top1.legend(fontsize=8)
    loss.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "curves.png")
    print(f"\n# curves: {out / 'curves.png'}")


if __name__ == "__main__":
    main()
