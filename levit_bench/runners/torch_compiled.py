"""torch:compiled: the fused model compiled by Inductor ahead of time (`exporters/aoti.py`), kept
keyed in the work directory as a `.pt2`, and loaded by `torch._inductor.aoti_load_package`
in every process that measures it, so no round compiles anything."""

from __future__ import annotations

from pathlib import Path

import torch

from levit_bench import environment
from levit_bench.exporters import aoti, fuse, keyed
from levit_bench.models import levit_fused
from levit_bench.runners.artifacts import Artifact

PT2_FORMAT = 1  # what a sidecar must say for its package to be reused
MODES = {"compiled": "default", "compiled-max-autotune": "max-autotune"}  # torch mode -> Inductor's mode


def ensure_pt2(artifact: Artifact, batch: int, compile_mode: str, workdir: Path) -> keyed.Built:
    """The package of `artifact`'s model for `batch`, compiled now for the threads torch has (and
    this CPU's instruction set) unless the work directory has one made from these very weights
    by this code."""
    host = environment.host_info()
    wanted = {
        "format": PT2_FORMAT, "model": artifact.model, "from_sha256": artifact.sha256, "weights": artifact.weights,
        "batch": batch, "precision": "fp32", "input_shape": [batch, 3, artifact.resolution, artifact.resolution],
        "compile_mode": compile_mode, "threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "cpu_model": host.cpu_model, "isa": list(host.isa),
        "code_sha256": keyed.code_fingerprint(aoti, fuse, levit_fused),
    }

    def compile_to(out: Path) -> dict:
        return aoti.compile_package(artifact.reference_model, batch, artifact.resolution, compile_mode, out)

    name = f"{artifact.model}.{compile_mode}.pt2"
    return keyed.build_keyed(workdir, "inductor", artifact.model, name, wanted, compile_to)


def load_package(path: Path):
    """The compiled model in `path`, callable on a batch (it returns the logits)."""
    return torch._inductor.aoti_load_package(str(path))
