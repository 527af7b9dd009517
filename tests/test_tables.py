"""The human views fit the terminal: at 80 and 120 columns the figures that answer the question
are whole (never cut with an ellipsis), the rest give way, and `--wide` shows everything."""

import os
import subprocess
import sys

import pytest
from rich.console import Console

from levit_bench import views
from levit_bench.store import ResultsStore
from records import make_record

CPU = "AMD EPYC 9R14 96-Core Processor"
ERROR = "outputs differ from PyTorch: max|diff| 34.9 > tol 0.00243, top-1 agreement 0.000 (needs >= 1)"


def _records() -> list[dict]:
    rows = [make_record(model=model, runtime=runtime, mode=mode, cpu_model=CPU, peak_rss_mb=312.0,
                        images_per_s=speed, run_id="r1")
            for model, speed in (("levit_128s", 131.25), ("efficientnet_b0", 1234.5))
            for runtime, mode in (("onnxruntime", None), ("torch", "traced"), ("openvino", None))]
    rows.append(make_record(model="levit_384", status="failed", error=ERROR, images_per_s=None, cpu_model=CPU))
    return rows


def _flat(text: str) -> str:
    """The table's words in reading order, borders gone: a folded cell reads as one text again
    (its continuation lines have nothing in the other columns)."""
    return " ".join(text.translate({ord(c): " " for c in "│┃┏┓┗┛┡┩└┘┳┻╇┴━─"}).split())


def _rendered(width: int, draw) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))
    draw(console)
    return console.export_text()


@pytest.mark.parametrize("width", [80, 120])
def test_stored_measurements_keep_model_runtime_speed_and_status_whole(width):
    text = _rendered(width, lambda c: views.print_records(_records(), title="7 stored measurements", console=c))
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for model in ("levit_128s", "efficientnet_b0", "levit_384"):
        assert model in text
    assert "131.2" in text and "1234.5" in text and "torch:traced" in text
    assert "ok" in text and "failed" in text and ERROR in _flat(text)  # the error folds, whole
    assert f"{CPU} (abc123def456)" in _flat(text)  # the shared host, once, in the title
    if "ort " in text or "ort │" in text:
        assert "ort = onnxruntime, ov = openvino" in text  # short names only with their legend
    if width == 120:
        assert "median ms" in text  # more room, more columns


@pytest.mark.parametrize("width", [80, 120])
def test_the_aggregate_keeps_its_interval_and_stability_whole(width):
    rows = [{"model": "levit_128s", "runtime": "onnxruntime", "mode": None, "platform": "xeon", "precision": "fp32",
             "batch": 16, "host": "abc123def456", "cpu_model": CPU, "rounds": 5, "images_per_s": 131.25,
             "images_per_s_ci": [128.125, 133.0], "flags": ["round 2: CV 12% > 10%"]},
            {"model": "efficientnet_b0", "runtime": "tvm", "mode": "untuned", "platform": "xeon", "precision": "fp32",
             "batch": 16, "host": "abc123def456", "cpu_model": CPU, "rounds": 5, "images_per_s": 30.5,
             "images_per_s_ci": [30.0, 31.0], "flags": []}]
    text = _rendered(width, lambda c: views.print_aggregate(rows, "2 cells", console=c))
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    assert "131.2" in text and "128.1-133.0 (±1.9%)" in text and "30.0-31.0 (±1.6%)" in text
    assert "tvm:untuned" in text and "unstable" in text and "unstable: round 2: CV 12% > 10%" in _flat(text)


@pytest.mark.parametrize("width", [80, 120])
def test_a_comparison_keeps_its_ratio_interval_and_verdict_whole(width):
    rows = [{"model": model, "a": "torch", "b": "onnxruntime", "platform": "xeon", "batch": 16, "rounds": [5, 5],
             "a_images_per_s": 80.1, "b_images_per_s": 131.2, "ratio": ratio, "ratio_ci": [low, high],
             "verdict": verdict, "noisy": noisy, "flags": []}
            for model, ratio, low, high, verdict, noisy in (("levit_128s", 1.638, 1.601, 1.702, "faster", False),
                                                            ("efficientnet_b0", 0.995, 0.97, 1.02, "same", True))]
    text = _rendered(width, lambda c: views.print_comparison(rows, "runtime", console=c))
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    for figure in ("1.638", "1.601-1.702", "faster", "0.995", "0.970-1.020", "same (unstable)", "efficientnet_b0"):
        assert figure in text
    assert "B = onnxruntime against A = torch" in _flat(text)


def test_wide_shows_every_column_however_wide(tmp_path):
    text = _rendered(80, lambda c: views.print_records(_records(), title="7 stored measurements", console=c,
                                                       wide=True))
    for header in ("created (UTC)", "platform", "cores", "streams", "p90 ms", "CV", "peak MiB", "max|diff|", "host",
                   "onnxruntime"):
        assert header in text
    assert "…" not in text and max(len(line) for line in text.splitlines()) > 80


@pytest.mark.parametrize("columns", ["80", "120"])
def test_the_commands_fit_COLUMNS(tmp_path, columns):
    store = ResultsStore(tmp_path / "results.db")
    for record in _records():
        store.insert(record)
    for round_ in (2, 3):  # three rounds of torch and onnxruntime on levit_128s, for compare
        for runtime, mode, speed in (("onnxruntime", None, 131.0 + round_), ("torch", "traced", 80.0 + round_)):
            store.insert(make_record(runtime=runtime, mode=mode, images_per_s=speed, cpu_model=CPU, round=round_))
    env = {**os.environ, "COLUMNS": columns}
    for command, figures in ((["results"], ["131.2", "levit_384", "failed"]),
                             (["results", "--aggregate"], ["95% interval", "levit_128s"]),
                             (["compare", "--by", "runtime", "torch", "onnxruntime"], ["B / A", "verdict"])):
        result = subprocess.run([sys.executable, "-m", "levit_bench", "--workdir", str(tmp_path), *command],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "…" not in result.stdout, result.stdout
        assert max(len(line) for line in result.stdout.splitlines()) <= int(columns), result.stdout
        for figure in figures:
            assert figure in result.stdout
