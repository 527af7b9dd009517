"""`levit-bench quantize`: post-training static INT8 of an exported model, for one runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from levit_bench.commands.common import WEIGHTS_METAVAR, positive_int, print_json, workdir


def _print_sidecar(sidecar: dict, path: Path) -> None:
    from rich.table import Table

    from levit_bench.console import stdout_console

    quantization = sidecar["quantization"]
    calib = quantization["calibration"]
    source = (f"{calib['images']} images from {calib['path']}" if calib["kind"] == "directory"
              else f"{calib['images']} synthetic images (levit-bench data synth, seed {calib['seed']})")
    table = Table(title=f"{sidecar['model']} quantized to int8 for {sidecar['runtime']}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in (
        ("files", ", ".join(str(path.with_name(name)) for name in sidecar["files"])),
        ("sha256", sidecar["files_sha256"]),
        ("from", f"{sidecar['fp32']['file']} (fp32, sha256 {sidecar['fp32']['onnx_sha256'][:12]})"),
        ("tool", f"{quantization['tool']} ({quantization['format']})"),
        ("weights / activations", f"{quantization['weights']} / {quantization['activations']}"),
        ("calibration", f"{quantization['method']} on {source}"),
        ("wall time", f"{sidecar['timings_s']['total']:.1f} s"),
    ):
        table.add_row(key, value)
    stdout_console().print(table)


def cmd_quantize(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.exporters.quantize import QuantizeOptions
    from levit_bench.registry import get_spec
    from levit_bench.runners.artifacts import ensure_artifact, quantize_artifact

    spec = get_spec(args.model)
    options = QuantizeOptions(runtime=args.runtime, calib=Path(args.calib) if args.calib else None,
                              calib_size=args.calib_size, per_channel=args.per_channel, method=args.method,
                              activations=args.activations, seed=args.seed)
    label = f"{spec.name} for {args.runtime}"
    with views.ProgressView(f"quantizing {label}") as progress:
        artifact = ensure_artifact(workdir(args), spec.name, args.batch, args.weights,
                                   on_step=lambda step: progress.step(f"{spec.name}: {step}"))
        result = quantize_artifact(artifact, options, on_step=lambda step: progress.step(f"{label}: {step}"))
    if args.json:
        print_json(result.sidecar)
    else:
        _print_sidecar(result.sidecar, result.path)
    return 0


def register(commands) -> None:
    from levit_bench.exporters.pipeline import DEFAULT_BATCH
    from levit_bench.exporters.quantize import ACTIVATIONS, DEFAULT_CALIB_SIZE, METHODS, QUANTIZERS

    parser = commands.add_parser(
        "quantize",
        help="post-training static INT8 of an exported model for onnxruntime or openvino",
        description="Quantize the fp32 ONNX export of a model (exported first if the work directory "
        "has none for these weights and batch) to INT8 for one runtime, calibrated on images run "
        "through the model's eval preprocessing. onnxruntime: quant_pre_process + quantize_static, "
        "QDQ, int8 weights; openvino: NNCF, preset MIXED, CPU, model type TRANSFORMER for the "
        "attention families, saved as OpenVINO IR. The result lies beside the fp32 file as "
        "NAME.int8-RUNTIME.* with a sidecar naming the fp32 file, the method and the calibration "
        "set; `run`, `sweep` and `eval --precision int8` measure it.",
    )
    parser.add_argument("--model", required=True, help="a name from `levit-bench models`")
    parser.add_argument("--runtime", required=True, choices=QUANTIZERS, help="the runtime to quantize for")
    parser.add_argument("--calib", metavar="DIR",
                        help="calibration images: every .jpg/.jpeg/.png below DIR (an ImageFolder's train "
                        "split, say); default: synthetic images drawn as `levit-bench data synth` draws them")
    parser.add_argument("--calib-size", type=positive_int, default=DEFAULT_CALIB_SIZE, metavar="N",
                        help=f"calibration images, spread over DIR, rounded down to whole batches "
                        f"(default {DEFAULT_CALIB_SIZE})")
    parser.add_argument("--weights", metavar=WEIGHTS_METAVAR,
                        help="quantize the export of these weights (default: the work directory's export)")
    parser.add_argument("--batch", type=positive_int, default=DEFAULT_BATCH, metavar="N",
                        help=f"the static batch of the export to quantize (default {DEFAULT_BATCH})")
    granularity = parser.add_mutually_exclusive_group()
    granularity.add_argument("--per-channel", dest="per_channel", action="store_true", default=True,
                             help="one weight scale per output channel (default)")
    granularity.add_argument("--per-tensor", dest="per_channel", action="store_false",
                             help="one weight scale per tensor")
    parser.add_argument("--method", default="minmax", choices=METHODS,
                        help="how activation ranges are set from the calibration images (default minmax; "
                        "entropy: onnxruntime only)")
    parser.add_argument("--activations", choices=ACTIVATIONS,
                        help="onnxruntime: uint8 (default, asymmetric) or int8 (symmetric) activations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic calibration images")
    parser.add_argument("--json", action="store_true", help="print the sidecar instead of a table")
    parser.set_defaults(handler=cmd_quantize)
