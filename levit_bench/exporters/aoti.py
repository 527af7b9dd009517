"""torch.compile for inference, ahead of time: the fused model, in its `inductor` graph form
(`models/levit_fused.py`: residuals as `stream + h @ W`, so every Linear is oneDNN's, with the
add fused in), exported by torch.export and compiled by Inductor with freezing (weights folded in
as constants and prepacked for oneDNN), packaged by AOTInductor as a `.pt2` that any later
process loads without compiling.

`max-autotune` also benchmarks Inductor's C++ GEMM templates against the library kernels for
every GEMM shape, on the cores the compile runs on, and keeps the faster: its compile takes
minutes, not seconds. Inductor writes the thread count it compiled for into its kernels, so a
package is for one count of threads.
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from levit_bench.exporters.fuse import fuse_for_inference, graph_form

COMPILE_MODES = ("default", "max-autotune")
# max-autotune writes every GEMM's benchmarked choices to stderr: a table per shape, not the user's
_QUIET = {"autotune_num_choices_displayed": 0, "max_autotune_report_choices_stats": False}
# a call of the package's C++ wrapper into a library op: oneDNN's `_linear_pointwise[_binary]` and
# `mkldnn__convolution_pointwise`, or aten's `addmm_out`, `bmm_out`, `mm_out` (MKL's BLAS on x86)
_LIBRARY_CALL = re.compile(r"\baoti_torch_cpu_(\w+)\(")


def compile_package(reference: nn.Module, batch: int, resolution: int, compile_mode: str, out: Path) -> dict:
    """Write `reference` (the unfused eval model) compiled for batches of `batch` as an AOTInductor
    package to `out`, with the threads torch has now."""
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {compile_mode}")
    model = graph_form(fuse_for_inference(reference), "inductor")
    example = torch.zeros(batch, 3, resolution, resolution)
    # enable_kernel_profile: each generated kernel opens a profiler range under its own name (a
    # thread-local check when no profiler runs), so one package is both measured and profiled
    configs = {"freezing": True, "max_autotune": compile_mode == "max-autotune", "cpp.enable_kernel_profile": True}
    with torch.no_grad(), warnings.catch_warnings(), tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        warnings.simplefilter("ignore")  # the exporter's own deprecation notices
        program = torch.export.export(model, (example,))
        package = Path(scratch) / "model.pt2"  # AOTInductor wants the .pt2 suffix
        with torch._inductor.config.patch(_QUIET):
            torch._inductor.aoti_compile_and_package(program, package_path=str(package), inductor_configs=configs)
        os.replace(package, out)
    return {"inductor_configs": configs, "compiled_threads": torch.get_num_threads(), "library_calls": library_calls(out)}


def library_calls(package: Path) -> dict[str, int]:
    """How many times one call of the package calls each library op (what Inductor did not
    generate itself), read from the C++ wrapper the package carries."""
    with zipfile.ZipFile(package) as archive:
        wrappers = [name for name in archive.namelist() if name.endswith(".wrapper.cpp")]
        source = "".join(archive.read(name).decode() for name in wrappers)
    return dict(sorted(collections.Counter(_LIBRARY_CALL.findall(source)).items()))
