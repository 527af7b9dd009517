"""The `levit-bench` command: parses arguments and calls into the packages; nothing more.

Every failure the user can cause ends as one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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
    from levit_bench import overview, views

    rows = overview.model_rows(args.names or None)
    if args.json:
        _print_json(rows)
    else:
        views.print_models(rows)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from levit_bench import overview, views

    info = overview.info()
    if args.json:
        _print_json(info)
    else:
        views.print_info(info)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.console import stderr_console
    from levit_bench.exporters.pipeline import ExportOptions, export_model
    from levit_bench.workdir import resolve_workdir

    options = ExportOptions(
        model=args.model,
        out_dir=Path(args.out) if args.out else resolve_workdir(args.workdir) / "models",
        weights=args.weights,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        simplify=not args.no_simplify,
        seed=args.seed,
    )
    with stderr_console().status(f"exporting {args.model}") as status:
        result = export_model(options, on_step=lambda step: status.update(f"{args.model}: {step}"))
    if args.json:
        _print_json(result.sidecar)
    else:
        views.print_export(result.sidecar, str(result.onnx_path))
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

    _add_export(commands)
    return parser


def _add_export(commands) -> None:
    from levit_bench.exporters.onnx_graph import DEFAULT_OPSET
    from levit_bench.exporters.pipeline import DEFAULT_BATCH

    export = commands.add_parser(
        "export",
        help="fold, export to ONNX, simplify and verify one model",
        description="Fold every BatchNorm into its Conv/Linear, materialise the attention biases, "
        "merge the two heads, export with torch.onnx, simplify with onnxsim, check with "
        "onnx.checker, and verify in ONNX Runtime against the unfused PyTorch model on 64 seeded "
        "inputs. Writes DIR/NAME.onnx and DIR/NAME.json only if every check passes.",
    )
    export.add_argument("--model", required=True, help="a name from `levit-bench models`")
    export.add_argument("--weights", metavar="PATH|URL",
                        help="checkpoint (official, timm or levit-bench layout); default: random init")
    export.add_argument("--out", metavar="DIR", help="output directory (default: <workdir>/models)")
    batch = export.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="N",
                       help=f"static batch size (default {DEFAULT_BATCH}, the paper's CPU batch)")
    batch.add_argument("--dynamic-batch", action="store_true", help="a symbolic batch axis instead")
    export.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                        help=f"ONNX opset (default {DEFAULT_OPSET})")
    export.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    export.add_argument("--seed", type=int, default=0, help="seed of the random init without --weights")
    export.add_argument("--json", action="store_true", help="print the sidecar instead of a table")
    export.set_defaults(handler=cmd_export)


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
