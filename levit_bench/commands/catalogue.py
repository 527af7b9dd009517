"""`levit-bench models` and `levit-bench info`."""

from __future__ import annotations

import argparse

from levit_bench.commands.common import print_json


def cmd_models(args: argparse.Namespace) -> int:
    from levit_bench import overview, views

    rows = overview.model_rows(args.names or None)
    print_json(rows) if args.json else views.print_models(rows)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from levit_bench import overview, views

    info = overview.info()
    print_json(info) if args.json else views.print_info(info)
    return 0


def register(commands) -> None:
    models = commands.add_parser(
        "models",
        help="list every registered model with measured params/MACs and published figures",
        description="List every registered model: parameters and multiply-adds measured on this "
        "version of the code (at the model's own resolution), next to the published figures and "
        "their source.",
    )
    models.add_argument("names", nargs="*", metavar="NAME", help="only these models (default: all)")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.set_defaults(handler=cmd_models)

    info = commands.add_parser(
        "info",
        help="this host's hardware and software fingerprint",
        description="Describe this host as every measurement records it: CPU model, cores, ISA "
        "flags, memory, OS, GPU, and the versions of python and each runtime.",
    )
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=cmd_info)
