"""`export --opset`: an opset the exporter cannot write is refused at once, in one line, with
nothing written; a file's sidecar and metadata tell the opset it really has."""

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

from levit_bench.errors import LevitBenchError
from levit_bench.exporters import onnx_graph


def _export(tmp_path: Path, opset: int) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "levit_bench", "--workdir", str(tmp_path / "work"), "export",
               "--model", "levit_128s", "--opset", str(opset), "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600), out


@pytest.mark.parametrize("opset", [99, onnx.defs.onnx_opset_version() + 1, onnx_graph.highest_opset() + 1,
                                   onnx_graph.MIN_OPSET - 1])
def test_an_opset_the_exporter_cannot_write_is_refused_in_one_line(tmp_path, opset):
    result, out = _export(tmp_path, opset)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"opset {opset} is not supported" in lines[0] and "Traceback" not in result.stderr
    assert not out.exists() or list(out.iterdir()) == []  # no .onnx, no .json, no temp file


def test_a_silent_fallback_of_the_exporter_is_an_error_not_a_wrong_file(capfd):
    """Given an opset it cannot convert to, torch.onnx logs a traceback and returns opset 18."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Hardswish()).eval()
    with pytest.raises(LevitBenchError, match="could not convert the model to opset 99"):
        onnx_graph.export(model, torch.randn(2, 3, 8, 8), 99, dynamic_batch=False)
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "onnxscript" not in captured.err


def test_the_sidecar_and_metadata_tell_the_files_own_opset(tmp_path):
    """The newest supported opset: the one most likely to need onnx's own version converter."""
    opset = onnx_graph.highest_opset()
    result, out = _export(tmp_path, opset)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""  # no converter warning, no traceback: the exporter's chatter is kept
    model = onnx.load(str(out / "levit_128s.onnx"))
    sidecar = json.loads((out / "levit_128s.json").read_text())
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert onnx_graph.opset_of(model) == opset == sidecar["opset"]
    assert metadata["levit_bench.opset"] == str(opset)
    assert sorted(path.name for path in out.iterdir()) == ["levit_128s.json", "levit_128s.onnx"]
