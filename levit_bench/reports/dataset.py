"""From stored rows to report points: the latest successful measurement per cell, with its
accuracy (`measured` by `levit-bench eval` on the same weights, else `reported`).

A cell is (host, platform, model, variant). The host is part of it, so results from two
machines are never merged into one point or one line.
"""

from __future__ import annotations

import statistics

from dataclasses import dataclass

from levit_bench.models.checkpoints import weights_id
from levit_bench.platforms import BUILT_IN
from levit_bench.records import cell_id, stability_flags
from levit_bench.registry import REGISTRY
from levit_bench.reports.confidence import estimate
from levit_bench.runtimes import RUNTIMES, variant_name

PYTORCH_REFERENCE = "torch"  # the traced fused model, as the paper's speed_test


def variant(record: dict) -> str:
    """The runtime as measured: `openvino`, `openvino bf16`, `torch:unfused`, `tvm:tuned`, with what
    differs from the platform's own settings: `onnxruntime b1 c2 s2` (batch 1, 2 cores, 2 streams)."""
    label = variant_name(record["runtime"], record.get("mode"))
    platform = record.get("platform_info") or BUILT_IN.get(record["platform"])
    if platform is None:
        return label
    platform = platform if isinstance(platform, dict) else platform.as_dict()
    precision = record.get("precision")
    if precision not in (None, platform["default_precision"]):
        label += f" {precision}"
    if platform["default_batch"] and record.get("batch") not in (None, platform["default_batch"]):
        label += f" b{record['batch']}"
    if isinstance(platform["threads"], int) and record.get("cores") not in (None, platform["threads"]):
        label += f" c{record['cores']}"
    if record.get("streams") not in (None, platform.get("streams", 1)):
        label += f" s{record['streams']}"
    return label


def variant_order(label: str) -> tuple:
    """The PyTorch reference first, then the runtimes in the table's order, variants after each."""
    runtime = label.split()[0].split(":")[0]
    order = list(RUNTIMES)
    rank = order.index(runtime) if runtime in order else len(order)
    return rank, label != runtime, label


def host_label(record: dict) -> str:
    """The CPU and fingerprint of the host, after its fleet label if it has one."""
    label = f"{record['host_label']}: " if record.get("host_label") else ""
    return f"{label}{record.get('cpu_model') or 'unknown CPU'} ({record['host'][:6]})"


@dataclass(frozen=True)
class Accuracy:
    top1: float | None
    source: str | None  # "measured", "reported" or None (unknown)
    detail: str


def accuracy_for(model: str, weights: str | None, runtime: str, precision: str | None,
                 evaluations: list[dict]) -> Accuracy:
    """Measured top-1 of these weights if the store has one (the same runtime and precision
    preferred), else the registry's reported figure. An int8 model is another network than its
    fp32 source: only an int8 evaluation in its runtime measures it; without one, the fp32
    accuracy stands in, as `measured-fp32`."""
    same_weights = [e for e in evaluations if e["model"] == model and weights and e["weights_id"] == weights]
    matching = [e for e in same_weights if e.get("runtime") == runtime and e.get("precision") == precision]
    if precision == "int8" and not matching:
        same_weights = [e for e in same_weights if e.get("precision") in (None, "fp32")]
    if same_weights:
        chosen = (matching or same_weights)[-1]
        detail = (f"levit-bench eval on {chosen.get('dataset')} ({chosen.get('runtime')} "
                  f"{chosen.get('precision') or 'fp32'}, {chosen.get('images')} images)")
        if precision == "int8" and not matching:
            return Accuracy(chosen["top1"], "measured-fp32", detail + "; the int8 model is not evaluated")
        return Accuracy(chosen["top1"], "measured", detail)
    spec = REGISTRY.get(model)
    if spec is not None and spec.reported.top1 is not None:
        return Accuracy(spec.reported.top1, "reported", spec.reported.source)
    return Accuracy(None, None, "no accuracy known")


def report_points(records: list[dict], evaluations: list[dict], platforms: list[str] | None = None,
                  runtimes: list[str] | None = None) -> list[dict]:
    """One point per (host, platform, model, variant): the cell of its latest successful
    measurement, its speed the median over that cell's rounds with a 95% interval."""
    latest: dict[tuple, dict] = {}
    rounds: dict[str, list[dict]] = {}
    for record in records:  # oldest first, so later rows win
        if record.get("status") != "ok":
            continue
        if platforms and record["platform"] not in platforms:
            continue
        if runtimes and record["runtime"] not in runtimes:
            continue
        latest[(record["host"], record.get("host_label"), record["platform"], record["model"], variant(record))] = record
        rounds.setdefault(cell_id(record), []).append(record)
    points = []
    for (host, _, platform, model, label), record in latest.items():
        spec = REGISTRY.get(model)
        wid = weights_id(record.get("weights"))
        accuracy = accuracy_for(model, wid, record["runtime"], record.get("precision"), evaluations)
        cell_rounds = rounds[cell_id(record)]
        speed = estimate(cell_rounds)
        flags = stability_flags(cell_rounds)
        points.append({
            "model": model,
            "family": spec.family if spec else record.get("family", "unknown"),
            "variant": label,
            "runtime": record["runtime"],
            "platform": platform,
            "host": host,
            "host_label": host_label(record),
            "images_per_s": speed.value,
            "images_per_s_ci": speed.ci,
            "estimate": speed,
            "rounds": len(cell_rounds),
            "cell_rounds": cell_rounds,
            "median_ms": record["median_ms"],
            "cv": record["cv"],
            "peak_rss_mb": _median(r.get("peak_rss_mb") for r in cell_rounds),
            "load_rss_mb": _median(r.get("load_rss_mb") for r in cell_rounds),
            "max_abs_diff": record.get("max_abs_diff"),
            "batch": record.get("batch"),
            "precision": record.get("precision"),
            "protocol": record.get("protocol"),
            "noisy": bool(flags),
            "noisy_reason": "; ".join(flags),
            "created_at": record["created_at"],
            "weights_id": wid,
            "top1": accuracy.top1,
            "top1_source": accuracy.source,
            "top1_detail": accuracy.detail,
            "record": record,
        })
    order = {name: i for i, name in enumerate(REGISTRY)}
    points.sort(key=lambda p: (p["platform"], p["host"], order.get(p["model"], len(order)), p["model"],
                               variant_order(p["variant"])))
    return points


def _median(values) -> float | None:
    """The median of the known values (rows stored before a field existed have none)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None
