"""The `levit-bench` command: parses arguments and calls into the packages; nothing more.

Every failure the user can cause ends as one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence

from levit_bench import __version__
from levit_bench.errors import LevitBenchError
from levit_bench.interrupts import noticed_interrupts, sigterm_as_interrupt

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line instead of the usage block."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from levit_bench.commands import MODULES

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
    parser.add_argument(
        "--store", metavar="URL",
        help="the results store every command reads and writes: a file, sqlite:///PATH, or "
        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (default: $LEVIT_BENCH_STORE, else <workdir>/results.db)",
    )
    parser.add_argument(
        "--platforms", dest="platforms_file", metavar="FILE",
        help="your own platforms (TOML tables [platforms.NAME] with base, cores, batch, streams, precision, "
        "description), beside those of <workdir>/platforms.toml; see `levit-bench platforms`",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for module in MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:  # Ctrl-C while the parser imports the packages (torch takes a second or two) is an interrupt too
        with noticed_interrupts() as noted:
            args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        noted = [signal.SIGINT]
    if noted:
        print("levit-bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        with sigterm_as_interrupt():
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
    except OSError as e:  # the machine's, not a bug: a full disk, a read-only or missing path
        where = f": {e.filename}" if e.filename else ""
        print(f"levit-bench {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug, not bad input: still one line unless asked for more
        if os.environ.get("LEVIT_BENCH_DEBUG"):
            raise
        print(
            f"levit-bench {args.command}: internal error: {type(e).__name__}: {e} "
            "(set LEVIT_BENCH_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
