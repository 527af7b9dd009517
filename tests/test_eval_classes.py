"""`levit-bench eval` of a checkpoint that names its classes: the folders must be those classes.

Labels are indices into the sorted folder names; a folder renamed since training would pair
images with another class's output and store a wrong accuracy, so it is refused, in one line,
before anything is exported or evaluated, by every runtime.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from levit_bench import cli
from levit_bench.store import open_store
from levit_bench.runtimes import RUNTIMES
from cli_support import run_cli

CLASSES = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """The val split of a tiny synthetic dataset, and the trainer's checkpoint of one step on it."""
    root = tmp_path_factory.mktemp("classes")
    assert cli.main(["data", "synth", "--out", str(root / "data"), "--classes", str(CLASSES), "--per-class", "2",
                     "--val-per-class", "2", "--size", "32", "--seed", "1"]) == 0
    assert cli.main(["train", "--model", "levit_128s", "--data", str(root / "data"), "--out", str(root / "run"),
                     "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4", "--workers", "0",
                     "--warmup-epochs", "0", "--mixup", "0", "--cutmix", "0"]) == 0
    return root / "data" / "val", root / "run" / "latest.pth"


def _eval(capsys, work: Path, weights: Path, data: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "--workdir", work, "eval", "--model", "levit_128s", "--weights", weights,
                 "--data", data, "--workers", "0", *extra)


def _accuracy_rows(work: Path) -> list[dict]:
    return open_store(work).accuracy_records() if (work / "results.db").exists() else []


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_a_renamed_class_folder_is_refused_in_one_line_and_stores_nothing(trained, tmp_path, capsys, runtime):
    data, weights = trained
    renamed = tmp_path / "val"
    shutil.copytree(data, renamed)
    original = sorted(p.name for p in data.iterdir())[1]
    (renamed / original).rename(renamed / "99-renamed")  # now sorted last: every later label would shift
    work = tmp_path / "work"
    code, out, err = _eval(capsys, work, weights, renamed, "--runtime", runtime)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("levit-bench eval: error: ")
    assert f"missing {original}" in lines[0] and "unexpected 99-renamed" in lines[0]
    assert f"trained on {CLASSES} classes" in lines[0]
    assert _accuracy_rows(work) == []
    assert not list(work.glob("models/*.onnx"))  # refused before the export an exported runtime needs


def test_the_folder_the_checkpoint_was_trained_on_evaluates(trained, tmp_path, capsys):
    data, weights = trained
    work = tmp_path / "work"
    code, out, err = _eval(capsys, work, weights, data, "--json")
    assert code == 0, err
    assert json.loads(out)["images"] == CLASSES * 2
    assert len(_accuracy_rows(work)) == 1


def test_classes_in_another_order_are_labelled_by_name(trained, tmp_path, capsys):
    """A checkpoint whose classes are not in sorted order scores each folder against its own output."""
    data, weights = trained
    state = torch.load(weights, map_location="cpu", weights_only=True)
    names = state["classes"][::-1]
    for head in ("head", "head_dist"):  # both heads always answer the output 0: names[0], the last folder
        state["state_dict"][f"{head}.linear.weight"].zero_()
        state["state_dict"][f"{head}.linear.bias"].copy_(torch.eye(CLASSES)[0])
    state["classes"] = names
    reordered = tmp_path / "reordered.pth"
    torch.save(state, reordered)
    uneven = tmp_path / "val"
    shutil.copytree(data, uneven)
    for name in names[1:]:  # two images of names[0], one of each other class
        sorted((uneven / name).iterdir())[0].unlink()
    code, out, err = _eval(capsys, tmp_path / "work", reordered, uneven, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert (record["images"], record["correct_top1"]) == (CLASSES + 1, 2)  # by sorted index: 1, for names[-1]
