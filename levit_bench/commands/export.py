"""`levit-bench export`."""

from __future__ import annotations

import argparse
from pathlib import Path

from levit_bench.commands.common import WEIGHTS_METAVAR, positive_int, print_json, workdir


def cmd_export(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.exporters.pipeline import ExportOptions, export_model

    options = ExportOptions(
        model=args.model,
        out_dir=Path(args.out) if args.out else workdir(args) / "models",
        weights=args.weights,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        simplify=not args.no_simplify,
        seed=args.seed,
    )
    with views.ProgressView(f"exporting {args.model}") as progress:
        result = export_model(options, on_step=lambda step: progress.step(f"{args.model}: {step}"))
    if args.json:
        print_json(result.sidecar)
    else:
        views.print_export(result.sidecar, str(result.onnx_path))
    return 0


def register(commands) -> None:
    from levit_bench.exporters.onnx_graph import DEFAULT_OPSET, MIN_OPSET
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
    export.add_argument("--weights", metavar=WEIGHTS_METAVAR,
                        help="checkpoint (official, timm, transformers or levit-bench layout); default: random init")
    export.add_argument("--out", metavar="DIR", help="output directory (default: <workdir>/models)")
    batch = export.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=positive_int, default=DEFAULT_BATCH, metavar="N",
                       help=f"static batch size (default {DEFAULT_BATCH}, the paper's CPU batch)")
    batch.add_argument("--dynamic-batch", action="store_true", help="a symbolic batch axis instead")
    export.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                        help=f"ONNX opset, from {MIN_OPSET} to the newest that both the installed onnx "
                        f"and onnxruntime support (default {DEFAULT_OPSET})")
    export.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    export.add_argument("--seed", type=int, default=0, help="seed of the random init without --weights")
    export.add_argument("--json", action="store_true", help="print the sidecar instead of a table")
    export.set_defaults(handler=cmd_export)
