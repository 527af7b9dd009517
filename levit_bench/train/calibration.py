"""Calibration images for post-training quantization: a directory's images, or drawn ones.

Both go through the model's own eval preprocessing (registry `Preprocessing`), so the ranges a
quantizer observes are those of the inputs the model will see. Without a directory, the
images are drawn as `levit-bench data synth` draws its dataset (same shapes, colours and
classes), from a seed: the same calibration set every time, and the sidecar says it was synthetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from levit_bench.errors import LevitBenchError
from levit_bench.registry import ModelSpec
from levit_bench.train.data import IMAGE_SUFFIXES, eval_transform, images_under, load_rgb, spread_subset
from levit_bench.train.synth import class_names, draw_image, shape_and_colour

SYNTH_CLASSES = 10
SYNTH_SIZE = 256  # drawn at the eval resize, so the centre crop sees the whole scene


class CalibrationError(LevitBenchError):
    pass


@dataclass(frozen=True)
class Calibration:
    images: np.ndarray  # (N, 3, R, R) float32, preprocessed, N a multiple of the batch
    source: dict  # what the sidecar records: kind, path or seed, count


def _counted(count: int, batch: int) -> int:
    if count < batch:
        raise CalibrationError(f"--calib-size {count} is less than one batch of {batch} images")
    return count - count % batch


def from_directory(spec: ModelSpec, directory: Path, count: int, batch: int) -> Calibration:
    """`count` images (rounded down to whole batches) spread evenly over every image below
    `directory`, class folders or not."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise CalibrationError(f"calibration directory not found: {directory}")
    files = images_under(directory)
    if not files:
        raise CalibrationError(f"{directory} holds no images ({', '.join(IMAGE_SUFFIXES)}) to calibrate on")
    if len(files) < batch:
        raise CalibrationError(f"{directory} holds {len(files)} images, fewer than one batch of {batch} to calibrate on")
    count = _counted(min(count, len(files)), batch)
    transform = eval_transform(spec.preprocessing)
    chosen = [files[i] for i in spread_subset(len(files), count)]
    images = np.stack([transform(load_rgb(path)).numpy() for path in chosen])
    return Calibration(images.astype(np.float32), {"kind": "directory", "path": str(directory.resolve()),
                                                   "images_found": len(files), "images": len(chosen)})


def calibration_images(spec: ModelSpec, directory: Path | None, count: int, batch: int, seed: int = 0) -> Calibration:
    """From `directory` when given, else drawn (`synthetic`)."""
    if directory is not None:
        return from_directory(spec, directory, count, batch)
    return synthetic(spec, count, batch, seed)


def synthetic(spec: ModelSpec, count: int, batch: int, seed: int = 0) -> Calibration:
    """`count` images (rounded down to whole batches) of `data synth`'s first classes, drawn from `seed`."""
    count = _counted(count, batch)
    transform = eval_transform(spec.preprocessing)
    names = class_names(SYNTH_CLASSES)
    images = []
    for index in range(count):
        shape, colour = shape_and_colour(names[index % len(names)])
        image = draw_image(shape, colour, SYNTH_SIZE, np.random.default_rng([seed, index]))
        images.append(transform(image).numpy())
    return Calibration(np.stack(images).astype(np.float32),
                       {"kind": "synthetic", "generator": "levit-bench data synth", "classes": SYNTH_CLASSES,
                        "seed": seed, "images": count})
