"""ImageFolder data for training and evaluation: Pillow + numpy transforms, seeded loaders.

No torchvision: images are decoded by Pillow and turned into tensors with numpy. The random
transforms draw from Python's `random` module, which `make_loader` seeds in every worker (and
in the main process when there are no workers), so a run with a given seed sees the same crops.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from levit_bench.errors import LevitBenchError, one_line
from levit_bench.registry import Preprocessing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}

Transform = Callable[[Image.Image], torch.Tensor]


class DataError(LevitBenchError):
    """A dataset that cannot be read; keeps its one line when re-raised from a loader worker."""

    def __init__(self, message: str):
        super().__init__(_from_worker(message, f"{type(self).__module__}.{type(self).__qualname__}: "))


def _from_worker(message: str, prefix: str) -> str:
    """The original message inside DataLoader's "Caught DataError in DataLoader worker ..." text."""
    if "\n" not in message:
        return message
    lines = [line for line in message.splitlines() if line.startswith(prefix)]
    return lines[-1][len(prefix):] if lines else message.strip().splitlines()[-1]


def class_folders(root: Path) -> list[str]:
    """The classes of an ImageFolder at `root`: its sorted directory names (hidden ones skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset directory not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class directories (expected {root}/<class>/<image>.png|.jpg)")
    return classes


class ImageFolder(Dataset):
    """`root/<class>/**/<image>.{jpg,jpeg,png}`: classes are the sorted directory names.

    `classes`, the same names in another order (a model's output order), labels by that order.
    """

    def __init__(self, root: Path, transform: Transform, classes: Sequence[str] | None = None):
        self.root = Path(root)
        self.transform = transform
        folders = class_folders(self.root)
        if classes is not None and sorted(classes) != folders:
            raise DataError(f"{self.root} does not hold one folder per class of {len(classes)} given")
        self.classes: list[str] = folders if classes is None else list(classes)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for index, name in enumerate(self.classes):
            files = images_under(self.root / name)
            if not files:
                raise DataError(f"class {name!r} has no images ({', '.join(IMAGE_SUFFIXES)}) in {self.root / name}")
            self.samples.extend((path, index) for path in files)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(load_rgb(path)), label


def images_under(directory: Path) -> list[Path]:
    """Image files anywhere below `directory` (hidden ones skipped), in a stable order."""
    found = [
        p for p in directory.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def load_rgb(path: Path) -> Image.Image:
    """The decoded image in RGB; any decoding failure names the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {one_line(e, name_foreign=False)}") from None


def _resample(interpolation: str) -> Image.Resampling:
    try:
        return INTERPOLATIONS[interpolation]
    except KeyError:
        raise DataError(f"unknown interpolation {interpolation!r}; known: {', '.join(INTERPOLATIONS)}") from None


def _normalise(image: Image.Image, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> CHW float32 in [0, 1], then (x - mean) / std per channel."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - mean) / std
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


@dataclass(frozen=True)
class EvalTransform:
    """Resize the short side, centre-crop, normalise (as torchvision's Resize/CenterCrop on PIL).

    A class rather than a closure so that spawned loader workers can pickle it.
    """

    resize: int
    crop: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.resize * long / short)
        size = (self.resize, new_long) if width <= height else (new_long, self.resize)
        if size != image.size:
            image = image.resize(size, _resample(self.interpolation))
        width, height = image.size
        top = round((height - self.crop) / 2.0)
        left = round((width - self.crop) / 2.0)
        image = image.crop((left, top, left + self.crop, top + self.crop))  # zero-padded if smaller
        return _normalise(image, np.array(self.mean, np.float32), np.array(self.std, np.float32))


@dataclass(frozen=True)
class TrainTransform:
    """Inception-style random-resized crop to `size`, random horizontal flip, normalise."""

    size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, crop width, crop height): 10 tries at a random area and aspect, else the centre."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * random.uniform(*self.scale)
            aspect = math.exp(random.uniform(*log_ratio))
            w = round(math.sqrt(target_area * aspect))
            h = round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                return random.randint(0, width - w), random.randint(0, height - h), w, h
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, round(width / min(self.ratio))
        elif in_ratio > max(self.ratio):
            w, h = round(height * max(self.ratio)), height
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, image: Image.Image) -> torch.Tensor:
        left, top, w, h = self.crop_box(*image.size)
        image = image.resize((self.size, self.size), _resample(self.interpolation),
                             box=(left, top, left + w, top + h))
        if random.random() < self.hflip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return _normalise(image, np.array(self.mean, np.float32), np.array(self.std, np.float32))


def eval_transform(pre: Preprocessing) -> EvalTransform:
    """The model's eval preprocessing (registry `Preprocessing`) as a PIL image -> tensor callable."""
    _resample(pre.interpolation)
    return EvalTransform(pre.resize, pre.crop, pre.interpolation, tuple(pre.mean), tuple(pre.std))


def train_transform(size: int, pre: Preprocessing, scale: tuple[float, float] = (0.08, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5) -> TrainTransform:
    """DeiT's training crop (without its colour and erasing augmentations) at `size`."""
    _resample(pre.interpolation)
    if size < 1:
        raise DataError(f"crop size must be at least 1, got {size}")
    if not (0 < scale[0] <= scale[1] <= 1):
        raise DataError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
    if not (0 < ratio[0] <= ratio[1]):
        raise DataError(f"ratio must satisfy 0 < min <= max, got {ratio}")
    return TrainTransform(size, pre.interpolation, tuple(pre.mean), tuple(pre.std), tuple(scale), tuple(ratio), hflip)


def seed_worker(worker_id: int) -> None:
    """Seed `random`, numpy and torch in a loader worker from the seed torch gave it.

    torch seeds each worker with base_seed + worker_id, the base seed being drawn from the
    loader's generator; `random` and numpy are not seeded by torch, so do it here.
    """
    _seed_everything(torch.initial_seed())


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class SeededLoader(DataLoader):
    """A DataLoader whose random transforms are reproducible without workers too.

    With workers, `seed_worker` does it. Without, each pass over the loader seeds Python's
    `random` (what the transforms draw from) with the pass's base seed, as worker 0 would be;
    numpy and torch are left alone, as they may drive the training step itself.
    """

    def __iter__(self):
        iterator = super().__iter__()
        if self.num_workers == 0:
            base_seed = getattr(iterator, "_base_seed", None)
            if base_seed is None:  # not a torch whose iterator keeps it: draw one the same way
                base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
            random.seed(base_seed)
        return iterator


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, workers: int, seed: int,
                distributed: bool = False, drop_last: bool | None = None,
                pin_memory: bool = False) -> DataLoader:
    """Batches of `dataset`: shuffled (train) or in order, loaded by `workers` processes.

    `seed` drives the shuffle and every worker's random state; `drop_last` defaults to
    `train`. With `distributed`, a DistributedSampler splits the data over the process group
    (the caller calls `loader.sampler.set_epoch(epoch)` each epoch).
    """
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise DataError(f"workers must be 0 or more, got {workers}")
    sampler = DistributedSampler(dataset, shuffle=train, seed=seed) if distributed else None
    generator = torch.Generator()
    # The sampler's seed is shared so that ranks split one permutation; the augmentations are
    # offset by rank, or every rank would draw the same crops for its share.
    generator.manual_seed(seed + (sampler.rank if sampler is not None else 0))
    return SeededLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=False,
        worker_init_fn=seed_worker if workers else None,
        generator=generator,
        drop_last=train if drop_last is None else drop_last,
        pin_memory=pin_memory,
    )


def describe(dataset: ImageFolder) -> dict:
    """Path, class count and image count, for records."""
    return {"path": str(dataset.root.resolve()), "classes": len(dataset.classes), "images": len(dataset)}


def spread_subset(size: int, limit: int | None) -> Sequence[int]:
    """`limit` indices evenly spread over `range(size)` (all of them without a limit).

    Sorted ImageFolder samples are grouped by class: an even spread keeps every class when
    `limit` is at least the number of classes, where the first `limit` would not.
    """
    if limit is None or limit >= size:
        return range(size)
    if limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}")
    return [i * size // limit for i in range(limit)]
