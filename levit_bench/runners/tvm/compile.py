"""ONNX to a Relax module, compiled (with a tuning database's schedules) and exported as a library."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from levit_bench.runners.base import RunnerError
from levit_bench.runners.tvm.api import import_tvm
from levit_bench.runners.tvm.schedules import default_schedules
from levit_bench.runners.tvm.target import is_cross
from levit_bench.runners.tvm.wiring import called_as, import_onnx, kernel_wiring

CROSS_COMPILER = "aarch64-linux-gnu-gcc"


def relax_module(onnx_path: Path) -> tuple[Any, list[dict]]:
    """The exported ONNX as a Relax module (weights as constants), fused as for tuning, and
    which graph nodes each of its kernel calls runs (`wiring.py`).

    Tuning extracts its tasks from this fused module and the build applies the tuning
    database to the same module, so the two always see the same PrimFuncs. Kernel parameters
    fed by weights are marked layout-free: a tuned schedule may then read a weight in a layout
    of its own (packed for its tiles), which the build computes once (`prepack_weights`).
    """
    import onnx

    tvm = import_tvm()
    from tvm import relax

    model = onnx.load(str(onnx_path))
    mod, tensors = import_onnx(model)
    mod = tvm.transform.Sequential([
        relax.transform.DecomposeOpsForInference(),
        # channels last, kernels HWIO: a convolution's output channels become the contiguous
        # axis that the default schedules (and MetaSchedule's tiles) vectorise
        relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]}),
        # softmax (and exp, erf, tanh) with TVM's vectorisable polynomial exp instead of a libm
        # call per element, as ONNX Runtime's and OpenVINO's CPU kernels do: LeViT's softmaxes
        # took 24% of tuned levit_128s, at 2.3 ns per element
        relax.transform.FastMathTransform(),
        relax.transform.CanonicalizeBindings(),
        # relax.pipeline.zero_pipeline, with a look at the kernels before FuseTIR renames them
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
    ])(mod)
    fused = relax.transform.FuseOps()(mod)
    wiring = kernel_wiring(mod, fused, tensors, [output.name for output in model.graph.output])
    mod = relax.transform.AttachAttrLayoutFreeBuffers()(relax.transform.FuseTIR()(fused))
    return mod, called_as(wiring, mod)


def prepack_weights(mod):
    """Split each tuned kernel's weight re-layout into a kernel of its own and run it now, on
    the constant weights: the packed weights are baked into the library, and every inference
    runs only the compute (as the tuner measured it)."""
    tvm = import_tvm()
    from tvm import relax

    return tvm.transform.Sequential([relax.transform.SplitLayoutRewritePreproc(),
                                     relax.transform.FoldConstant()])(mod)


@dataclass(frozen=True)
class Compiled:
    executable: Any
    tasks: int  # PrimFuncs in the module
    tuned_tasks: int  # of which the tuning database held a schedule
    wiring: list[dict]  # per kernel call, the graph's tensors it writes and reads


def compile_module(onnx_path: Path, target: dict, database_dir: Path | None) -> Compiled:
    """Compile for `target`, with the tuning database's schedules where it has them."""
    tvm = import_tvm()
    from tvm import relax

    tvm_target = tvm.target.Target(target)
    with tvm_target:
        mod, wiring = relax_module(onnx_path)
        tasks = sum(1 for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc))
        tuned = 0
        if database_dir is not None:
            database = open_database(database_dir)
            with database:
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
            tuned = sum(1 for f in mod.functions.values()
                        if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None
                        and "tirx.is_scheduled" in f.attrs)
            mod = prepack_weights(mod)
            wiring = called_as(wiring, mod)
        mod = default_schedules()(mod)  # what the database did not schedule
        executable = tvm.compile(mod, target=tvm_target, relax_pipeline=relax.pipeline.default_build_pipeline())
    return Compiled(executable, tasks, tuned, wiring)


def open_database(database_dir: Path):
    from tvm.s_tir import meta_schedule as ms

    database_dir.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(
        path_workload=str(database_dir / "database_workload.json"),
        path_tuning_record=str(database_dir / "database_tuning_record.json"),
        module_equality="structural",
    )


def database_records(database_dir: Path) -> int:
    """How many measured schedules the database holds (0 when there is none)."""
    path = database_dir / "database_tuning_record.json"
    if not path.is_file():
        return 0
    with path.open() as f:
        return sum(1 for line in f if line.strip())


def export_library(executable, path: Path, target: dict) -> None:
    """Write the compiled module as a shared library, cross-linked for aarch64 targets."""
    if is_cross(target):
        if shutil.which(CROSS_COMPILER) is None:
            raise RunnerError(
                f"the cross compiler {CROSS_COMPILER} is missing: apt-get install gcc-aarch64-linux-gnu"
            )
        executable.export_library(str(path), cc=CROSS_COMPILER)
    else:
        executable.export_library(str(path))
