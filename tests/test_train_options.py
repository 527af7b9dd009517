"""`levit-bench train` refuses an out-of-range option in one line, before it creates OUT or reads
any data; TrainConfig, which the Python API builds too, is where the ranges are checked."""

from pathlib import Path

import pytest

from levit_bench.errors import LevitBenchError
from levit_bench.train import trainer
from levit_bench.train.recipe import TrainConfig
from cli_support import run_cli


def _main(capsys, *args) -> tuple[int, str]:
    """Run the CLI in this process: (exit status, stderr)."""
    code, _, err = run_cli(capsys, *args)
    return code, err


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Two classes of one image each: data a run could start on, so only the option can be wrong."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny") / "data"
    for split in ("train", "val"):
        for name, colour in (("red", "red"), ("blue", "blue")):
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (32, 32), colour).save(root / split / name / "a.png")
    return root


class _NoData:
    """Stands in for the trainer's `data` module: any use means data was read before the check.

    Only the trainer's own reference is replaced: patching the module's ImageFolder would leak
    into modules that import it by name while the patch is on (runners/accuracy.py does).
    """

    def __getattr__(self, name: str):
        raise AssertionError(f"data.{name} was used before the options were checked")


BAD_OPTIONS = [
    (["--lr", "-1"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--min-lr", "-1"], "--min-lr"),
    (["--lr", "1e-4", "--min-lr", "1e-3"], "--min-lr"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--smoothing", "2"], "--smoothing"),
    (["--smoothing", "1"], "--smoothing"),
    (["--mixup", "-1"], "--mixup"),
    (["--cutmix", "-1"], "--cutmix"),
    (["--cutmix", "nan"], "--cutmix"),
    (["--ema-decay", "5"], "--ema-decay"),
    (["--ema", "--ema-decay", "1"], "--ema-decay"),
    (["--drop-path", "1.5"], "--drop-path"),
    (["--drop-path", "-0.1"], "--drop-path"),
    (["--clip-grad", "-1"], "--clip-grad"),
    (["--clip-grad", "inf"], "--clip-grad"),
    (["--distillation-alpha", "2"], "--distillation-alpha"),
    (["--distillation-tau", "0"], "--distillation-tau"),
    (["--distillation-tau", "nan"], "--distillation-tau"),
    (["--distillation", "soft"], "--teacher"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "1.5"], "--epochs"),  # argparse's, exit 2
    (["--batch-size", "0"], "--batch-size"),
    (["--warmup-epochs", "-1"], "--warmup-epochs"),
    (["--workers", "-1"], "--workers"),
    (["--seed", "-1"], "--seed"),
    (["--steps-per-epoch", "0"], "--steps-per-epoch"),
    (["--stop-after", "0"], "--stop-after"),
]


@pytest.mark.parametrize("data_dir", ["tiny", "missing"])
@pytest.mark.parametrize(("options", "option"), BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_a_bad_option_is_refused_in_one_line_before_any_work(options, option, data_dir, tiny_data, tmp_path,
                                                             capsys, monkeypatch):
    monkeypatch.setattr(trainer, "data", _NoData())
    root = tiny_data if data_dir == "tiny" else tmp_path / "no-such-data"
    out = tmp_path / "run"
    code, err = _main(capsys, "train", "--model", "levit_128s", "--data", root, "--out", out, *options)
    lines = err.strip().splitlines()
    assert code != 0
    assert len(lines) == 1, err
    assert lines[0].startswith("levit-bench train: error: ") and option in lines[0], err
    assert "internal error" not in err
    assert not out.exists()


def test_the_message_says_what_the_option_takes(capsys, tmp_path):
    code, err = _main(capsys, "train", "--model", "levit_128s", "--data", tmp_path, "--out", tmp_path / "run",
                      "--lr", "-1")
    assert (code, err) == (1, "levit-bench train: error: --lr must be > 0, not -1\n")
    code, err = _main(capsys, "train", "--model", "levit_128s", "--data", tmp_path, "--out", tmp_path / "run",
                      "--smoothing", "2")
    assert (code, err) == (1, "levit-bench train: error: --smoothing must be in [0, 1), not 2\n")


def test_good_options_make_a_config(tmp_path):
    config = TrainConfig(
        model="levit_128s", data=tmp_path / "data", out=tmp_path / "run", epochs=1, batch_size=1, lr=1e-3,
        min_lr=0.0, warmup_epochs=5, weight_decay=0.0, smoothing=0.0, mixup=0.0, cutmix=0.0, drop_path=0.0,
        clip_grad=None, distillation_alpha=1.0, distillation_tau=0.5, ema=True, ema_decay=0.0, workers=0,
        seed=0, steps_per_epoch=1, stop_after=1,
    )
    assert (config.lr, config.warmup_epochs, config.epochs) == (1e-3, 5, 1)  # a warm-up past the end: allowed
    assert TrainConfig(model="levit_128s", data=tmp_path, out=tmp_path / "run").lr is None  # every default


@pytest.mark.parametrize(("field", "value", "message"), [
    ("lr", "1e-3", "--lr must be a number, not '1e-3'"),
    ("epochs", 2.5, "--epochs must be a whole number, not 2.5"),
    ("distillation_alpha", float("inf"), "--distillation-alpha must be a finite number, not inf"),
    ("distillation", "both", "--distillation is one of hard, soft, none, not both"),
])
def test_the_python_api_is_checked_alike(field, value, message, tmp_path):
    with pytest.raises(LevitBenchError) as refused:
        TrainConfig(model="levit_128s", data=tmp_path, out=tmp_path / "run", **{field: value})
    assert str(refused.value) == message
