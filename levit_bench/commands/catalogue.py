"""`levit-bench models`, `levit-bench platforms`, `levit-bench info` and `levit-bench calibrate`."""

from __future__ import annotations

import argparse

from levit_bench.commands.common import print_json, wide_option


def cmd_models(args: argparse.Namespace) -> int:
    from levit_bench import overview, views

    rows = overview.model_rows(args.names or None)
    print_json(rows) if args.json else views.print_models(rows, wide=args.wide)
    return 0


def cmd_platforms(args: argparse.Namespace) -> int:
    from levit_bench import api, views

    rows = api.platforms(args.platforms_file, args.workdir)
    print_json(rows) if args.json else views.print_platforms(rows, wide=args.wide)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from levit_bench import api, overview, views

    info = {**overview.info(), "peak": api.calibrate(progress=True)}
    print_json(info) if args.json else views.print_info(info)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from levit_bench import api, views

    peak = api.calibrate(force=args.force, progress=True)
    print_json(peak) if args.json else views.print_peak(peak)
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
    wide_option(models)
    models.set_defaults(handler=cmd_models)

    platforms = commands.add_parser(
        "platforms",
        help="list the platforms a run may name: the paper's and your own",
        description="List every platform a run, sweep or profile may name with --platform: the paper's "
        "(xeon, arm, gpu) and your own, defined in <workdir>/platforms.toml or a file given with the global "
        "--platforms FILE. Each of yours is a TOML table [platforms.NAME] with base (xeon, arm or gpu: "
        "its host check and compiler target) and any of cores (a number or \"all\"), batch, streams, "
        "precision and description; --cores, --streams, --batch and --precision on a command "
        "override it.",
    )
    platforms.add_argument("--json", action="store_true", help="machine-readable output")
    wide_option(platforms)
    platforms.set_defaults(handler=cmd_platforms)

    info = commands.add_parser(
        "info",
        help="this host's hardware and software fingerprint",
        description="Describe this host as every measurement records it: CPU model, cores, ISA "
        "flags, memory, OS, GPU, the versions of python and each runtime, and its calibrated peaks "
        "(measured once per host, see `calibrate`).",
    )
    info.add_argument("--json", action="store_true", help="machine-readable output (the peaks under `peak`)")
    info.set_defaults(handler=cmd_info)

    calibrate = commands.add_parser(
        "calibrate",
        help="measure this host's single-core FMA peak, GEMM speed per runtime and memory bandwidth",
        description="Measure, on one exclusively held and pinned core: the FMA peak (a loop of vector "
        "fused multiply-adds compiled by the host C compiler with -march=native), a 1024^3 fp32 GEMM in "
        "each installed runtime's own kernels (and OpenVINO bf16 and ONNX Runtime int8 where the CPU has "
        "the instructions), and the "
        "bandwidth of a 256 MiB copy. Cached per host fingerprint: `info` and the first `sweep` on a "
        "host use it, and every record's peak_fraction is its GFLOP/s over the FMA peak.",
    )
    calibrate.add_argument("--force", action="store_true", help="measure again even if this host is cached")
    calibrate.add_argument("--json", action="store_true", help="machine-readable output")
    calibrate.set_defaults(handler=cmd_calibrate)
