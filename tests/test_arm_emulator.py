"""The emulated aarch64 board: an ARM NEON build made here loads and computes right under QEMU.

The arm64 root is built once into the real cache ($LEVIT_BENCH_CACHE or ~/.cache/levit-bench;
minutes on a new machine, as root), and linked into this module's own cache, so the emulator
started here never touches one that someone else has running.
"""

import gc
import os

import numpy as np
import pytest

from levit_bench.devices import arm_emulator
from tiny_models import TINY, tiny  # noqa: F401 (a fixture)

ARM_TARGET = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
EM_AARCH64 = 183  # ELF e_machine


@pytest.fixture(scope="module")
def emulator_cache(tmp_path_factory):
    root = arm_emulator.ensure_root(on_step=print)
    cache = tmp_path_factory.mktemp("arm-cache")
    (cache / "arm64-root").symlink_to(root, target_is_directory=True)
    return cache


@pytest.fixture(autouse=True)
def _isolated_dirs(emulator_cache, tmp_path, monkeypatch):
    """Replaces conftest's: the cache is the module's, whose root links to the built one."""
    monkeypatch.setenv("LEVIT_BENCH_CACHE", str(emulator_cache))
    monkeypatch.setenv("LEVIT_BENCH_HOME", str(tmp_path / "work"))


@pytest.fixture(scope="module")
def emulator(emulator_cache):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEVIT_BENCH_CACHE", str(emulator_cache))
        try:
            yield arm_emulator.start(timeout_s=300)
        finally:
            arm_emulator.stop()


def test_start_status_and_address(emulator):
    assert arm_emulator.status() == emulator
    assert arm_emulator.start() == emulator  # already running: the same one
    assert emulator.host == "127.0.0.1"
    assert (arm_emulator.cache_dir() / "arm-emulator" / "state.json").is_file()
    assert arm_emulator.is_emulator_address("127.0.0.1", emulator.port)
    assert arm_emulator.is_emulator_address("localhost", emulator.port)
    assert not arm_emulator.is_emulator_address("127.0.0.1", emulator.port + 1)


def _arm_library(path):
    """matmul + relu, compiled here for aarch64 NEON and linked by the cross gcc."""
    import tvm
    from tvm.script import relax as R
    from tvm.support.cc import cross_compiler

    @tvm.script.ir_module
    class MatmulRelu:
        @R.function
        def main(x: R.Tensor((4, 16), "float32"), w: R.Tensor((16, 8), "float32")):
            with R.dataflow():
                y = R.nn.relu(R.matmul(x, w))
                R.output(y)
            return y

    executable = tvm.compile(MatmulRelu, target=tvm.target.Target(ARM_TARGET))
    executable.export_library(str(path), fcompile=cross_compiler("aarch64-linux-gnu-gcc"))
    return path


def test_arm_build_round_trip(emulator, tmp_path):
    import tvm
    from tvm import rpc
    from tvm.runtime.vm import VirtualMachine

    library = _arm_library(tmp_path / "matmul_relu.so")
    assert int.from_bytes(library.read_bytes()[18:20], "little") == EM_AARCH64

    remote = rpc.connect(emulator.host, emulator.port)
    remote.upload(str(library))
    device = remote.cpu()
    vm = VirtualMachine(remote.load_module(library.name), device)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16), dtype=np.float32)
    w = rng.standard_normal((16, 8), dtype=np.float32)
    out = vm["main"](tvm.runtime.tensor(x, device), tvm.runtime.tensor(w, device)).numpy()
    np.testing.assert_allclose(out, np.maximum(x @ w, 0), atol=1e-5, rtol=1e-5)
    assert (out == 0).any() and (out > 0).any()  # relu did something either way
    # the RPC server serves one session at a time, and this one ends only when its objects are
    # freed; a VM in a reference cycle lives until a garbage collection, so the next test's run,
    # after other modules' tests left more garbage, found the server still busy with this one
    del vm, device, remote
    gc.collect()


def test_levit_128s_aarch64_build_matches_pytorch_under_emulation(emulator, workdir_with_artifact, capsys):
    """The whole path: cross-compiled by `run --platform arm`, uploaded over RPC, run under QEMU."""
    from levit_bench.cli import main
    from levit_bench.store import open_store

    code = main(["--workdir", str(workdir_with_artifact), "run", "--runtime", "tvm", "--platform", "arm",
                 "--model", "levit_128s", "--batch", "1", "--protocol", "smoke", "--rpc", "emulator", "--json"])
    assert code == 0, capsys.readouterr().err
    assert "emulated, so only its outputs were checked" in capsys.readouterr().err
    (record,) = open_store(workdir_with_artifact).records(runtime="tvm")
    assert record["status"] == "emulated" and record["platform"] == "arm"
    assert record["max_abs_diff"] <= 1e-4 * max(1.0, record["max_abs_logit"])  # the exporter's tolerance
    assert record["top1_agreement"] == 1.0
    assert record.get("images_per_s") is None and record.get("median_ms") is None and not record.get("samples_ms")
    assert record["host_info"]["architecture"] == "aarch64"
    assert f"at {emulator.host}:{emulator.port} (QEMU emulation)" in record["cpu_model"]
    assert record["measuring_host"]["architecture"] == "x86_64"
    details = record["runtime_info"]["details"]
    assert details["emulated"] is True and details["target"]["mtriple"] == "aarch64-linux-gnu"
    assert details["features"] == ["fp-armv8", "neon"]


def _listeners(port):
    """Pids of the processes listening on 127.0.0.1:`port` now (another may have taken it)."""
    import psutil

    return {c.pid for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_stop_ends_the_server(emulator):
    members = arm_emulator.session_members(emulator.pid)
    assert emulator.pid in members and len(members) >= 2  # the server and its popen worker at least
    assert _listeners(emulator.port) <= set(members)
    assert arm_emulator.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(emulator.pid, 0)
    assert arm_emulator.session_members(emulator.pid) == []
    for pid in members:  # every process it started has exited (a reused pid is another program)
        try:
            assert emulator.root.encode() not in open(f"/proc/{pid}/cmdline", "rb").read()
        except FileNotFoundError:
            pass
    assert not (_listeners(emulator.port) & set(members))  # the port, if taken again, is someone else's
    assert arm_emulator.status() is None
    assert not (arm_emulator.cache_dir() / "arm-emulator" / "state.json").exists()
    assert not arm_emulator.is_emulator_address(emulator.host, emulator.port)
    assert not arm_emulator.stop()


def test_levit_128s_pte_matches_pytorch_on_executorchs_own_aarch64_runtime(workdir_with_artifact, capsys):
    """The `.pte` built on this host, run by the aarch64 executorch wheel's runtime libraries (the
    root has no torch) under QEMU as a Neoverse N1, through the gate; no timing is kept."""
    from levit_bench.cli import main
    from levit_bench.store import open_store

    code = main(["--workdir", str(workdir_with_artifact), "run", "--runtime", "executorch", "--platform", "arm",
                 "--model", "levit_128s", "--batch", "1", "--protocol", "smoke", "--rpc", "emulator", "--json"])
    assert code == 0, capsys.readouterr().err
    (record,) = open_store(workdir_with_artifact).records(runtime="executorch")
    assert record["status"] == "emulated" and record["platform"] == "arm" and record["threads"] == 1
    assert record["max_abs_diff"] <= 1e-4 * max(1.0, record["max_abs_logit"]) and record["top1_agreement"] == 1.0
    assert record.get("images_per_s") is None and not record.get("samples_ms")
    assert record["cpu_model"] == "ARM Neoverse-N1"  # read off the emulated CPU's MIDR by the runner
    assert {"neon", "asimddp"} <= set(record["host_info"]["isa"]) and "sve" not in record["host_info"]["isa"]
    assert record["measuring_host"]["architecture"] == "x86_64"
    info = record["runtime_info"]
    assert info["device"] == "QEMU neoverse-n1 (XNNPACK, emulated)" and info["details"]["emulated_cpu"] == "neoverse-n1"
    assert info["details"]["delegation"]["delegates"] == 1 and info["details"]["delegation"]["portable_ops"] == 0


def test_executorch_int8_on_the_emulated_board_passes_the_int8_gate(tiny, tmp_path, capsys):
    from levit_bench.cli import main
    from levit_bench.exporters.parity import TOLERANCES
    from levit_bench.store import open_store

    work = tmp_path / "work"
    code = main(["--workdir", str(work), "run", "--runtime", "executorch", "--platform", "arm", "--rpc", "emulator",
                 "--model", TINY, "--weights", str(tiny[0]), "--precision", "int8", "--batch", "1",
                 "--protocol", "smoke", "--json"])
    assert code == 0, capsys.readouterr().err
    (record,) = open_store(work).records()
    assert record["status"] == "emulated" and record["precision"] == "int8"
    assert TOLERANCES["int8"].violation(record["max_abs_diff"], record["max_abs_logit"],
                                        record["top1_agreement"]) is None
    assert record["runtime_info"]["details"]["pte"].endswith(f"{TINY}.xnnpack-int8.pte")
