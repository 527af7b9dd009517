"""Datasets: `levit-bench data synth`, ImageFolder, the Pillow/numpy transforms, seeded loaders."""

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from levit_bench.cli import main
from levit_bench.registry import Preprocessing, get_spec
from levit_bench.train import synth
from levit_bench.train.data import (
    DataError, ImageFolder, eval_transform, make_loader, spread_subset, train_transform,
)

PRE = get_spec("levit_128s").preprocessing
SMALL = ["--classes", "3", "--per-class", "4", "--val-per-class", "2", "--size", "32"]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    synth.generate(synth.SynthOptions(out, classes=3, per_class=4, val_per_class=2, size=40, seed=5))
    return out


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_synth_layout_and_same_bytes_for_the_same_seed(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "a"), *SMALL, "--seed", "3"]) == 0
    assert main(["data", "synth", "--out", str(tmp_path / "b"), *SMALL, "--seed", "3"]) == 0
    assert main(["data", "synth", "--out", str(tmp_path / "c"), *SMALL, "--seed", "4"]) == 0
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c
    names = ["00-red-circle", "01-orange-square", "02-yellow-triangle"]
    for split, count in (("train", 4), ("val", 2)):
        assert sorted(p.name for p in (tmp_path / "a" / split).iterdir()) == names
        for name in names:
            files = sorted((tmp_path / "a" / split / name).iterdir())
            assert [f.name for f in files] == [f"{i:05d}.png" for i in range(count)]
            with Image.open(files[0]) as image:
                assert image.size == (32, 32) and image.mode == "RGB"
    manifest = json.loads((tmp_path / "a" / "synth.json").read_text())
    assert manifest["class_names"] == names and manifest["classes"] == 3 and manifest["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no staging left behind
    # train and val are different draws
    assert a["train/00-red-circle/00000.png"] != a["val/00-red-circle/00000.png"]


def test_synth_class_names_are_distinct_combinations():
    names = synth.class_names(synth.max_classes())
    pairs = {tuple(n.split("-", 1)[1].split("-", 1)) for n in names}
    assert len(pairs) == len(names) == len(synth.SHAPES) * len(synth.COLOURS)
    ten = synth.class_names(10)
    assert len({n.split("-")[1] for n in ten}) < 10  # colours repeat: the shape matters too


def test_synth_refuses_a_non_empty_directory_unless_forced(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "synth", "--out", str(out), *SMALL]) == 0
    before = _files(out)
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(out), *SMALL, "--seed", "9"]) == 1
    assert "exists and is not empty (--force replaces it)" in _one_line_error(capsys)
    assert _files(out) == before
    assert main(["data", "synth", "--out", str(out), *SMALL, "--seed", "9", "--force"]) == 0
    assert _files(out) != before and (out / "train" / "02-yellow-triangle").is_dir()
    other = tmp_path / "home"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(other), *SMALL, "--force"]) == 1
    assert "refusing to replace" in _one_line_error(capsys)
    assert (other / "notes.txt").read_text() == "keep me"
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--classes", "1"]) == 1
    assert "--classes must be between 2 and" in _one_line_error(capsys)


def test_synth_interrupted_leaves_nothing(tmp_path):
    drawn = []

    def interrupt():
        drawn.append(1)
        if len(drawn) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synth.generate(synth.SynthOptions(tmp_path / "ds", classes=3, per_class=4, val_per_class=2, size=32),
                       on_image=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_image_folder_lists_sorted_classes_and_samples(dataset_dir):
    folder = ImageFolder(dataset_dir / "train", eval_transform(PRE))
    assert folder.classes == ["00-red-circle", "01-orange-square", "02-yellow-triangle"]
    assert len(folder) == 12 and folder.targets == [0] * 4 + [1] * 4 + [2] * 4
    assert folder.samples[5] == (dataset_dir / "train" / "01-orange-square" / "00001.png", 1)
    image, label = folder[11]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32 and label == 2


def test_image_folder_errors_name_the_problem(tmp_path, dataset_dir):
    transform = eval_transform(PRE)
    with pytest.raises(DataError, match=r"dataset directory not found: .*nowhere"):
        ImageFolder(tmp_path / "nowhere", transform)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes((dataset_dir / "val" / "00-red-circle" / "00000.png").read_bytes())
    with pytest.raises(DataError, match="has no class directories"):
        ImageFolder(tmp_path / "flat", transform)
    root = tmp_path / "ds"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    (root / "cat" / "1.PNG").write_bytes((dataset_dir / "val" / "00-red-circle" / "00000.png").read_bytes())
    (root / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="class 'dog' has no images"):
        ImageFolder(root, transform)
    (root / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    folder = ImageFolder(root, transform)
    assert [p.name for p, _ in folder.samples] == ["1.PNG", "broken.jpg"]
    with pytest.raises(DataError, match=r"cannot read image .*dog/broken\.jpg") as raised:
        folder[1]
    assert "\n" not in str(raised.value)
    # from a loader worker process too: still the one line, not the worker's traceback
    with pytest.raises(DataError) as raised:
        list(make_loader(folder, 2, train=False, workers=2, seed=0))
    assert str(raised.value).startswith("cannot read image ") and "\n" not in str(raised.value)


def test_eval_transform_resizes_the_short_side_crops_and_normalises():
    pre = Preprocessing(resize=64, crop=48, interpolation="bilinear", mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    image = Image.new("RGB", (150, 100), (255, 64, 128))
    out = eval_transform(pre)(image)
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32
    expected = [(1.0 - 0.5) / 0.5, (64 / 255 - 0.25) / 0.25, 128 / 255]
    for channel, value in enumerate(expected):
        assert torch.allclose(out[channel], torch.full((48, 48), value), atol=1e-6)
    # the centre is kept: a marker in the middle of a wide image survives, the edges do not
    marked = Image.new("RGB", (300, 100), (0, 0, 0))
    marked.paste((255, 255, 255), (140, 40, 160, 60))
    marked.paste((255, 255, 255), (0, 0, 20, 100))
    nearest = Preprocessing(resize=100, crop=100, interpolation="nearest", mean=(0, 0, 0), std=(1, 1, 1))
    centred = eval_transform(nearest)(marked)
    assert centred[:, 50, 50].tolist() == [1.0, 1.0, 1.0] and centred[:, 50, 0].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(DataError, match="unknown interpolation 'lanczos'"):
        eval_transform(Preprocessing(resize=8, crop=8, interpolation="lanczos"))


def test_train_transform_crops_flips_and_repeats_with_the_seed():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    plain, flipping = train_transform(32, PRE, hflip=0.0), train_transform(32, PRE, hflip=1.0)
    random.seed(7)
    a = plain(image)
    random.seed(7)
    assert torch.equal(plain(image), a)
    random.seed(7)
    assert torch.equal(flipping(image), a.flip(-1))  # same crop, mirrored
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    random.seed(8)
    assert not torch.equal(plain(image), a)
    for _ in range(50):
        left, top, w, h = plain.crop_box(90, 60)
        assert 0 <= left and left + w <= 90 and 0 <= top and top + h <= 60
    # no crop can satisfy the aspect ratio: the centre fallback
    square = train_transform(16, PRE, scale=(0.9, 1.0), ratio=(1.0, 1.0))
    assert square.crop_box(400, 10) == (195, 0, 10, 10)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_is_reproducible_with_its_seed(dataset_dir, workers):
    folder = ImageFolder(dataset_dir / "train", train_transform(24, PRE))

    def epoch(seed):
        loader = make_loader(folder, 5, train=True, workers=workers, seed=seed)
        return [(images, labels) for images, labels in loader]

    first, again, other = epoch(1), epoch(1), epoch(2)
    assert len(first) == 2  # 12 images in batches of 5, the last short one dropped (train)
    assert first[0][0].shape == (5, 3, 24, 24)
    for (x, y), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not all(torch.equal(x, x2) for (x, _), (x2, _) in zip(first, other, strict=True))
    evaluation = make_loader(folder, 5, train=False, workers=workers, seed=0)
    labels = torch.cat([y for _, y in evaluation])
    assert labels.tolist() == folder.targets  # in order, nothing dropped


def test_distributed_loader_uses_a_seeded_sampler(dataset_dir, tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        folder = ImageFolder(dataset_dir / "val", eval_transform(PRE))
        loader = make_loader(folder, 2, train=True, workers=0, seed=3, distributed=True)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        assert loader.sampler.shuffle and loader.sampler.seed == 3
        loader.sampler.set_epoch(1)
        assert sorted(loader.sampler) == list(range(len(folder)))
    finally:
        dist.destroy_process_group()


def test_spread_subset_keeps_every_class():
    assert list(spread_subset(10, None)) == list(range(10))
    assert spread_subset(100, 4) == [0, 25, 50, 75]
    assert len(set(spread_subset(7, 6))) == 6
    with pytest.raises(DataError):
        spread_subset(10, 0)
