"""Extending levit-bench from outside the package: a runtime and a model family added through
the public registration points only, then swept, stored and reported like the built-in ones."""

import functools
from importlib import metadata

import pytest
from torch import nn

from levit_bench import registry, runtimes
from levit_bench.reports.dataset import report_points
from levit_bench.reports.figures import family_style
from levit_bench.reports.report import build_report
from levit_bench.store import open_store
from levit_bench.runners.base import Runner, RuntimeDescription
from levit_bench.runners.session import new_run_id
from levit_bench.runners.sweep import plan, run_sweep, sweep_requests
from records import make_record


class ReferenceRunner(Runner):
    """ONNX's own reference evaluator (numpy): a runtime levit-bench does not ship."""

    runtime = "onnx-reference"

    def load(self, artifact, batch):
        from onnx.reference import ReferenceEvaluator

        self.evaluator = ReferenceEvaluator(str(artifact.onnx_path))
        self.input_name = self.evaluator.input_names[0]

    def __call__(self, inputs):
        return self.evaluator.run(None, {self.input_name: inputs})[0]

    def describe(self):
        return RuntimeDescription(runtime=self.runtime, version=metadata.version("onnx"), device="cpu (numpy)",
                                  precision=self.precision, threads=self.platform.threads, mode=self.mode)


@pytest.fixture()
def reference_runtime():
    spec = runtimes.register_runtime(runtimes.RuntimeSpec(
        "onnx-reference", f"{ReferenceRunner.__module__}:ReferenceRunner", package="onnx", marker="*"))
    yield spec
    runtimes.unregister_runtime(spec.name)


def test_a_registered_runtime_is_swept_gated_stored_and_reported(workdir_with_artifact, reference_runtime, tmp_path):
    work = workdir_with_artifact
    cells = plan(["levit_128s"], ["onnx-reference", "onnxruntime"], work)
    requests = sweep_requests(cells, "xeon", work, new_run_id(), protocol="smoke")
    store = open_store(work)
    outcomes = run_sweep(requests, work, done_rounds=store.count_ok, on_record=store.insert_or_keep)
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.error for o in outcomes]
    record = next(r for r in store.records() if r["runtime"] == "onnx-reference")
    # measured in a worker process that knew the runtime only from this one's registration
    assert record["runtime_version"] == metadata.version("onnx") == record["versions"]["onnx-reference"]
    assert record["mode"] is None and record["precision"] == "fp32" and record["batch"] == 16
    assert record["max_abs_diff"] <= 1e-4 * max(1.0, record["max_abs_logit"]) and record["top1_agreement"] == 1.0
    assert record["images_per_s"] > 0 and len(record["samples_ms"]) >= 3
    # a second sweep finds the finished cell again
    again = run_sweep(sweep_requests(cells[:1], "xeon", work, new_run_id(), protocol="smoke"), work,
                      done_rounds=store.count_ok, on_record=store.insert_or_keep)
    assert [o.status for o in again] == ["skipped"]
    result = build_report(store, tmp_path / "report")
    page = result.index.read_text()
    assert "onnx-reference" in page and result.points == 2


@pytest.fixture()
def toy_family():
    family = registry.Family("toynet", "ToyNet", "#00aa88")
    registry.register_family(family)
    registry.register_model(registry.ModelSpec(
        name="toynet_s", family="toynet", resolution=32, short_name="T-S",
        builder=functools.partial(_toy_net, width=8),
        preprocessing=registry.Preprocessing(resize=36, crop=32, interpolation="bilinear", source="a test"),
        reported=registry.Reported(params_m=0.001, macs_m=None, top1=40.0, source="a test's toy family"),
    ))
    yield family
    registry.unregister_model("toynet_s")
    registry.unregister_family(family.name)


def _toy_net(num_classes: int = 1000, width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))


def test_a_registered_family_is_reported_under_its_own_name_and_colour(toy_family, tmp_path):
    store = open_store(tmp_path / "work")
    store.insert(make_record(model="toynet_s", images_per_s=900.0, median_ms=17.8))
    store.insert(make_record(model="levit_128s"))
    points = report_points(store.records(), store.accuracy_records())
    toy = next(p for p in points if p["model"] == "toynet_s")
    assert toy["family"] == "toynet" and toy["top1"] == 40.0 and toy["top1_source"] == "reported"
    assert family_style("toynet") == ("ToyNet", "#00aa88")
    result = build_report(store, tmp_path / "report")
    page = result.index.read_text()
    assert "toynet_s" in page and all(path.is_file() for path in result.figures)
    with pytest.raises(Exception, match="already registered"):
        registry.register_family(toy_family)
