"""Top-1 / top-5 of given weights on an ImageFolder directory: in PyTorch, or in a runtime.

With `torch`, the checkpoint is loaded into the eval-mode model (LeViT averages its two heads).
With another runtime, the ONNX artifact exported from the same weights is run, so the record
measures what export and the runtime cost in accuracy; with `precision` int8, the export
quantized for that runtime runs, and the record measures what int8 costs. Either way the record's `weights_id`
is the checkpoint's sha256: the id the reports use to pair it with speed measurements.
"""

from __future__ import annotations

import dataclasses
import platform as host_platform
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from levit_bench import environment
from levit_bench.errors import LevitBenchError
from levit_bench.models.checkpoints import Checkpoint, read_checkpoint, weights_id
from levit_bench.platforms import ARM, Platform, get_platform
from levit_bench.registry import create_model, get_spec
from levit_bench.runners.artifacts import ensure_artifact, ensure_quantized
from levit_bench.runners.base import Runner
from levit_bench.runtimes import RUNTIMES, get_runtime
from levit_bench.train.data import ImageFolder, class_folders, eval_transform, make_loader, spread_subset
from levit_bench.train.evaluate import Accuracy, OnBatch, evaluate_module

DEFAULT_BATCH = 16  # the paper's CPU batch: an exported runtime then reuses the artifact `run` measures
_NAMES_SHOWN = 8  # class names an error line lists of each kind (missing, unexpected, trained on)
_NAME_CHARS = 48  # and characters of each name shown


def evaluate_runner(runner, loader: DataLoader, batch: int, on_batch: OnBatch = lambda accuracy: None) -> Accuracy:
    """Accuracy of a loaded runtime Runner; a short last batch is padded to `batch`, the padding dropped."""
    accuracy = Accuracy()
    for images, labels in loader:
        array = images.numpy()
        count = array.shape[0]
        if count < batch:
            array = np.concatenate([array, np.zeros((batch - count, *array.shape[1:]), array.dtype)])
        outputs = runner.to_numpy(runner(runner.to_input(np.ascontiguousarray(array, np.float32))))
        accuracy.add(torch.from_numpy(np.asarray(outputs[:count], np.float32)), labels)
        on_batch(accuracy)
    return accuracy


@dataclass(frozen=True)
class EvalOptions:
    model: str
    weights: str
    data: Path
    runtime: str = "torch"
    batch_size: int = DEFAULT_BATCH
    workers: int = 2
    limit: int | None = None
    device: str = "cpu"  # torch only
    precision: str = "fp32"  # int8: the export quantized for `runtime` (exporters/quantize.py)

    def __post_init__(self):
        """Refuse, in one line, options no evaluation could follow (before anything is read)."""
        get_runtime(self.runtime)
        if self.batch_size < 1:
            raise LevitBenchError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise LevitBenchError(f"--workers must be 0 or more, got {self.workers}")
        if self.limit is not None and self.limit < 1:
            raise LevitBenchError(f"--limit must be at least 1, got {self.limit}")
        if self.device not in ("cpu", "cuda"):
            raise LevitBenchError(f"--device is cpu or cuda, not {self.device}")
        if self.precision not in ("fp32", "int8"):
            raise LevitBenchError(f"--precision is fp32 or int8, not {self.precision}")
        if self.precision == "int8" and "int8" not in get_runtime(self.runtime).precisions:
            having = [name for name, spec in RUNTIMES.items() if "int8" in spec.precisions]
            raise LevitBenchError(f"int8 is evaluated in {' or '.join(having)} (--runtime), not {self.runtime}")
        if self.device == "cuda":
            if self.runtime != "torch":
                raise LevitBenchError("--device cuda applies to --runtime torch only")
            if not torch.cuda.is_available():
                raise LevitBenchError("--device cuda: torch sees no CUDA GPU on this host")


def _eval_platform() -> Platform:
    """This CPU's platform, on every core: accuracy, not speed, is measured here."""
    name = "arm" if host_platform.machine().lower() in ARM else "xeon"
    return dataclasses.replace(get_platform(name), threads=None)


def _label_order(options: EvalOptions, model: str, checkpoint: Checkpoint) -> list[str] | None:
    """The order of the classes to label the dataset by: the checkpoint's, where it names them.

    Labels are indices into the sorted folder names, so folders renamed since training would be
    scored against other classes' outputs (0% for perfect weights); where the checkpoint names its
    classes, the folders must be those names, and each is labelled by its name's output. Without
    names, only the count is checked. Either way before anything slow: export, load, the scan.
    """
    folders = class_folders(options.data)
    names = checkpoint.classes
    if names is not None and set(names) != set(folders):
        missing, unexpected = sorted(set(names) - set(folders)), sorted(set(folders) - set(names))
        differences = "; ".join(f"{kind} {_listing(group)}" for kind, group in
                                (("missing", missing), ("unexpected", unexpected)) if group)
        raise LevitBenchError(
            f"{options.data}'s classes differ from the checkpoint's: {differences} "
            f"(the checkpoint was trained on {len(names)} classes: {_listing(names)})"
        )
    num_classes = checkpoint.num_classes or 1000  # what create_model builds for this checkpoint
    if len(folders) != num_classes:
        raise LevitBenchError(
            f"{options.data} has {len(folders)} classes but {model} with weights "
            f"{options.weights} has {num_classes} outputs; evaluate on a dataset with its classes"
        )
    return names


def _listing(names: Sequence[str]) -> str:
    """The first names, each on one line and shortened, and how many more: bounded for an error line."""
    shown = [name if name.isprintable() else ascii(name) for name in names[:_NAMES_SHOWN]]
    shown = [name if len(name) <= _NAME_CHARS else name[:_NAME_CHARS - 3] + "..." for name in shown]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f", ... {more} more" if more else "")


def _runner(runtime: str, workdir: Path, precision: str) -> Runner:
    spec = get_runtime(runtime)
    platform = _eval_platform()
    cls = spec.runner_class()
    return cls(platform, cls.Options.make(runtime, precision, spec.resolve_mode(None), workdir))


def run_eval(
    options: EvalOptions,
    workdir: Path,
    on_step: Callable[[str], None] = lambda step: None,
    on_start: Callable[[int], None] = lambda total: None,
    on_batch: OnBatch = lambda accuracy: None,
) -> dict:
    """Evaluate, and return the accuracy record (the caller stores it).

    `on_start(total)` is called with the number of images to evaluate, once the model or the
    runtime is ready; `on_batch` after every batch.
    """
    spec = get_spec(options.model)
    start = time.perf_counter()
    on_step("checkpoint")
    checkpoint = read_checkpoint(options.weights)
    order = _label_order(options, spec.name, checkpoint)
    dataset = ImageFolder(Path(options.data), eval_transform(spec.preprocessing), classes=order)
    indices = spread_subset(len(dataset), options.limit)
    subset = dataset if len(indices) == len(dataset) else Subset(dataset, indices)
    loader = make_loader(subset, options.batch_size, train=False, workers=options.workers, seed=0, drop_last=False)
    weights = {"source": options.weights, "path": str(checkpoint.path.resolve()), "sha256": checkpoint.sha256}
    extra: dict = {}
    if options.runtime == "torch":
        on_step("load")
        model, loaded = create_model(spec.name, weights=options.weights)
        weights["layout"] = loaded.layout
        model.to(options.device)
        on_start(len(subset))
        on_step("evaluate")
        accuracy = evaluate_module(model, loader, options.device, on_batch)
        precision = "fp32"
        extra["runtime_version"] = torch.__version__
        extra["runtime_info"] = {"device": options.device, "threads": torch.get_num_threads(), "mode": "eager"}
    else:
        runner = _runner(options.runtime, workdir, options.precision)
        on_step("artifact")
        artifact = ensure_artifact(workdir, spec.name, options.batch_size, options.weights, on_step)
        if weights_id(artifact.weights) != checkpoint.sha256:  # ensure_artifact's promise, checked
            raise LevitBenchError(f"{artifact.onnx_path} was not exported from {options.weights}; export again")
        if options.precision == "int8" and runner.quantizes_onnx:  # else the runner quantizes as it loads
            artifact = ensure_quantized(artifact, options.runtime, on_step)
        weights["layout"] = artifact.weights.get("layout")
        on_step("load")
        try:
            runner.load(artifact, options.batch_size)
            on_start(len(subset))
            on_step("evaluate")
            accuracy = evaluate_runner(runner, loader, options.batch_size, on_batch)
            description = runner.describe()
        finally:
            runner.close()
        precision = description.precision
        extra.update(runtime_version=description.version, runtime_info=description.as_dict(),
                     artifact=str(artifact.onnx_path), artifact_sha256=artifact.sha256)
        if artifact.note:  # a repair, or an int8 twin quantized on demand with the defaults
            extra["artifact_note"] = artifact.note
    host = environment.host_info()
    return {
        "uid": uuid.uuid4().hex,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": spec.name,
        "weights_id": checkpoint.sha256,
        "runtime": options.runtime,
        "precision": precision,
        "dataset": str(dataset.root.resolve()),
        "dataset_classes": len(dataset.classes),
        "dataset_images": len(dataset),
        "top1": round(accuracy.top1, 4),
        "top5": round(accuracy.top5, 4),
        "images": accuracy.images,
        "correct_top1": accuracy.correct_top1,
        "correct_top5": accuracy.correct_top5,
        "host": host.fingerprint,
        "cpu_model": host.cpu_model,
        "weights": weights,
        "batch_size": options.batch_size,
        "limit": options.limit,
        "preprocessing": dataclasses.asdict(spec.preprocessing),
        "seconds": round(time.perf_counter() - start, 2),
        "versions": environment.package_versions(),
        **extra,
    }
