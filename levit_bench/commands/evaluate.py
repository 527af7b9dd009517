"""`levit-bench eval`: measured top-1 / top-5 of given weights, stored for the reports."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from levit_bench.commands.common import WEIGHTS_METAVAR, print_json, workdir


def _print_record(record: dict) -> None:
    from rich.table import Table

    from levit_bench.console import stdout_console

    table = Table(title=f"Accuracy of {record['model']} ({record['runtime']}, {record['precision']})",
                  show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in (
        ("top-1", f"{record['top1']:.2f}%  ({record['correct_top1']}/{record['images']})"),
        ("top-5", f"{record['top5']:.2f}%  ({record['correct_top5']}/{record['images']})"),
        ("dataset", f"{record['dataset']} ({record['dataset_classes']} classes, {record['dataset_images']} images"
                    + (f", {record['images']} evaluated)" if record["images"] != record["dataset_images"] else ")")),
        ("weights", f"{record['weights']['source']} (sha256 {record['weights_id'][:12]})"),
        ("runtime", f"{record['runtime']} {record.get('runtime_version') or ''}"
                    + (f", {record['artifact']}" if record.get("artifact") else "")),
        ("wall time", f"{record['seconds']:.1f} s"),
    ):
        table.add_row(key, value)
    stdout_console().print(table)


def cmd_eval(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.api import store_location
    from levit_bench.store import ResultsStore, save_record
    from levit_bench.runners.accuracy import EvalOptions, run_eval

    options = EvalOptions(model=args.model, weights=args.weights, data=Path(args.data).expanduser(),
                          runtime=args.runtime, batch_size=args.batch_size, workers=args.workers,
                          limit=args.limit, device=args.device, precision=args.precision)
    work = workdir(args)
    where = store_location(work, args.store)
    ResultsStore(where, create=False).check()  # before evaluating: its result must have a place
    label = f"{args.model} on {args.runtime}" + (f" {args.precision}" if args.precision != "fp32" else "")
    # a spinner while the checkpoint, dataset and runtime are prepared, then a bar over the images
    with views.ProgressView(f"{label}: starting") as progress:
        record = run_eval(
            options, work, on_step=lambda step: progress.step(f"{label}: {step}"),
            on_start=lambda total: progress.start(total, label),
            on_batch=lambda acc: progress.update(acc.images, info=f"top-1 {acc.top1:.1f}% top-5 {acc.top5:.1f}%"),
        )
    save_record(where, record, table="accuracy")
    if args.json:
        print_json(record)
    else:
        _print_record(record)
    return 0


def register(commands) -> None:
    from levit_bench.runtimes import RUNTIMES
    from levit_bench.runners.accuracy import DEFAULT_BATCH

    workers = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    evaluate = commands.add_parser(
        "eval",
        help="measure top-1 / top-5 of given weights on an ImageFolder directory, and store it",
        description="Evaluate a checkpoint on DIR/<class>/<image> with the model's own eval "
        "preprocessing (resize, centre crop, normalise) and store top-1 / top-5 in "
        "<workdir>/results.db, where reports use it as the `measured` accuracy of every speed "
        "measurement of the same weights. With --runtime torch the checkpoint runs in PyTorch "
        "(eval mode); with onnxruntime, openvino or tvm the ONNX artifact exported from the same "
        "weights runs in that runtime (exported first if the work directory has none), with executorch "
        "the same weights lowered to XNNPACK (a .pte kept in the work directory), so the "
        "accuracy cost of export and runtime is measured. A checkpoint that names its classes (levit-bench's "
        "trainer's) is scored by class name, and a folder whose classes differ from them is refused, naming "
        "the difference; otherwise the dataset must have as many classes as the checkpoint has outputs, in the "
        "same (sorted) order as at training.",
    )
    evaluate.add_argument("--model", required=True, metavar="NAME", help="a name from `levit-bench models`")
    evaluate.add_argument("--weights", required=True, metavar=WEIGHTS_METAVAR,
                          help="the checkpoint to evaluate (levit-bench, official, timm or transformers layout)")
    evaluate.add_argument("--data", required=True, metavar="DIR",
                          help="an ImageFolder directory: DIR/<class>/*.jpg|*.jpeg|*.png (e.g. a val split)")
    evaluate.add_argument("--runtime", default="torch", choices=list(RUNTIMES),
                          help="where the model runs (default torch); the others run its ONNX export "
                          "(executorch: its .pte) on this CPU, on every core")
    evaluate.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, metavar="N",
                          help=f"images per batch (default {DEFAULT_BATCH}, the CPU platforms' batch); for "
                          "the exported runtimes, the artifact's static batch (the last batch is padded, "
                          "the padding ignored)")
    evaluate.add_argument("--workers", type=int, default=workers, metavar="N",
                          help=f"image decoding processes (default {workers}; 0: in this process)")
    evaluate.add_argument("--limit", type=int, metavar="N",
                          help="evaluate N images spread evenly over the dataset (every class "
                          "represented when N >= classes) instead of all")
    evaluate.add_argument("--precision", default="fp32", choices=("fp32", "int8"),
                          help="int8: run the export quantized for --runtime (onnxruntime or openvino): the "
                          "one `levit-bench quantize` made, else quantized first on synthetic images "
                          "(executorch: PT2E-quantized for XNNPACK on synthetic calibration images); "
                          "the report sets its top-1 beside the fp32 one of the same weights")
    evaluate.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                          help="torch only: where the model runs (default cpu)")
    evaluate.add_argument("--json", action="store_true", help="print the stored record as JSON")
    evaluate.set_defaults(handler=cmd_eval)
