"""A procedurally drawn ImageFolder dataset that a small LeViT can learn in minutes.

Each class is one combination of a shape (or texture) and a colour family; shapes and colours
both repeat across classes, so telling classes apart needs both. Every image draws its object
at a random position, scale and rotation, with a jittered shade, over a random low-saturation
background with smooth noise blotches and a grey distractor shape. Everything comes from one
numpy generator per image, seeded by (seed, split, class, index): the same seed writes the same
bytes. The dataset is written beside the target and renamed into place when complete.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from levit_bench.errors import LevitBenchError

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "stripes", "checker", "hexagon", "diamond")
# Colour families by hue; shades vary within a family.
COLOURS = {"red": 0.0, "orange": 0.075, "yellow": 0.155, "green": 0.33, "cyan": 0.5, "blue": 0.64, "magenta": 0.83}
SPLITS = ("train", "val")
MANIFEST = "synth.json"
FORMAT = "levit-bench-synth/1"
MIN_SIZE = 16


class SynthError(LevitBenchError):
    pass


@dataclass(frozen=True)
class SynthOptions:
    out: Path
    classes: int = 10
    per_class: int = 100
    val_per_class: int = 20
    size: int = 224
    seed: int = 0
    force: bool = False


def class_names(count: int) -> list[str]:
    """`00-red-circle`, ...: every (shape, colour) pair at most once, both varying from the start.

    Block b pairs shape s with colour (s + b) mod C, so the first classes already repeat
    colours (and, past len(SHAPES), shapes) in new combinations.
    """
    colours = list(COLOURS)
    names = []
    for k in range(count):
        s, block = k % len(SHAPES), k // len(SHAPES)
        names.append(f"{k:02d}-{colours[(s + block) % len(colours)]}-{SHAPES[s]}")
    return names


def shape_and_colour(name: str) -> tuple[str, str]:
    """The (shape, colour) a class name of `class_names` stands for."""
    _, colour, shape = name.split("-", 2)
    return shape, colour


def max_classes() -> int:
    return len(SHAPES) * len(COLOURS)


def check(options: SynthOptions) -> None:
    """Refuse bad options and an existing non-empty directory (without --force) before any work."""
    if not 2 <= options.classes <= max_classes():
        raise SynthError(f"--classes must be between 2 and {max_classes()}, got {options.classes}")
    if options.per_class < 1 or options.val_per_class < 1:
        raise SynthError("--per-class and --val-per-class must be at least 1")
    if options.size < MIN_SIZE:
        raise SynthError(f"--size must be at least {MIN_SIZE}, got {options.size}")
    out = options.out
    if out.exists() and not out.is_dir():
        raise SynthError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not options.force:
            raise SynthError(f"{out} exists and is not empty (--force replaces it)")
        entries = {p.name for p in out.iterdir()}
        if not entries <= {*SPLITS, MANIFEST}:  # never wipe a directory that is not a dataset
            others = sorted(entries - {*SPLITS, MANIFEST})
            listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise SynthError(f"refusing to replace {out}: it holds more than a synthetic dataset ({listed})")


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _shape_mask(shape: str, radius: int, rng: np.random.Generator) -> Image.Image:
    """The shape's alpha on a (2r x 2r) canvas, centred, fitting inside the inscribed circle."""
    side = 2 * radius
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    c, r = radius, radius * 0.92
    if shape == "circle":
        draw.ellipse((c - r, c - r, c + r, c + r), fill=255)
    elif shape in ("square", "triangle", "hexagon"):
        draw.regular_polygon((c, c, r), {"square": 4, "triangle": 3, "hexagon": 6}[shape], fill=255)
    elif shape == "diamond":
        draw.polygon([(c, c - r), (c + 0.55 * r, c), (c, c + r), (c - 0.55 * r, c)], fill=255)
    elif shape == "star":
        points = [(c + (r if i % 2 == 0 else 0.42 * r) * math.sin(i * math.pi / 5),
                   c - (r if i % 2 == 0 else 0.42 * r) * math.cos(i * math.pi / 5)) for i in range(10)]
        draw.polygon(points, fill=255)
    elif shape == "ring":
        draw.ellipse((c - r, c - r, c + r, c + r), fill=255)
        inner = r * rng.uniform(0.5, 0.65)
        draw.ellipse((c - inner, c - inner, c + inner, c + inner), fill=0)
    elif shape == "cross":
        arm = r * 0.24
        draw.rectangle((c - arm, c - r, c + arm, c + r), fill=255)
        draw.rectangle((c - r, c - arm, c + r, c + arm), fill=255)
    elif shape in ("stripes", "checker"):
        half = r / math.sqrt(2)  # a square patch of the texture
        period = max(4.0, side * rng.uniform(0.12, 0.2))
        x0 = y0 = c - half
        steps = int(2 * half / period) + 1
        for i in range(steps):
            for j in range(steps if shape == "checker" else 1):
                if shape == "stripes":
                    box = (x0 + i * period, y0, x0 + (i + 0.5) * period, c + half)
                elif (i + j) % 2 == 0:
                    box = (x0 + i * period, y0 + j * period, x0 + (i + 1) * period, y0 + (j + 1) * period)
                else:
                    continue
                draw.rectangle((box[0], box[1], min(box[2], c + half), min(box[3], c + half)), fill=255)
    else:  # pragma: no cover - SHAPES and this function go together
        raise AssertionError(shape)
    return mask


def _paste(image: Image.Image, shape: str, colour: tuple[int, int, int], radius: int,
           rng: np.random.Generator) -> None:
    """Draw `shape` rotated at a random place (mostly inside the image)."""
    mask = _shape_mask(shape, radius, rng).rotate(rng.uniform(0, 360), resample=Image.Resampling.BICUBIC)
    size = image.size[0]
    margin = int(radius * 0.75)
    cx = int(rng.integers(margin, max(margin + 1, size - margin)))
    cy = int(rng.integers(margin, max(margin + 1, size - margin)))
    image.paste(colour, (cx - radius, cy - radius, cx + radius, cy + radius), mask)


def draw_image(shape: str, colour: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One image of the class (shape, colour)."""
    hue = rng.uniform(0, 1)
    background = np.empty((size, size, 3), np.float32)
    top, bottom = (np.array(_rgb(hue + rng.uniform(-0.1, 0.1), rng.uniform(0, 0.35), rng.uniform(0.15, 0.85)),
                            np.float32) for _ in range(2))
    ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    background[:] = top * (1 - ramp) + bottom * ramp
    image = Image.fromarray(background.astype(np.uint8))

    distractor = SHAPES[int(rng.integers(len(SHAPES)))]
    grey = int(rng.integers(40, 216))
    _paste(image, distractor, (grey, grey, grey), max(3, int(size * rng.uniform(0.08, 0.16))), rng)
    shade = _rgb(COLOURS[colour] + rng.uniform(-0.025, 0.025), rng.uniform(0.6, 1.0), rng.uniform(0.65, 1.0))
    _paste(image, shape, shade, max(4, int(size * rng.uniform(0.17, 0.34))), rng)

    # Smooth blotches: low-resolution noise, upsampled (fine grain would only bloat the PNGs).
    pixels = np.asarray(image, np.int16)
    cells = max(2, size // 16)
    coarse = np.clip(rng.normal(128, rng.uniform(6, 18), (cells, cells, 3)), 0, 255).astype(np.uint8)
    blotches = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR), np.int16)
    pixels += blotches - 128
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _image_rng(seed: int, split: str, class_index: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split), class_index, index])


def generate(options: SynthOptions, on_image: Callable[[], None] = lambda: None) -> Path:
    """Write the dataset to `options.out` (replacing it with `force`); returns the directory.

    Nothing appears at `options.out` until every image is written.
    """
    check(options)
    out = options.out
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".part"))
    except OSError as e:
        raise SynthError(f"cannot write to {parent}: {e.strerror or e}") from None
    try:
        names = class_names(options.classes)
        counts = {"train": options.per_class, "val": options.val_per_class}
        for split in SPLITS:
            for class_index, name in enumerate(names):
                shape, colour = shape_and_colour(name)
                directory = staging / split / name
                directory.mkdir(parents=True)
                for index in range(counts[split]):
                    image = draw_image(shape, colour, options.size, _image_rng(options.seed, split, class_index, index))
                    image.save(directory / f"{index:05d}.png", compress_level=1)  # speed over bytes
                    on_image()
        settings = {k: v for k, v in asdict(options).items() if k not in ("out", "force")}
        manifest = {"format": FORMAT, **settings, "class_names": names}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace(staging, out)
    except OSError as e:
        raise SynthError(f"cannot write the dataset under {parent}: {e.strerror or e}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _replace(staging: Path, out: Path) -> None:
    """Move the finished dataset into place; an old one is moved aside first, then deleted."""
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
        os.replace(out, old / out.name)
    elif out.is_dir():
        out.rmdir()
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def image_count(options: SynthOptions) -> int:
    return options.classes * (options.per_class + options.val_per_class)
