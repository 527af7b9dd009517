"""report: the results store -> DIR/index.html, DIR/tradeoff-<platform>[-<runtime>].png, DIR/results.csv."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from levit_bench import __version__
from levit_bench.errors import LevitBenchError
from levit_bench.registry import REGISTRY
from levit_bench.reports import breakdown, dataset, deployment, figures, html, tables
from levit_bench.reports.dataset import report_points
from levit_bench.store import ResultsStore
from levit_bench.workdir import ensure_writable_dir, write_atomic


@dataclass(frozen=True)
class ReportResult:
    index: Path
    figures: list[Path]
    csv: Path
    points: int


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.") or "unnamed"


def _title(points: list[dict], platform: str) -> str:
    hosts = ", ".join(dict.fromkeys(p["host_label"] for p in points))
    batches = ", ".join(str(b) for b in sorted({p["batch"] for p in points if p["batch"]}))
    dates = sorted(p["created_at"][:10] for p in points)
    return f"{platform} on {hosts} — batch {batches}; measured {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "")


def _figure_sets(points: list[dict]) -> list[tuple[str, str | None, list[dict]]]:
    """(platform, host, its points) for each Figure 1: one per platform, or one per host of a
    platform measured on several (a fleet), so that no line joins two machines' points."""
    sets = []
    for platform in dict.fromkeys(p["platform"] for p in points):
        on_platform = [p for p in points if p["platform"] == platform]
        hosts = list(dict.fromkeys(p["host_label"] for p in on_platform))
        if len(hosts) == 1:
            sets.append((platform, None, on_platform))
        else:
            sets += [(platform, host, [p for p in on_platform if p["host_label"] == host]) for host in hosts]
    return sets


def _breakdown(store: ResultsStore, points: list[dict], out_dir: Path, platforms: list[str] | None,
               runtimes: list[str] | None) -> tuple[list[dict], list[dict]]:
    """(a stacked-bar figure per profiled model, a roofline figure per platform), embedded."""
    profiles = breakdown.latest_profiles([p for p in store.profile_records()
                                          if (not platforms or p["platform"] in platforms)
                                          and (not runtimes or p["runtime"] in runtimes)])
    profiled = []
    for model in dict.fromkeys(p["model"] for p in profiles):
        of_model = [p for p in profiles if p["model"] == model]
        path = out_dir / f"components-{_slug(model)}.png"
        breakdown.component_figure(of_model, model, path)
        overheads = ", ".join(f"{dataset.variant(p)} {p['overhead']:+.0%}" for p in of_model)
        profiled.append({**html.embed(path, f"{model}: time per component (profiler overhead: {overheads})"),
                         "path": str(path)})
    rooflines = []
    for platform in dict.fromkeys(p["platform"] for p in points):
        placed = breakdown.roofline_points([p for p in points if p["platform"] == platform])
        if placed:
            path = out_dir / f"roofline-{_slug(platform)}.png"
            breakdown.roofline_figure(placed, platform, path)
            rooflines.append({**html.embed(path, f"{platform}: roofline"), "path": str(path)})
    return profiled, rooflines


def build_report(store: ResultsStore, out_dir: Path, platforms: list[str] | None = None,
                 runtimes: list[str] | None = None,
                 on_step: Callable[[str], None] = lambda step: None) -> ReportResult:
    records = store.records()
    if not records:
        raise LevitBenchError(f"{store.location} holds no measurements; run `levit-bench run` or `levit-bench sweep` first")
    selected = [r for r in records if (not platforms or r["platform"] in platforms)
                and (not runtimes or r["runtime"] in runtimes)]
    # an emulator's rows are parity checks: their timings are not speeds of anything
    in_scope = [r for r in selected if r["status"] != "emulated"]
    # Figure 1 and Table 3 are the paper's closed loop; LoadGen's runs have the deployment view
    points = report_points([r for r in in_scope if not r.get("scenario")], store.accuracy_records())
    measured_scenarios = any(r.get("scenario") and r["status"] == "ok" for r in in_scope)
    if not points and not measured_scenarios:
        raise LevitBenchError("no successful measurement matches the chosen platforms and runtimes")
    out_dir = ensure_writable_dir(Path(out_dir))

    on_step("figures")
    written, figure_blocks = [], []
    for platform, host, on_host in _figure_sets(points):
        name = _slug(platform) + (f"-{_slug(host)}" if host else "")
        where = f"{platform} on {host}" if host else platform
        path = out_dir / f"tradeoff-{name}.png"
        figures.tradeoff_figure(on_host, platform, _title(on_host, platform), path)
        written.append(path)
        block = html.embed(path, f"{where}: every runtime")
        block["per_runtime"] = []
        for variant in dict.fromkeys(p["variant"] for p in on_host):
            subset = [p for p in on_host if p["variant"] == variant]
            path = out_dir / f"tradeoff-{name}-{_slug(variant)}.png"
            figures.tradeoff_figure(subset, platform, f"{variant} — " + _title(subset, platform), path)
            written.append(path)
            block["per_runtime"].append(html.embed(path, f"{where}: {variant}"))
        figure_blocks.append(block)

    on_step("profiles")
    profiled, rooflines = _breakdown(store, points, out_dir, platforms, runtimes)
    written += [Path(block["path"]) for block in profiled + rooflines]

    on_step("deployment")
    latency_figures = []
    if deployment.has_deployments(in_scope):
        for model in dict.fromkeys(r["model"] for r in in_scope):
            curves = deployment.latency_points(in_scope, model)
            if any(len(points) > 1 for points in curves.values()):
                path = out_dir / f"latency-{_slug(model)}.png"
                deployment.latency_figure(curves, model, path)
                written.append(path)
                latency_figures.append(html.embed(path, f"{model}: latency against throughput"))
    capacities = [c for c in store.capacity_records() if (not platforms or c["platform"] in platforms)
                  and (not runtimes or c["runtime"] in runtimes)]

    on_step("tables")
    models = dict.fromkeys(p["model"] for p in points)
    counts = {m: REGISTRY[m].measured_counts() for m in models if m in REGISTRY}
    counts.update({p["model"]: (p["record"]["params"], p["record"]["macs"]) for p in points
                   if p["model"] not in counts and "macs" in p["record"]})  # a user's ONNX model, counted at run time
    csv_path = out_dir / "results.csv"
    tables.write_csv(in_scope, csv_path)
    filters = "; ".join(f"{name}: {', '.join(values)}" for name, values in (("platforms", platforms), ("runtimes", runtimes)) if values)
    page = html.render({
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "store": str(store.location),
        "filters": filters,
        "n_points": len(points),
        "provenance": tables.provenance(points),
        "figures": figure_blocks,
        "profiled": profiled,
        "rooflines": rooflines,
        "table3": tables.table3(points, counts),
        "speedups": tables.speedups(points),
        "precision_gains": tables.precision_gains(points),
        "claims": tables.headline_claims(points),
        "scenarios": deployment.scenario_rows(in_scope, capacities),
        "scaling": deployment.scaling_rows(in_scope),
        "latency_figures": latency_figures,
        "points": points,
        "failed": sum(r["status"] == "failed" for r in in_scope),
        "noisy": sum(p["noisy"] for p in points),
        "emulated": len(selected) - len(in_scope),
    })
    index = out_dir / "index.html"
    write_atomic(index, page.encode())
    return ReportResult(index, written, csv_path, len(points))
