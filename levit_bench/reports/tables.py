"""Stored records as tables: CSV (pandas), and the report's Table 3, speed-ups, claims and provenance.

The report tables are plain data (lists of dicts) that the HTML template renders.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from levit_bench.errors import LevitBenchError
from levit_bench.registry import REGISTRY
from levit_bench.reports.confidence import cell_ratio
from levit_bench.reports.dataset import PYTORCH_REFERENCE
from levit_bench.workdir import atomic_path

# Nested fields that go into the CSV as JSON text rather than exploding into columns.
_AS_JSON = ("samples_ms", "pinned_cores", "host_info", "versions", "protocol_params", "runtime_info", "weights")


def records_frame(records: list[dict]):
    import pandas as pd

    rows = [{k: (json.dumps(v, sort_keys=True) if k in _AS_JSON else v) for k, v in r.items()} for r in records]
    return pd.DataFrame(rows)


def write_csv(records: list[dict], path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            records_frame(records).to_csv(tmp, index=False)
    except OSError as e:
        raise LevitBenchError(f"cannot write {path}: {e.strerror or e}") from None


# The paper's headline claims (Section 5.3): "about the same accuracies ... but 5x and 7x faster on CPU".
CLAIMS = (("levit_192", "efficientnet_b2", 5.0), ("levit_256", "efficientnet_b3", 7.0))


def _column_key(point: dict) -> tuple:
    return (point["platform"], point["host"], point["variant"])


def table3(points: list[dict], counts: dict[str, tuple[int, int]]) -> dict:
    """Table 3 remade: a row per model, images/s per (platform, host, runtime), the paper's
    figure for each platform beside, the best runtime per model and platform flagged."""
    columns: list[dict] = []
    seen = set()
    for p in points:
        key = _column_key(p)
        if key not in seen:
            seen.add(key)
            columns.append({"platform": p["platform"], "host": p["host"], "host_label": p["host_label"],
                            "variant": p["variant"], "kind": "measured"})
    groups = list(dict.fromkeys((c["platform"], c["host"]) for c in columns))
    ordered: list[dict] = []
    for platform, host in groups:
        ordered += [c for c in columns if (c["platform"], c["host"]) == (platform, host)]
        ordered.append({"platform": platform, "host": host, "host_label": "", "variant": "paper", "kind": "paper"})
    by_cell = {(p["model"], *_column_key(p)): p for p in points}
    rows = []
    for model in dict.fromkeys(p["model"] for p in points):
        spec = REGISTRY.get(model)
        first = next(p for p in points if p["model"] == model)
        params, macs = counts.get(model, (None, None))
        cells = []
        for column in ordered:
            if column["kind"] == "paper":
                value = spec.reported.images_per_s.get(column["platform"]) if spec else None
                cells.append({"value": value, "best": False, "kind": "paper", "noisy": False})
            else:
                point = by_cell.get((model, column["platform"], column["host"], column["variant"]))
                cells.append({"value": point and point["images_per_s"], "best": False, "kind": "measured",
                              "half_width": point and point["estimate"].half_width,
                              "rounds": point and point["rounds"], "noisy": bool(point and point["noisy"]),
                              "flags": point["noisy_reason"] if point else ""})
        for platform, host in groups:
            group = [(i, c) for i, c in enumerate(ordered)
                     if (c["platform"], c["host"]) == (platform, host) and c["kind"] == "measured"
                     and cells[i]["value"] is not None]
            if group:
                best = max(group, key=lambda item: cells[item[0]]["value"])[0]
                cells[best]["best"] = True
        rows.append({"model": model, "family": first["family"], "params": params, "macs": macs,
                     "top1": first["top1"], "top1_source": first["top1_source"], "top1_detail": first["top1_detail"],
                     "cells": cells})
    return {"columns": ordered, "rows": rows}


def speedups(points: list[dict]) -> list[dict]:
    """Per model, platform and host: each runtime's images/s over the PyTorch reference's, with
    the ratio's 95% interval."""
    groups: dict[tuple, dict[str, dict]] = defaultdict(dict)
    labels = {}
    for p in points:
        groups[(p["platform"], p["host"], p["model"])][p["variant"]] = p
        labels[(p["platform"], p["host"])] = p["host_label"]
    out = []
    for (platform, host, model), by_variant in groups.items():
        reference = by_variant.get(PYTORCH_REFERENCE)
        for label, point in by_variant.items():
            found = cell_ratio(reference["cell_rounds"], point["cell_rounds"]) if reference else None
            out.append({"platform": platform, "host": labels[(platform, host)], "model": model, "variant": label,
                        "images_per_s": point["images_per_s"], "half_width": point["estimate"].half_width,
                        "speedup": found and found.value, "speedup_ci": found and found.ci,
                        "noisy": point["noisy"] or bool(reference and reference["noisy"])})
    return out


def precision_gains(points: list[dict]) -> list[dict]:
    """Each reduced-precision point (int8, bf16, ...) against the fp32 point of the same runtime,
    mode, batch, model, platform and host: its speed-up with the 95% interval, and its change in
    top-1 where both precisions were evaluated (`levit-bench eval --precision`)."""
    def key(p: dict) -> tuple:
        return p["platform"], p["host"], p["model"], p["runtime"], p["record"].get("mode"), p["batch"]

    fp32 = {key(p): p for p in points if p["precision"] == "fp32"}
    out = []
    for point in points:
        base = fp32.get(key(point))
        if point["precision"] in (None, "fp32") or base is None:
            continue
        found = cell_ratio(base["cell_rounds"], point["cell_rounds"])
        evaluated = point["top1_source"] == base["top1_source"] == "measured"
        out.append({"platform": point["platform"], "host": point["host_label"], "model": point["model"],
                    "variant": point["variant"], "precision": point["precision"],
                    "fp32_images_per_s": base["images_per_s"], "images_per_s": point["images_per_s"],
                    "speedup": found.value, "speedup_ci": found.ci,
                    "fp32_top1": base["top1"] if evaluated else None, "top1": point["top1"] if evaluated else None,
                    "top1_delta": point["top1"] - base["top1"] if evaluated else None,
                    "noisy": point["noisy"] or base["noisy"]})
    return out


def headline_claims(points: list[dict]) -> list[dict]:
    """LeViT-192 vs EfficientNet-B2 and LeViT-256 vs EfficientNet-B3, per runtime, platform and
    host, beside the paper's 5x and 7x and its own Table 3 ratio for that platform."""
    ips = {(p["platform"], p["host"], p["variant"], p["model"]): p for p in points}
    out = []
    for platform, host, label in dict.fromkeys((p["platform"], p["host"], p["variant"]) for p in points):
        for fast, slow, claimed in CLAIMS:
            a, b = ips.get((platform, host, label, fast)), ips.get((platform, host, label, slow))
            if not (a and b):
                continue
            paper_a = REGISTRY[fast].reported.images_per_s.get(platform)
            paper_b = REGISTRY[slow].reported.images_per_s.get(platform)
            found = cell_ratio(b["cell_rounds"], a["cell_rounds"])
            out.append({"platform": platform, "host": a["host_label"], "variant": label, "pair": f"{fast} : {slow}",
                        "measured": found.value, "measured_ci": found.ci, "claimed": claimed,
                        "noisy": a["noisy"] or b["noisy"],
                        "paper_table3": paper_a / paper_b if paper_a and paper_b else None})
    return out


def provenance(points: list[dict]) -> list[dict]:
    """One entry per (platform, host, fleet label): the machine, its calibrated FMA peak per core,
    versions, protocols and dates behind it."""
    sets: dict[tuple, list[dict]] = defaultdict(list)
    for p in points:
        sets[(p["platform"], p["host"], p["record"].get("host_label"))].append(p["record"])
    out = []
    for (platform, host, label), records in sets.items():
        peaks = [r["peak_fma_gflops"] / (r.get("cores") or 1) for r in records if r.get("peak_fma_gflops")]
        info = records[-1].get("host_info") or {}
        versions: dict[str, set] = defaultdict(set)
        for record in records:
            for name, version in (record.get("versions") or {}).items():
                versions[name].add(version or "not installed")
        dates = sorted(r["created_at"] for r in records)
        out.append({
            "platform": platform, "host": host, "host_label": label, "cpu_model": records[-1].get("cpu_model"),
            "fma_peak": peaks[-1] if peaks else None,
            "cores": info.get("logical_cores"), "isa": " ".join(info.get("isa") or []),
            "memory_gib": info.get("memory_gib"), "os": info.get("os"), "gpu": info.get("gpu"),
            "versions": {k: ", ".join(sorted(v)) for k, v in sorted(versions.items())},
            "protocols": ", ".join(sorted({r.get("protocol") or "?" for r in records})),
            "first": dates[0], "last": dates[-1], "rows": len(records),
            "runs": len({r.get("run_id") for r in records}),
        })
    return out
