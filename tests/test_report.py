"""Reports from a store filled by real (small) runs: figures, tables, accuracy labels,
escaping, and the page rendered in headless Chromium."""

import copy
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest

from levit_bench import cli
from levit_bench.errors import LevitBenchError
from levit_bench.models.checkpoints import weights_id
from levit_bench.reports.confidence import estimate
from levit_bench.reports.dataset import report_points
from levit_bench.reports.figures import pareto_front
from levit_bench.reports.html import png_size
from levit_bench.reports.report import build_report
from levit_bench.store import open_store
from levit_bench.reports.tables import headline_claims
from levit_bench.runners.profile_run import profile_cell
from levit_bench.runners.session import RunRequest, run_cell
from records import make_record

RUNTIMES = ("torch", "onnxruntime", "openvino")


@pytest.fixture(scope="module")
def measured_store(exported_128s, tmp_path_factory):
    """levit_128s measured on three runtimes plus efficientnet_b0 on one, all for real."""
    work = tmp_path_factory.mktemp("report") / "work"
    shutil.copytree(exported_128s, work)
    store = open_store(work)
    for runtime in RUNTIMES:
        record = run_cell(RunRequest("levit_128s", runtime, "xeon", protocol="smoke"), work)
        store.insert(record)
        assert record["status"] == "ok", record["error"]
    record = run_cell(RunRequest("efficientnet_b0", "onnxruntime", "xeon", protocol="smoke"), work)
    store.insert(record)
    assert record["status"] == "ok", record["error"]
    store.insert_profile(profile_cell(RunRequest("levit_128s", "onnxruntime", "xeon", protocol="smoke"), work))
    return work


def _copy_store(measured_store, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(measured_store, work)
    return work


def test_report_files_figures_and_tables(measured_store, tmp_path):
    work = _copy_store(measured_store, tmp_path)
    result = build_report(open_store(work), tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["components-levit-128s.png", "index.html", "results.csv", "roofline-xeon.png",
                     "tradeoff-xeon-onnxruntime.png", "tradeoff-xeon-openvino.png", "tradeoff-xeon-torch.png",
                     "tradeoff-xeon.png"]
    for figure in result.figures:
        width, height = png_size(figure.read_bytes())
        assert (width, height) == (1500, 975) if figure.name.startswith("tradeoff") else width > 600
    assert len(pd.read_csv(result.csv)) == 4
    page = result.index.read_text()
    for section in ("Where and how", "Figure 1, remade", "Where the time goes", "Table 3, remade",
                    "speed-up over the PyTorch reference", "headline claims", "Every measurement"):
        assert section in page
    assert "levit_128s: time per component (profiler overhead: onnxruntime " in page
    assert page.count("data:image/png;base64,") == 6  # self-contained: every figure embedded
    assert "http://" not in page and "https://" not in page  # no CDN, nothing fetched


def test_a_family_the_figures_do_not_know_still_plots(measured_store, tmp_path):
    from levit_bench.reports.figures import family_style, tradeoff_figure

    store = open_store(measured_store)
    points = copy.deepcopy(report_points(store.records(), store.accuracy_records()))
    for point in points:
        if point["model"] == "efficientnet_b0":
            point["family"] = "convnext"
    path = tmp_path / "figure.png"
    tradeoff_figure(points, "xeon", "a new family", path)
    assert png_size(path.read_bytes()) == (1500, 975)
    assert family_style("convnext") == ("convnext", family_style("unknown")[1])
    assert family_style("levit") == ("LeViT", "#d62728")


def test_the_legend_names_every_family_drawn_measured_or_the_papers(measured_store, tmp_path, monkeypatch):
    from levit_bench.reports import figures

    store = open_store(measured_store)
    levit_only = [p for p in report_points(store.records(), store.accuracy_records()) if p["family"] == "levit"]
    legends = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, **options: legends.append(
        [text.get_text() for text in fig.axes[0].get_legend().get_texts()]))
    figures.tradeoff_figure(levit_only, "xeon", "LeViT measured, the rest the paper's", tmp_path / "figure.png")
    # the paper's Table 3 has Intel speeds of LeViT, EfficientNet and DeiT (MobileViT has none there)
    assert {"LeViT", "EfficientNet", "DeiT"} <= set(legends[0])


def test_table3_flags_the_best_runtime_and_shows_the_paper(measured_store):
    from levit_bench.registry import get_spec
    from levit_bench.reports.tables import table3

    store = open_store(measured_store)
    points = report_points(store.records(), store.accuracy_records())
    table = table3(points, {"levit_128s": get_spec("levit_128s").measured_counts()})
    variants = [c["variant"] for c in table["columns"]]
    assert variants == ["torch", "onnxruntime", "openvino", "paper"]
    row = next(r for r in table["rows"] if r["model"] == "levit_128s")
    measured = [c for c in row["cells"] if c["kind"] == "measured"]
    best = max(measured, key=lambda c: c["value"])
    assert best["best"] and sum(c["best"] for c in row["cells"]) == 1
    assert row["cells"][-1] == {"value": 131.1, "best": False, "kind": "paper", "noisy": False}
    assert row["params"] == 7_777_058 and row["top1"] == 76.6 and row["top1_source"] == "reported"


def test_accuracy_is_measured_for_the_same_weights_else_reported(measured_store, tmp_path):
    work = _copy_store(measured_store, tmp_path)
    store = open_store(work)
    record = store.records(model="levit_128s")[0]
    store.insert_accuracy({"uid": uuid.uuid4().hex, "created_at": "2026-11-21T12:00:00+00:00", "model": "levit_128s",
                           "weights_id": weights_id(record["weights"]), "runtime": "torch", "precision": "fp32",
                           "dataset": "synthetic/val", "top1": 91.25, "top5": 99.0, "images": 500})
    store.insert_accuracy({"uid": uuid.uuid4().hex, "created_at": "2026-11-21T12:00:00+00:00",
                           "model": "efficientnet_b0", "weights_id": "some-other-weights", "runtime": "torch",
                           "precision": "fp32", "dataset": "synthetic/val", "top1": 12.0, "images": 500})
    points = report_points(store.records(), store.accuracy_records())
    by_model = {(p["model"], p["variant"]): p for p in points}
    assert by_model[("levit_128s", "torch")]["top1"] == 91.25
    assert by_model[("levit_128s", "torch")]["top1_source"] == "measured"
    assert "synthetic/val" in by_model[("levit_128s", "torch")]["top1_detail"]
    other = by_model[("efficientnet_b0", "onnxruntime")]  # an eval of other weights does not count
    assert (other["top1"], other["top1_source"]) == (77.1, "reported")
    page = build_report(store, tmp_path / "out").index.read_text()
    assert '<td class="source-measured"' in page and '<td class="source-reported"' in page


def test_hostile_names_are_escaped_and_hosts_kept_apart(measured_store, tmp_path):
    work = _copy_store(measured_store, tmp_path)
    store = open_store(work)
    original = store.records(model="levit_128s", runtime="onnxruntime")[0]
    hostile = copy.deepcopy(original)
    hostile.update(uid=uuid.uuid4().hex, host="feedfacecafe", cpu_model="<script>alert('cpu')</script>",
                   model="<img src=x onerror=alert(1)>")
    store.insert(hostile)
    points = report_points(store.records(), [])
    assert len({p["host"] for p in points}) == 2  # the other host is its own series, not merged
    page = build_report(store, tmp_path / "out").index.read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#39;cpu&#39;)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_headline_claims_and_pareto_front():
    def point(model, ips, variant="onnxruntime"):
        # three rounds 2% apart, each model in a run of its own (not paired)
        rounds = [make_record(model=model, run_id=model, round=number, samples_ms=[16 / (ips * f) * 1e3] * 10)
                  for number, f in enumerate((0.98, 1.0, 1.02), 1)]
        return {"platform": "xeon", "host": "h", "host_label": "CPU (h)", "variant": variant, "model": model,
                "images_per_s": ips, "estimate": estimate(rounds), "cell_rounds": rounds, "noisy": False}

    points = [point("levit_192", 60.0), point("efficientnet_b2", 30.0), point("levit_256", 40.0),
              point("efficientnet_b3", 10.0), point("levit_192", 50.0, "torch")]
    claims = headline_claims(points)
    assert [(c["variant"], c["pair"], c["measured"], c["claimed"]) for c in claims] == [
        ("onnxruntime", "levit_192 : efficientnet_b2", 2.0, 5.0),
        ("onnxruntime", "levit_256 : efficientnet_b3", 4.0, 7.0),
    ]
    assert claims[0]["paper_table3"] == pytest.approx(65.0 / 13.1)
    low, high = claims[0]["measured_ci"]  # the ratio's interval spans the rounds' spread
    assert 0.95 * 2.0 <= low < 2.0 < high <= 1.05 * 2.0
    assert pareto_front([(100, 70), (50, 80), (60, 75), (40, 79), (10, 82)]) == [(100, 70), (60, 75), (50, 80), (10, 82)]


def test_report_command_and_errors(measured_store, tmp_path, capsys):
    work = _copy_store(measured_store, tmp_path)
    assert cli.main(["--workdir", str(work), "report", "--runtime", "onnxruntime"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str((work / "reports" / "index.html").resolve())
    assert sorted(p.name for p in (work / "reports").glob("*.png")) == [
        "components-levit-128s.png", "roofline-xeon.png", "tradeoff-xeon-onnxruntime.png", "tradeoff-xeon.png"]
    assert cli.main(["--workdir", str(tmp_path / "empty"), "report"]) == 1
    assert "holds no measurements" in capsys.readouterr().err
    assert cli.main(["--workdir", str(work), "report", "--platform", "gpu"]) == 1
    assert "no successful measurement matches" in capsys.readouterr().err


def _chromium() -> str:
    path = os.environ.get("LEVIT_BENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "headless Chromium is needed for this test: `make test` installs Debian's chromium"
    return path


def test_report_renders_in_a_real_browser(measured_store, tmp_path):
    from playwright.sync_api import sync_playwright

    work = _copy_store(measured_store, tmp_path)
    index = build_report(open_store(work), tmp_path / "out").index
    artifacts = Path(os.environ.get("LEVIT_BENCH_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "report-screenshot.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_chromium(), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
            assert len(images) == 6 and all(complete and width > 0 for complete, width in images)
            assert page.locator("table").count() == 6
            assert page.locator("#precision-gains tbody tr").count() == 1  # its "no int8, bf16 or fp16" row
            assert page.locator("#table3 tbody tr").count() == 2
            assert page.locator("#measurements tbody tr").count() == 4
            # the sortable tables sort without a framework: by images/s, both ways
            header = page.locator("#measurements th", has_text="images/s")
            cells = "Array.from(document.querySelectorAll('#measurements tbody tr td:nth-child(8)')).map(c => parseFloat(c.textContent))"
            header.click()
            ascending = page.evaluate(cells)
            header.click()
            descending = page.evaluate(cells)
            assert ascending == sorted(ascending) and descending == sorted(ascending, reverse=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert png_size(screenshot.read_bytes())[0] == 1440


def test_roofline_points_are_measured_rates_at_their_models_intensity(measured_store, tmp_path):
    from levit_bench.models.counting import count_macs
    from levit_bench.registry import create_model
    from levit_bench.reports.breakdown import roofline_figure, roofline_points

    store = open_store(measured_store)
    placed = roofline_points(report_points(store.records(), store.accuracy_records()))
    assert sorted(p["model"] for p in placed) == ["efficientnet_b0", "levit_128s", "levit_128s", "levit_128s"]
    macs = {m: count_macs(create_model(m)[0], 224) for m in ("levit_128s", "efficientnet_b0")}
    for point in placed:
        assert point["gflops"] == pytest.approx(2 * macs[point["model"]] * point["images_per_s"] / 1e9, rel=1e-3)
        assert 1 < point["intensity"] < 200  # FLOPs per byte: neither a copy nor pure compute
    levit = next(p for p in placed if p["model"] == "levit_128s")
    # a bigger batch shares the weights among more images: more FLOPs per byte
    assert roofline_points([{**levit, "batch": 64}])[0]["intensity"] > levit["intensity"]
    ceiled = [{**p, "peak_fma_gflops": 200.0, "memory_gbps": 30.0} for p in placed]
    roofline_figure(ceiled, "xeon", tmp_path / "roofline.png")
    assert png_size((tmp_path / "roofline.png").read_bytes())[0] > 600


def test_the_deployment_view_tables_scaling_scenarios_and_draws_latency(tmp_path):
    """Cores, streams and scenarios stored: a scaling row with the efficiency, a scenarios row
    with intervals over rounds, and a latency-throughput figure per model."""
    from levit_bench.store import open_store

    store = open_store(tmp_path)
    for number in (1, 2, 3):
        for cores, speed in ((1, 100.0), (2, 190.0)):
            store.insert(make_record(run_id="sweep", round=number, cores=cores, threads=cores,
                                     images_per_s=speed + number, median_ms=16e3 / (speed + number),
                                     samples_ms=[16e3 / (speed + number)] * 3, p99_ms=16e3 / speed * 1.1))
        store.insert(make_record(run_id="sweep", round=number, cores=2, streams=2, images_per_s=200.0 + number,
                                 p99_ms=170.0))
        store.insert(make_record(run_id="offline", round=number, cores=2, scenario="offline", valid=True,
                                 scenario_settings="{}", images_per_s=205.0 + number,
                                 latency_ms={"p50": 500.0, "p99": 900.0}))
        store.insert(make_record(run_id="single", round=number, cores=2, batch=1, scenario="single-stream",
                                 valid=True, scenario_settings="{}", images_per_s=120.0, p90_ms=8.0 + number,
                                 metric_ms={"p90": 8.0 + number}, latency_ms={"p50": 7.5, "p99": 9.0}))
    store.insert({"uid": "search", "created_at": "2026-11-21T10:00:00+00:00", "model": "levit_128s",
                  "runtime": "onnxruntime", "mode": None, "platform": "xeon", "host": "abc123def456", "cores": 2,
                  "streams": 1, "batch": 16, "latency_bound_ms": 15.0, "status": "ok", "capacity_qps": 150.0,
                  "offline_qps": 206.0, "probes": []}, table="capacities")
    result = build_report(store, tmp_path / "report")
    page = result.index.read_text()
    assert "1: 102.0" in page and "2: 192.0" in page and "1.88x, 94%" in page  # the scaling row, medians of 3 rounds
    assert "207.0 <small>(" in page and "3 rounds, batch 16" in page  # offline images/s with its interval
    assert "10.00 <small>(9.00–11.00)</small>" in page  # single-stream p90: median of 9, 10, 11 ms
    assert "150.0 within 15 ms" in page
    figure = tmp_path / "report" / "latency-levit-128s.png"
    assert figure in result.figures and figure.stat().st_size > 0


def test_compare_by_cores_streams_and_scenario(tmp_path):
    from levit_bench import api
    from levit_bench.store import open_store

    store = open_store(tmp_path)
    for number in (1, 2, 3):
        def add(speed, **fields):
            store.insert(make_record(run_id="sweep", round=number, images_per_s=speed, median_ms=16e3 / speed,
                                     samples_ms=[16e3 / speed] * 3, **fields))
        add(100.0 + number)
        add(180.0 + 2 * number, cores=2, threads=2)
        add(190.0 + 2 * number, cores=2, threads=2, streams=2)
        add(200.0 + 2 * number, cores=2, threads=2, streams=2, scenario="offline", scenario_settings="{}")
    (cores,) = api.comparison("cores", "1", "2", workdir=tmp_path)
    assert cores["ratio"] == pytest.approx(184 / 102, rel=0.01) and cores["verdict"] == "faster"
    assert cores["efficiency"] == pytest.approx(cores["ratio"] / 2, rel=1e-3) and cores["runtime"] == "onnxruntime"
    (streams,) = api.comparison("streams", "1", "2", workdir=tmp_path)
    # two streams' rate is every image over the wall time, not one request's: the stored images/s
    assert streams["b_images_per_s"] == pytest.approx(194, rel=0.01)
    (scenario,) = api.comparison("scenario", "closed-loop", "offline", workdir=tmp_path)
    assert scenario["ratio"] == pytest.approx(204 / 194, rel=0.01)
    with pytest.raises(LevitBenchError, match="no successful measurement has cores '8'"):
        api.comparison("cores", "1", "8", workdir=tmp_path)
