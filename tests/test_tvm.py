"""TVM: the x86 build against PyTorch, the aarch64 build, and the errors a user meets
(unreachable device, missing cross compiler, unknown CPU). Tuning: test_tvm_tuning.py."""

import hashlib
import json
import socket
from pathlib import Path

import pytest

from levit_bench.cli import main
from levit_bench.store import open_store
from levit_bench.runners.artifacts import ensure_artifact
from levit_bench.runners.base import RunnerError
from levit_bench.runners.session import RunRequest, run_cell

BATCH = 2  # TVM's default schedules are slow: the smallest batch that is still a batch


def _run(workdir, **options):
    request = RunRequest("levit_128s", "tvm", options.pop("platform", "xeon"), batch=BATCH, protocol="smoke",
                         **options)
    record = run_cell(request, workdir)
    open_store(workdir).insert(record)
    return record


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _within_export_tolerance(record) -> bool:
    return record["max_abs_diff"] <= 1e-4 * max(1.0, record["max_abs_logit"]) and record["top1_agreement"] == 1.0


def test_x86_build_matches_pytorch_and_says_what_it_compiled(workdir_with_artifact, monkeypatch):
    from tvm.target import codegen

    from levit_bench.runners.tvm.library import compiler_fingerprint

    record = _run(workdir_with_artifact)
    assert record["status"] == "ok", record.get("error")
    assert _within_export_tolerance(record)
    assert record["mode"] == "untuned" and record["threads"] == 1 and record["precision"] == "fp32"
    details = record["runtime_info"]["details"]
    assert details["target"] == {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu()), "num-cores": 1}
    assert details["tuned_tasks"] == 0 and details["tasks"] > 20
    library = Path(details["library"])
    manifest = json.loads((library.parent / "manifest.json").read_text())
    assert manifest["library_sha256"] == hashlib.sha256(library.read_bytes()).hexdigest()
    assert manifest["input_shape"] == [BATCH, 3, 224, 224] and manifest["schedules"] == "untuned"
    assert manifest["tvm_version"] == record["runtime_version"]
    modified = library.stat().st_mtime_ns
    again = _run(workdir_with_artifact)  # the library is reused, not compiled again
    assert again["status"] == "ok" and Path(again["runtime_info"]["details"]["library"]).stat().st_mtime_ns == modified
    assert manifest["compiler_sha256"] == compiler_fingerprint()
    # a library compiled by other code (pipeline, default schedules) is compiled again
    monkeypatch.setattr("levit_bench.runners.tvm.library.compiler_fingerprint", lambda: "another compiler")
    rebuilt = _run(workdir_with_artifact)
    assert rebuilt["status"] == "ok" and _within_export_tolerance(rebuilt)
    assert library.stat().st_mtime_ns != modified


def test_aarch64_library_is_cross_compiled_with_a_manifest(workdir_with_artifact):
    from levit_bench.runners.tvm.target import arm_target
    from levit_bench.runners.tvm.library import build_library

    artifact = ensure_artifact(workdir_with_artifact, "levit_128s", 1)
    library = build_library(workdir_with_artifact, artifact, arm_target("neoverse-n1", 1), "untuned")
    header = library.path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    assert library.manifest["target"]["mtriple"] == "aarch64-linux-gnu"
    assert library.manifest["target"]["mattr"] == ["+neon"] and library.manifest["target"]["mcpu"] == "neoverse-n1"
    assert library.manifest["input_shape"] == [1, 3, 224, 224]
    assert library.manifest["library_sha256"] == hashlib.sha256(library.path.read_bytes()).hexdigest()


def test_a_missing_cross_compiler_is_named(workdir_with_artifact, tmp_path, monkeypatch):
    from levit_bench.runners.tvm.target import arm_target
    from levit_bench.runners.tvm.library import build_library

    artifact = ensure_artifact(workdir_with_artifact, "levit_128s", 1)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RunnerError, match=r"^the cross compiler aarch64-linux-gnu-gcc is missing: "
                                          r"apt-get install gcc-aarch64-linux-gnu$"):
        build_library(workdir_with_artifact, artifact, arm_target(None, 1), "untuned")
    assert not list((workdir_with_artifact / "tvm" / "libraries").rglob("*.so"))


def test_an_unreachable_rpc_server_is_one_clear_line(workdir_with_artifact, capsys):
    port = _free_port()
    code = main(["--workdir", str(workdir_with_artifact), "run", "--runtime", "tvm", "--platform", "arm",
                 "--model", "levit_128s", "--batch", "1", "--protocol", "smoke", "--rpc", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"no TVM RPC server at 127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1
    assert open_store(workdir_with_artifact).records() == []  # checked before anything was compiled or stored


@pytest.mark.parametrize("argv,message", [
    (["--platform", "arm"], "platform arm needs an aarch64 CPU with NEON to run tvm"),
    (["--platform", "xeon", "--mcpu", "no-such-cpu"], "LLVM knows no CPU 'no-such-cpu'"),
    (["--platform", "xeon", "--rpc-key", "rk3399"], "--rpc-tracker HOST:PORT and --rpc-key KEY go together"),
    (["--platform", "xeon", "--runtime", "onnxruntime", "--rpc", "127.0.0.1:9090"], "--rpc: not an option of onnxruntime"),
    (["--platform", "arm", "--rpc", "nowhere"], "an RPC address is HOST:PORT with a port from 1 to 65535, not 'nowhere'"),
    (["--platform", "xeon", "--rpc", "127.0.0.1:9090"], "use it with --platform arm, not xeon"),
])
def test_bad_tvm_requests_are_refused_in_one_line(workdir_with_artifact, capsys, argv, message):
    runtime = [] if "--runtime" in argv else ["--runtime", "tvm"]
    code = main(["--workdir", str(workdir_with_artifact), "run", *runtime, "--model", "levit_128s",
                 "--batch", "1", "--protocol", "smoke", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 1 and message in err and len(err.splitlines()) == 1


def test_tuning_under_the_emulator_is_refused_in_one_line(workdir_with_artifact, capsys):
    code = main(["--workdir", str(workdir_with_artifact), "tune", "--model", "levit_128s", "--platform", "arm",
                 "--rpc", "emulator"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "tune --rpc emulator is refused" in err and len(err.splitlines()) == 1
    assert not (workdir_with_artifact / "tvm" / "tuning").exists()  # nothing was started


def test_sweep_plans_tvm_untuned_and_tuned_where_a_database_exists(tmp_path):
    from levit_bench.runners.sweep import plan

    assert [c.label for c in plan(["levit_128s"], ["tvm"], tmp_path)] == ["levit_128s / tvm:untuned"]
    database = tmp_path / "tvm" / "tuning" / "host-znver4-0" / "tvm-0.27"
    database.mkdir(parents=True)
    (database / "database_tuning_record.json").write_text('[0, [["candidate"]]]\n')
    (database / "models.json").write_text('{"levit_128s": {"batches": [16], "trials": 1, "seconds": 1.0}}')
    assert [c.label for c in plan(["levit_128s", "levit_128"], ["tvm", "tvm:untuned"], tmp_path)] == [
        "levit_128s / tvm:untuned", "levit_128s / tvm:tuned", "levit_128s / tvm:untuned",
        "levit_128 / tvm:untuned", "levit_128 / tvm:untuned",
    ]
