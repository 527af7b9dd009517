"""The trainer on synthetic data: it learns, distillation trains both heads, resume is exact,
two gloo processes train together, and its checkpoint evaluates alike in PyTorch and ONNX."""

import json
import os
import subprocess
import sys

import pytest
import torch

from levit_bench.cli import main

CLASSES = 4
QUICK = ["--lr", "1e-3", "--warmup-epochs", "0", "--mixup", "0", "--cutmix", "0", "--batch-size", "16"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "data"
    assert main(["data", "synth", "--out", str(root), "--classes", str(CLASSES), "--per-class", "48",
                 "--val-per-class", "12", "--size", "64", "--seed", "1"]) == 0
    return root


def _train(data, out, *extra) -> int:
    return main(["train", "--model", "levit_128s", "--data", str(data), "--out", str(out), "--workers", "1",
                 *QUICK, *extra])


def _log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_a_short_run_learns_the_synthetic_classes(synthetic, tmp_path):
    out = tmp_path / "run"
    assert _train(synthetic, out, "--epochs", "3", "--steps-per-epoch", "12") == 0
    log = _log(out)
    assert [row["epoch"] for row in log] == [1, 2, 3]
    assert log[-1]["top1"] >= 2.5 * 100 / CLASSES  # chance is 25%: well above it within 36 steps
    assert log[-1]["loss"] < log[0]["loss"]
    best = torch.load(out / "best.pth", map_location="cpu", weights_only=True)
    assert best["model_name"] == "levit_128s" and best["num_classes"] == str(CLASSES)
    assert best["training"]["best_top1"] == max(row["top1"] for row in log)


def test_hard_distillation_trains_both_heads_towards_their_targets(synthetic, tmp_path):
    from levit_bench.models.checkpoints import save_weights
    from levit_bench.registry import create_model, get_spec

    teacher_path = tmp_path / "teacher.safetensors"
    torch.manual_seed(5)
    save_weights(get_spec("levit_128s").build(num_classes=CLASSES), teacher_path, "levit_128s")
    out = tmp_path / "distilled"
    assert _train(synthetic, out, "--epochs", "3", "--steps-per-epoch", "12",
                  "--teacher", f"levit_128s:{teacher_path}", "--distillation", "hard") == 0
    student, _ = create_model("levit_128s", weights=str(out / "latest.pth"))
    teacher, _ = create_model("levit_128s", weights=str(teacher_path))
    from levit_bench.train.data import ImageFolder, eval_transform

    images = torch.stack([ImageFolder(synthetic / "train", eval_transform(get_spec("levit_128s").preprocessing))[i][0]
                          for i in range(0, 4 * 48, 6)])
    labels = torch.tensor([i // 48 for i in range(0, 4 * 48, 6)])
    with torch.no_grad():
        features = student.forward_features(images)
        class_head, dist_head = student.head(features).argmax(1), student.head_dist(features).argmax(1)
        teacher_says = teacher(images).argmax(1)
    # each head moves towards its own target: the class head the labels, the other the teacher
    agree = lambda a, b: float((a == b).float().mean())  # noqa: E731
    assert agree(dist_head, teacher_says) > agree(class_head, teacher_says)
    assert agree(class_head, labels) > agree(dist_head, labels)
    assert agree(class_head, labels) >= 0.5 and agree(dist_head, teacher_says) >= 0.5


def test_resume_continues_exactly(synthetic, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert _train(synthetic, whole, "--epochs", "2", "--steps-per-epoch", "3") == 0
    assert _train(synthetic, split, "--epochs", "2", "--steps-per-epoch", "3", "--stop-after", "1") == 0
    assert len(_log(split)) == 1
    assert _train(synthetic, split, "--epochs", "2", "--steps-per-epoch", "3", "--resume") == 0
    assert _log(split)[0] == {**_log(whole)[0], "images_per_s": _log(split)[0]["images_per_s"]}
    assert _log(split)[1]["loss"] == _log(whole)[1]["loss"]
    assert _log(split)[1]["top1"] == _log(whole)[1]["top1"]
    a = torch.load(whole / "latest.pth", weights_only=True)["state_dict"]
    b = torch.load(split / "latest.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_run_into_the_same_directory_is_refused(synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(synthetic, out, "--epochs", "1", "--steps-per-epoch", "1") == 0
    capsys.readouterr()
    assert _train(synthetic, out, "--epochs", "1", "--steps-per-epoch", "1") == 1
    assert "already holds a run: --resume to continue it" in capsys.readouterr().err


def test_two_gloo_processes_train_together(synthetic, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "levit_bench", "train", "--model", "levit_128s", "--data", str(synthetic), "--out", str(out),
               "--workers", "0", "--epochs", "1", "--steps-per-epoch", "2", *QUICK]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = _log(out)
    assert row["step"] == 2
    state = torch.load(out / "latest.pth", weights_only=True)
    assert state["training"]["world_size"] == 2
    assert not any(k.startswith("module.") for k in state["state_dict"])


def test_eval_of_a_checkpoint_and_of_its_onnx_export_agree(synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(synthetic, out, "--epochs", "1", "--steps-per-epoch", "4") == 0
    results = {}
    for runtime in ("torch", "onnxruntime"):
        capsys.readouterr()
        assert main(["eval", "--model", "levit_128s", "--weights", str(out / "best.pth"), "--data",
                     str(synthetic / "val"), "--runtime", runtime, "--json"]) == 0
        results[runtime] = json.loads(capsys.readouterr().out)
    assert results["torch"]["top1"] == results["onnxruntime"]["top1"]
    assert results["torch"]["weights_id"] == results["onnxruntime"]["weights_id"]
