"""levit-bench from Python: run -> results -> compare -> report through `levit_bench.api` alone,
stored as the command line stores them, and the command line's one-line errors raised."""

import pandas as pd
import pytest

from levit_bench import api, cli
from levit_bench.errors import LevitBenchError
from levit_bench.store import StoreError


def test_run_results_compare_and_report_from_python(workdir_with_artifact, tmp_path):
    work = workdir_with_artifact
    torch_rows = api.run("levit_128s", "torch", "xeon", protocol="smoke", workdir=work)
    ort_rows = api.run(["levit_128s"], "onnxruntime", "xeon", protocol="smoke", workdir=work)
    assert [r["status"] for r in torch_rows + ort_rows] == ["ok", "ok"]
    assert isinstance(torch_rows, list) and torch_rows.run_id == torch_rows[0]["run_id"]

    frame = api.results(workdir=work, model="LeViT-128S")
    assert isinstance(frame, pd.DataFrame) and len(frame) == 2
    assert set(frame["runtime"]) == {"torch", "onnxruntime"} and (frame["images_per_s"] > 0).all()
    assert frame["uid"].tolist() == [r["uid"] for r in api.records(workdir=work)]  # what the CLI reads

    cells = api.aggregate(workdir=work, runtime="onnxruntime")
    assert len(cells) == 1
    row = cells.iloc[0]
    assert row["images_per_s_low"] <= row["images_per_s"] <= row["images_per_s_high"]
    assert [row["images_per_s_low"], row["images_per_s_high"]] == row["images_per_s_ci"]

    compared = api.compare("runtime", "torch", "onnxruntime", workdir=work)
    assert len(compared) == 1 and compared.iloc[0]["verdict"] in ("faster", "slower", "same")
    ratio = compared.iloc[0]
    assert ratio["ratio_low"] <= ratio["ratio"] <= ratio["ratio_high"]
    expected = ort_rows[0]["images_per_s"] / torch_rows[0]["images_per_s"]
    assert ratio["ratio"] == pytest.approx(expected, rel=0.2)  # a median over bootstrap draws of the same rows

    index = api.report(tmp_path / "report", workdir=work)
    assert index == tmp_path / "report" / "index.html" and index.is_file()
    assert "levit_128s" in index.read_text() and (tmp_path / "report" / "results.csv").is_file()


def test_the_command_line_stores_what_the_api_stores(workdir_with_artifact, capsys):
    assert cli.main(["--workdir", str(workdir_with_artifact), "run", "--runtime", "onnxruntime", "--platform", "xeon",
                     "--model", "levit_128s", "--protocol", "smoke", "--json"]) == 0
    assert len(api.records(workdir=workdir_with_artifact)) == 1
    assert api.records(store=workdir_with_artifact / "results.db")[0]["runtime"] == "onnxruntime"


def _cli_error(capsys, *args) -> str:
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    assert code != 0
    return capsys.readouterr().err.strip().split(": error: ", 1)[1]


@pytest.mark.parametrize("call,argv", [
    (lambda w: api.run("levit_999", "onnxruntime", "xeon", workdir=w),
     ["run", "--runtime", "onnxruntime", "--platform", "xeon", "--model", "levit_999"]),
    (lambda w: api.run("levit_128s", "onnxruntime", "mars", workdir=w),
     ["run", "--runtime", "onnxruntime", "--platform", "mars", "--model", "levit_128s"]),
    (lambda w: api.run("levit_128s", "onnxruntime", "xeon", mode="eager", workdir=w),
     ["run", "--runtime", "onnxruntime", "--platform", "xeon", "--model", "levit_128s", "--mode", "eager"]),
    (lambda w: api.sweep("xeon", ["levit_128s"], ["onnxruntime"], rounds=2, target=0.02, workdir=w),
     ["sweep", "--platform", "xeon", "--models", "levit_128s", "--runtimes", "onnxruntime", "--rounds", "2",
      "--target", "0.02"]),
    (lambda w: api.compare("runtime", "torch", "onnxruntime", workdir=w),
     ["compare", "--by", "runtime", "torch", "onnxruntime"]),
    (lambda w: api.report(workdir=w), ["report"]),
])
def test_errors_are_the_command_lines_one_line(tmp_path, capsys, call, argv):
    with pytest.raises(LevitBenchError) as raised:
        call(tmp_path / "work")
    assert str(raised.value) == _cli_error(capsys, "--workdir", tmp_path / "work", *argv)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "work").exists()  # nothing left behind by a refused request


def test_values_the_command_line_would_not_parse_are_refused_too(tmp_path):
    with pytest.raises(LevitBenchError, match="cell timeout must be a positive number"):
        api.sweep("xeon", ["levit_128s"], ["onnxruntime"], cell_timeout=0, workdir=tmp_path)
    with pytest.raises(LevitBenchError, match="--rounds must be at least 1, not 0"):
        api.run("levit_128s", "onnxruntime", "xeon", rounds=0, workdir=tmp_path)
    with pytest.raises(LevitBenchError, match="wait timeout must be >= 0 s"):
        api.run("levit_128s", "onnxruntime", "xeon", wait_timeout=-1, workdir=tmp_path)
    with pytest.raises(LevitBenchError, match="unknown runtime 'onnx'"):  # one name, not its letters
        api.sweep("xeon", "levit_128s", "onnx", workdir=tmp_path)
    assert not tmp_path.joinpath("results.db").exists()


def test_a_store_that_is_not_one_raises_a_store_error(tmp_path):
    (tmp_path / "results.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="file is not a database"):
        api.results(workdir=tmp_path)
