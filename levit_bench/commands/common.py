"""What the command modules share: JSON output and the work directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from levit_bench.workdir import resolve_workdir

# what --weights takes, wherever it is taken (models/checkpoints.py reads them all)
WEIGHTS_METAVAR = "PATH|DIR|URL|hf-hub:ORG/NAME[@REV]"


def print_json(payload: object) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def workdir(args: argparse.Namespace) -> Path:
    return resolve_workdir(args.workdir)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch of 0 is refused, never read as 'the default')."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a share strictly between 0 and 1 (0.02 is 2%)."""
    value = non_negative_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (0.02 is 2%), not {text}")
    return value


def calibrated_peak(force: bool = False) -> dict:
    """This host's calibration (runners.calibrate), measured with a progress display when not cached."""
    from levit_bench import views
    from levit_bench.runners.calibrate import calibrate, cached

    if not force and (found := cached()) is not None:
        return found
    with views.ProgressView("calibrating this host (once; cached)") as progress:
        return calibrate(on_step=lambda step: progress.step(f"calibrating: {step}"), force=force)


def onnx_options(parser: argparse.ArgumentParser, verb: str = "measure") -> None:
    """--onnx FILE [--name NAME] [--resolution R]: a user's own ONNX image model."""
    group = parser.add_argument_group("your own ONNX model")
    group.add_argument("--onnx", metavar="FILE",
                       help=f"{verb} this ONNX model (one float32 N x 3 x R x R input): family `user`, "
                       "params and MACs counted from its graph, every runtime's outputs gated against ONNX "
                       "Runtime fp32 (torch cannot run it)")
    group.add_argument("--name", metavar="NAME", help="its name in the store and the report (default: the file's stem)")
    group.add_argument("--resolution", type=positive_int, metavar="R",
                       help="its input size, where the graph leaves height and width symbolic")


def use_onnx(args: argparse.Namespace) -> str | None:
    """Register `--onnx FILE` in this process and return its model name (None without --onnx).

    A graph with a static batch is measured at that batch (an explicit other --batch is refused).
    """
    from levit_bench.errors import LevitBenchError
    from levit_bench.exporters.onnx_facts import inspect_onnx
    from levit_bench.exporters.onnx_import import model_name, register

    if not args.onnx:
        if args.name or args.resolution:
            raise LevitBenchError("--name and --resolution describe an --onnx FILE; give one")
        return None
    if getattr(args, "weights", None):
        raise LevitBenchError("--weights does not apply to --onnx: the ONNX file holds its own weights")
    info = inspect_onnx(Path(args.onnx), args.resolution)
    name = model_name(info.path, args.name)
    register(info, name)
    if info.batch is not None and hasattr(args, "batch"):
        if args.batch not in (None, info.batch):
            raise LevitBenchError(f"{Path(args.onnx).name} has a fixed batch of {info.batch}, not --batch "
                                  f"{args.batch}: export it with a symbolic batch to measure others")
        args.batch = info.batch
    return name
