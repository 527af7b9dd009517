"""TVM tuning: weights prepacked by tuned kernels, one database shared by the models tuned into
it, the default schedules measured first, and the budgets (trials, wall-clock minutes)."""

import json
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

tvm = pytest.importorskip("tvm")

from levit_bench.cli import main  # noqa: E402
from levit_bench.store import open_store  # noqa: E402
from levit_bench.runners.artifacts import ensure_artifact  # noqa: E402
from levit_bench.runners.session import RunRequest, run_cell  # noqa: E402
from levit_bench.runners.tvm.tuning import ROUND, Budget, next_task  # noqa: E402

BATCH = 2  # the smallest batch that is still a batch


def _dense_onnx(path: Path, rng) -> tuple[np.ndarray, np.ndarray]:
    weight = rng.standard_normal((64, 48)).astype("float32")
    bias = rng.standard_normal(48).astype("float32")
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["y"])], "dense",
        [value("x", onnx.TensorProto.FLOAT, [32, 64])], [value("y", onnx.TensorProto.FLOAT, [32, 48])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return weight, bias


def test_tuned_kernels_read_weights_packed_at_compile_time_and_outputs_stay(tmp_path):
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    from levit_bench.runners.tvm import measuring
    from levit_bench.runners.tvm.compile import compile_module, open_database, prepack_weights, relax_module
    from levit_bench.runners.tvm.target import host_target

    rng = np.random.default_rng(0)
    weight, bias = _dense_onnx(tmp_path / "dense.onnx", rng)
    target = tvm.target.Target(host_target(1))
    with target:
        mod, _ = relax_module(tmp_path / "dense.onnx")
    (kernel,) = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert list(kernel.attrs["layout_free_buffers"]) == [1, 2]  # the weight and the bias
    # MetaSchedule's own candidates (no default schedule recorded): each rewrites the weight's layout
    extracted = ms.relax_integration.extract_tasks(mod, target)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(extracted, str(tmp_path / "logs"),
                                                                             num_threads=1)
    database = open_database(tmp_path / "db")
    ms.tune.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(tmp_path / "logs"), max_trials_global=8,
                       max_trials_per_task=8, num_trials_per_iter=8, builder=measuring.builder(0, False),
                       runner=measuring.runner(None, None), database=database)
    with target, database:
        applied = relax.transform.MetaScheduleApplyDatabase()(mod)
    assert "layout_rewrite_preproc" in applied.script()  # the weight is re-laid-out inside the kernel...
    packed = prepack_weights(applied)
    assert "layout_rewrite_preproc" not in packed.script()  # ...until the build does it once, on the constant

    x = rng.standard_normal((32, 64)).astype("float32")
    compiled = compile_module(tmp_path / "dense.onnx", host_target(1), tmp_path / "db")
    assert compiled.tuned_tasks == 1 and [w["function"] for w in compiled.wiring] == ["fused_matmul_add1_prepacked"]
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), x @ weight + bias, rtol=1e-5, atol=1e-4)


def test_a_round_fits_the_budget_left():
    assert Budget(trials=64).round_size(trials=0, elapsed=1e6, full_round_s=1e6) == ROUND  # no clock
    assert Budget(trials=40).round_size(trials=32, elapsed=0, full_round_s=1) == 8
    assert Budget(trials=64).round_size(trials=64, elapsed=0, full_round_s=1) == 0
    assert Budget(seconds=100).round_size(trials=0, elapsed=0, full_round_s=60) == ROUND
    # 40 s left, a full round of this task takes 60 s: a round of 32 x 0.9 x 40/60 = 19
    assert Budget(seconds=100).round_size(trials=10**6, elapsed=60, full_round_s=60) == 19
    assert Budget(seconds=100).round_size(trials=0, elapsed=90, full_round_s=60) == 0  # 4 would not learn
    assert Budget(trials=64, seconds=60).round_size(trials=0, elapsed=61, full_round_s=1) == 0


def test_rounds_follow_the_measured_time_and_skip_the_negligible():
    class Task:
        def __init__(self, weight):
            self.weight = weight

    tasks = [Task(1), Task(4), Task(1), Task(1)]
    best = [1e-3, 1e-3, 1e-6, None]  # 1 ms, 4 x 1 ms, a kernel of 0.02% of the time, one never measured
    trials = [0, 0, 0, 0]
    picks = []
    for _ in range(5):
        chosen = next_task(tasks, best, trials, exhausted=set())
        picks.append(chosen)
        trials[chosen] += ROUND
    assert picks == [1, 1, 1, 0, 1]  # 4 ms gets 4 rounds for the 1 ms kernel's one
    assert next_task(tasks, best, trials, exhausted={0, 1}) is None  # the rest is under MIN_SHARE


def _tune(workdir: Path, capsys, *argv: str) -> tuple[dict, float]:
    capsys.readouterr()
    started = time.monotonic()
    assert main(["--workdir", str(workdir), "tune", "--platform", "xeon", "--batch", str(BATCH), "--json",
                 *argv]) == 0
    return json.loads(capsys.readouterr().out), time.monotonic() - started


def _run(workdir: Path, model: str, **options) -> dict:
    record = run_cell(RunRequest(model, "tvm", "xeon", batch=BATCH, protocol="smoke", **options), workdir)
    open_store(workdir).insert(record)
    assert record["status"] == "ok", record.get("error")
    assert record["max_abs_diff"] <= 1e-4 * max(1.0, record["max_abs_logit"]) and record["top1_agreement"] == 1.0
    return record


def test_one_database_serves_every_model_tuned_into_it_and_minutes_bound_a_tune(workdir_with_artifact, capsys):
    from levit_bench.runners.tvm.tasks import model_tasks
    from levit_bench.runners.tvm.target import host_target

    work = workdir_with_artifact
    first, _ = _tune(work, capsys, "--model", "levit_128s", "--trials", "2")
    # every task's default schedule is measured and recorded first, then the 2 candidates asked for
    assert first["tasks"] > 20 and first["trials"] == 2 and first["records"] == first["tasks"] + 2
    assert 0 < first["estimated_ms"]["levit_128s"] <= first["start_ms"]["levit_128s"]
    database = Path(first["database"])
    assert database.parent.parent.name == "tuning" and database.name == f"tvm-{metadata.version('apache-tvm')}"
    assert json.loads((database / "models.json").read_text())["levit_128s"]["batches"] == [BATCH]

    tuned = _run(work, "levit_128s")
    assert tuned["mode"] == "tuned"
    details = tuned["runtime_info"]["details"]
    assert details["tuned_tasks"] == details["tasks"]  # every kernel from the database
    assert _run(work, "levit_128", mode=None)["mode"] == "untuned"  # not tuned into it yet

    # levit_128 joins: only the kernels levit_128s does not have are measured
    both, _ = _tune(work, capsys, "--models", "levit_128s", "levit_128", "--trials", "1")
    alone = model_tasks({"levit_128": ensure_artifact(work, "levit_128", BATCH).onnx_path},
                        tvm.target.Target(host_target(1)))
    new = both["tasks"] - first["tasks"]
    assert 0 < new < len(alone)  # the rest are levit_128s's
    assert both["records"] == first["records"] + new + 1
    second = _run(work, "levit_128")
    assert second["mode"] == "tuned"
    assert second["runtime_info"]["details"]["tuned_tasks"] == second["runtime_info"]["details"]["tasks"]

    # a wall-clock budget: without it, the default 320 trials take several minutes at this batch
    timed, wall = _tune(work, capsys, "--model", "levit_128s", "--minutes", "1")
    assert timed["trials"] >= 1 and timed["seconds"] <= 60 + 45  # a round may outlast the one before it
    assert wall < timed["seconds"] + 60  # exporting and extracting tasks are outside the budget


@pytest.mark.parametrize("argv,code,message", [
    (["--model", "levit_128s", "--minutes", "0"], 2, "must be a positive number of minutes, not 0"),
    (["--model", "levit_128s", "--minutes", "soon"], 2, "'soon' is not a number of minutes"),
    (["--models", "levit_128s", "levit_128s"], 1, "a model is named twice: levit_128s levit_128s"),
    (["--models", "levit_128s", "no_such_model"], 1, "no_such_model"),
    (["--models", "levit_128s", "levit_128", "--weights", "w.safetensors"], 1,
     "--weights names one model's weights: tune one model with it"),
])
def test_bad_tune_requests_are_one_line_and_start_nothing(tmp_path, capsys, argv, code, message):
    try:
        got = main(["--workdir", str(tmp_path), "tune", "--platform", "xeon", *argv])
    except SystemExit as exit_:  # argparse's refusals
        got = exit_.code
    assert got == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "tvm").exists() and not (tmp_path / "models").exists()
