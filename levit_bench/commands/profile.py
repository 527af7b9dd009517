"""`levit-bench profile`: where one cell's time goes, per model component, by the runtime's own profiler."""

from __future__ import annotations

import argparse

from levit_bench.commands.common import (WEIGHTS_METAVAR, compile_mode_option, cores_options, non_negative_float, onnx_options,
                                         positive_int, print_json)


def cmd_profile(args: argparse.Namespace) -> int:
    from levit_bench import api, views

    result = api.profile(args.model, args.runtime, args.platform, onnx=args.onnx, name=args.name,
                         resolution=args.resolution, batch=args.batch, precision=args.precision, mode=args.mode,
                         compile_mode=args.compile_mode,
                         protocol=args.protocol, weights=args.weights, wait_timeout=args.wait_timeout,
                         cores=args.cores, streams=args.streams, platforms_file=args.platforms_file,
                         workdir=args.workdir, store=args.store, progress=True)
    if args.json:
        print_json(result)
    else:
        views.print_profile(result)
    return 0


def register(commands) -> None:
    from levit_bench.registry import normalise_name
    from levit_bench.runners.core_locks import DEFAULT_WAIT_TIMEOUT_S
    from levit_bench.runtimes import all_precisions
    from levit_bench.runners.measure import PROTOCOLS
    from levit_bench.runtimes import RUNTIMES

    profile = commands.add_parser(
        "profile",
        help="where one model's time goes on one runtime: per component, by the runtime's own profiler",
        description="Measure one cell as `run` does (unprofiled median), then profile it with the runtime's "
        "own profiler (ONNX Runtime's JSON trace, OpenVINO's PERF_COUNT, torch.profiler, TVM's VM instrument, "
        "ExecuTorch's ETDump) "
        "over the protocol's calls, and tell the time per "
        "component of the model (LeViT: stem, attention.qkv, attention.scores, attention.mix, "
        "attention.proj, mlp, shrink, residual, head, layout; every kernel no component claims is `other`), "
        "with each component's FLOPs and GFLOP/s. The profiler's overhead is printed: its total per call "
        "against the unprofiled median. The profile is stored: `levit-bench report` draws each model's "
        "component times per runtime and every cell on a roofline.",
    )
    profile.add_argument("--model", type=normalise_name, metavar="NAME", help="a registered model (or --onnx FILE)")
    profile.add_argument("--runtime", required=True, choices=list(RUNTIMES))
    profile.add_argument("--platform", required=True, help="xeon, arm, gpu or one of yours (as `run`)")
    profile.add_argument("--batch", type=positive_int, metavar="N", help="batch size (default: the platform's)")
    profile.add_argument("--mode", choices=sorted({m for r in RUNTIMES.values() for m in r.modes}),
                         help="the runtime's mode (as `run`)")
    compile_mode_option(profile)
    profile.add_argument("--precision", choices=all_precisions(), help="as `run`")
    profile.add_argument("--protocol", default="default", choices=list(PROTOCOLS),
                         help="the calls measured and profiled (as `run`)")
    profile.add_argument("--weights", metavar=WEIGHTS_METAVAR, help="profile these weights (exported if needed)")
    profile.add_argument("--wait-timeout", type=non_negative_float, default=DEFAULT_WAIT_TIMEOUT_S, metavar="S",
                         help="how long to wait for free cores (as `run`)")
    cores_options(profile)
    profile.add_argument("--json", action="store_true",
                         help="print the profile as JSON (model, runtime, total_ms, median_ms, components, ...)")
    onnx_options(profile, verb="profile")
    profile.set_defaults(handler=cmd_profile)
