"""What the command modules share: JSON output and the work directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from levit_bench.workdir import resolve_workdir


def print_json(payload: object) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def workdir(args: argparse.Namespace) -> Path:
    return resolve_workdir(args.workdir)
