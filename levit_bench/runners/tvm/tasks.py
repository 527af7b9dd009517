"""The tuning tasks of one or more models: every distinct kernel once, with how often each
model calls it.

A task is a PrimFunc as MetaSchedule sees it (its workload). Two models (or two batch sizes)
that call a structurally equal kernel share its task, so it is tuned once and the database's
records serve both: LeViT-128S and LeViT-192 share their stem and several stages' shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from levit_bench.runners.tvm.api import import_tvm
from levit_bench.runners.tvm.compile import relax_module


@dataclass
class Task:
    name: str
    workload: Any  # IRModule whose `main` is the kernel
    target: Any  # tvm.target.Target
    calls: dict[str, int] = field(default_factory=dict)  # model -> calls per inference

    @property
    def weight(self) -> int:
        return sum(self.calls.values())


def model_tasks(onnx_paths: dict[str, Path], target) -> list[Task]:
    """The tasks of every model in `onnx_paths` (name -> exported ONNX), each workload once."""
    import_tvm()
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    by_hash: dict[int, list[Task]] = {}
    tasks: list[Task] = []
    for model, path in onnx_paths.items():
        with target:
            mod, _ = relax_module(path)
        for extracted in ms.relax_integration.extract_tasks(mod, target):
            workload = extracted.dispatched[0]
            same = by_hash.setdefault(tvm_ffi.structural_hash(workload), [])
            task = next((t for t in same if tvm_ffi.structural_equal(t.workload, workload)), None)
            if task is None:
                task = Task(extracted.task_name, workload, target)
                same.append(task)
                tasks.append(task)
            task.calls[model] = task.calls.get(model, 0) + int(extracted.weight)
    return tasks


def estimated_ms(tasks: list[Task], seconds: list[float | None], model: str) -> float | None:
    """A model's time per batch as the sum of its kernels' measured times (None: not all measured)."""
    total = 0.0
    for task, best in zip(tasks, seconds):
        if model in task.calls:
            if best is None:
                return None
            total += task.calls[model] * best
    return total * 1e3
