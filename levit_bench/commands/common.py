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
