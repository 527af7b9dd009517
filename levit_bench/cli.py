"""The `levit-bench` command: parses arguments and calls into the packages; nothing more.

Every failure the user can cause ends as one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from levit_bench import __version__
from levit_bench.errors import LevitBenchError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line instead of the usage block."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _print_json(payload: object) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def cmd_models(args: argparse.Namespace) -> int:
    from levit_bench import overview

    rows = overview.model_rows(args.names or None)
    if args.json:
        _print_json(rows)
    else:
        overview.print_models(rows)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from levit_bench import overview

    info = overview.info()
    if args.json:
        _print_json(info)
    else:
        overview.print_info(info)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="levit-bench",
        description="Measure the speed-accuracy trade-off of LeViT and its baselines across "
        "inference runtimes and hardware platforms.",
    )
    parser.add_argument("--version", action="version", version=f"levit-bench {__version__}")
    parser.add_argument(
        "--workdir",
        help="where artifacts, results.db and reports go "
        "(default: $LEVIT_BENCH_HOME, else ./levit-bench-out)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except LevitBenchError as e:
        print(f"levit-bench {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"levit-bench {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug, not bad input: still one line unless asked for more
        if os.environ.get("LEVIT_BENCH_DEBUG"):
            raise
        print(
            f"levit-bench {args.command}: internal error: {type(e).__name__}: {e} "
            "(set LEVIT_BENCH_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
