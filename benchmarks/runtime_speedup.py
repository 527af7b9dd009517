"""Images/s of every LeViT on `xeon` (1 pinned thread, batch 16) under each runtime.

Measures, in one run and interleaved so drift hits every runtime alike: torch eager unfused
(the paper's starting point), torch traced fused (the paper's speed_test), ONNX Runtime and
OpenVINO f32, plus OpenVINO bf16 as a labelled extra. Prints images/s (median of the repeats),
the CV of images/s over the repeats, the speed-up ratios, and the GFLOP/s the best f32 runtime
reaches as a share of the host's calibrated single-core FMA peak and of the best fp32 GEMM
among the runtimes' own kernels (`levit-bench calibrate`; torch's `a @ b` is MKL, which on
AMD CPUs reaches well under half the peak, so it is only the drift control here).

Goals: best runtime >= 1.5x traced fused and >= 3x eager unfused; CV over 3 repeats <= 3%.
Run: .venv/bin/python benchmarks/runtime_speedup.py [--repeats 3] [--models ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from levit_reference import randomise  # noqa: E402

from levit_bench.environment import host_info  # noqa: E402
from levit_bench.exporters.pipeline import ExportOptions, export_model  # noqa: E402
from levit_bench.models.checkpoints import save_weights  # noqa: E402
from levit_bench.models.levit import LEVIT_CONFIGS  # noqa: E402
from levit_bench.platforms import get_platform  # noqa: E402
from levit_bench.registry import get_spec  # noqa: E402
from levit_bench.store import open_store  # noqa: E402
from levit_bench.runners import core_locks  # noqa: E402
from levit_bench.runners.calibrate import calibrate  # noqa: E402
from levit_bench.runners.session import RunRequest, new_run_id, run_cell  # noqa: E402

CONFIGS = {  # label -> (runtime, mode, precision)
    "eager unfused": ("torch", "unfused", None),
    "traced fused": ("torch", "traced", None),
    "onnxruntime": ("onnxruntime", None, None),
    "openvino f32": ("openvino", None, None),
    "openvino bf16": ("openvino", None, "bf16"),
}
F32 = ("traced fused", "eager unfused", "onnxruntime", "openvino f32")


def sgemm_gflops(seconds: float = 3.0, n: int = 2048) -> float:
    """Single-thread torch fp32 GEMM rate on the pinned core (median over `seconds`).

    Taken between the runs, a control: a kernel that never changes, so its spread is the
    machine's own noise (not a ceiling: see the calibrated peaks).
    """
    with core_locks.pinned(get_platform("xeon")):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        samples = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            a @ b
            samples.append(time.perf_counter() - t0)
        torch.set_num_threads(threads)
    return 2 * n**3 / statistics.median(samples) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=list(LEVIT_CONFIGS))
    parser.add_argument("--protocol", default="default")
    args = parser.parse_args()
    host = host_info()
    print(f"host: {host.cpu_model} ({host.fingerprint}), platform xeon: 1 pinned thread, batch 16, "
          f"protocol {args.protocol}, {args.repeats} repeats")
    calibration = calibrate()
    peak = calibration["fma_gflops"]
    gemm = max(g for library, g in calibration["gemm_gflops"].items() if not library.endswith(("bf16", "int8")))
    print(f"calibrated single core: FMA peak {peak:.0f} GFLOP/s, best fp32 GEMM {gemm:.0f} GFLOP/s "
          f"({', '.join(f'{k} {v:.0f}' for k, v in calibration['gemm_gflops'].items())})")
    results: dict[str, dict[str, list[float]]] = {}
    control: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store, run_id = open_store(work), new_run_id()
        for name in args.models:
            weights = work / f"{name}.safetensors"
            save_weights(randomise(get_spec(name).build()), weights, name)
            export_model(ExportOptions(model=name, out_dir=work / "models", weights=str(weights)))
            results[name] = {label: [] for label in CONFIGS}
            for repeat in range(args.repeats):
                control.append(sgemm_gflops())
                for label, (runtime, mode, precision) in CONFIGS.items():
                    record = run_cell(RunRequest(name, runtime, "xeon", mode=mode, precision=precision,
                                                 protocol=args.protocol, run_id=run_id), work)
                    store.insert_or_keep(record)
                    if record["status"] != "ok":
                        print(f"{name} {label}: FAILED {record['error']}")
                        continue
                    results[name][label].append(record["images_per_s"])
            print(f"measured {name}", flush=True)

    print()
    header = f"{'model':<11}" + "".join(f"{label:>15}" for label in CONFIGS)
    print("images/s (median of repeats; CV of images/s over repeats in brackets)")
    print(header)
    worst_cv = 0.0
    goals = []
    for name, by_label in results.items():
        cells = []
        medians = {}
        for label, values in by_label.items():
            if not values:
                cells.append(f"{'failed':>15}")
                continue
            medians[label] = statistics.median(values)
            cv = statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else 0.0
            if label in F32:
                worst_cv = max(worst_cv, cv)
            cells.append(f"{medians[label]:>8.1f} ({cv:4.1%})")
        print(f"{name:<11}" + "".join(cells))
        goals.append((name, medians))

    print()
    print(f"{'model':<11}{'best f32':>15}{'/traced':>9}{'/unfused':>10}{'GFLOP/s':>9}{'% peak':>8}{'% GEMM':>8}"
          f"{'bf16/traced':>13}{'bf16/unfused':>14}")
    met = True
    for name, medians in goals:
        best = max((label for label in F32 if label in medians), key=medians.get)
        macs = get_spec(name).measured_counts()[1]
        gflops = medians[best] * macs * 2 / 1e9
        vs_traced, vs_unfused = medians[best] / medians["traced fused"], medians[best] / medians["eager unfused"]
        met &= vs_traced >= 1.5 and vs_unfused >= 3.0
        bf16 = medians.get("openvino bf16")
        extra = (f"{bf16 / medians['traced fused']:>12.2f}x{bf16 / medians['eager unfused']:>13.2f}x"
                 if bf16 else f"{'-':>13}{'-':>14}")
        print(f"{name:<11}{best:>15}{vs_traced:>8.2f}x{vs_unfused:>9.2f}x{gflops:>9.0f}{gflops / peak:>8.0%}"
              f"{gflops / gemm:>8.0%}{extra}")
    print()
    print(f"goal best f32 >= 1.5x traced and >= 3x unfused: {'met' if met else 'NOT met'}")
    print(f"goal CV of images/s over {args.repeats} repeats <= 3%: worst f32 CV {worst_cv:.1%}, "
          f"{'met' if worst_cv <= 0.03 else 'NOT met'}")
    control_cv = statistics.stdev(control) / statistics.fmean(control) if len(control) > 1 else 0.0
    print(f"machine control (a fixed torch sgemm, 3 s before every repeat): {min(control):.0f}-{max(control):.0f} "
          f"GFLOP/s, CV {control_cv:.1%}: the noise floor no runtime's CV can go below")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
