"""What `levit-bench models` and `levit-bench info` show, as data and as tables."""

from __future__ import annotations

import torch
from rich.console import Console
from rich.table import Table

from levit_bench import environment, registry
from levit_bench.console import stdout_console
from levit_bench.models.counting import count_macs, count_parameters


def measured_counts(spec: registry.ModelSpec) -> tuple[int, int]:
    """(parameters, multiply-adds at the model's resolution), from the code as it is now."""
    with torch.device("meta"):
        model = spec.build()
    return count_parameters(model), count_macs(model, spec.resolution, device="meta")


def model_rows(names: list[str] | None = None) -> list[dict]:
    """One row per model (all, or the named ones in the order given)."""
    specs = [registry.get_spec(n) for n in names] if names else list(registry.REGISTRY.values())
    rows = []
    for spec in specs:
        params, macs = measured_counts(spec)
        reported = spec.reported
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "params": params,
                "macs": macs,
                "resolution": spec.resolution,
                "top1": reported.top1,
                "top1_source": "reported" if reported.top1 is not None else None,
                "reported": {
                    "params": round(reported.params_m * 1e6),
                    "macs": round(reported.macs_m * 1e6),
                    "top1": reported.top1,
                    "images_per_s": dict(reported.images_per_s),
                    "extra_top1": dict(reported.extra_top1),
                    "source": reported.source,
                },
                "preprocessing": {
                    "resize": spec.preprocessing.resize,
                    "crop": spec.preprocessing.crop,
                    "interpolation": spec.preprocessing.interpolation,
                    "mean": list(spec.preprocessing.mean),
                    "std": list(spec.preprocessing.std),
                },
                "weights_url": spec.weights_url,
            }
        )
    return rows


def info() -> dict:
    return {"host": environment.host_info().as_dict(), "versions": environment.package_versions()}


def _millions(n: int, decimals: int) -> str:
    return f"{n / 1e6:.{decimals}f}M"


def print_models(rows: list[dict], console: Console | None = None) -> None:
    console = console or stdout_console()
    table = Table(title="Registered models: params and MACs measured (paper's figure in brackets)")
    for column in ("model", "family", "params", "MACs", "res", "top-1*", "GPU im/s*",
                   "Intel im/s*", "ARM im/s*"):
        table.add_column(column, justify="left" if column in ("model", "family") else "right",
                         no_wrap=column == "model")
    for row in rows:
        rep = row["reported"]
        speeds = rep["images_per_s"]
        table.add_row(
            row["name"], row["family"],
            f"{_millions(row['params'], 2)} ({rep['params'] / 1e6:g}M)",
            f"{_millions(row['macs'], 1)} ({rep['macs'] / 1e6:g}M)",
            str(row["resolution"]),
            "-" if row["top1"] is None else f"{row['top1']:.1f}",
            *(str(speeds.get(p, "-")) for p in ("gpu", "xeon", "arm")),
        )
    console.print(table)
    sources = sorted({row["reported"]["source"] for row in rows})
    console.print("* reported figures: " + "; ".join(sources))


def print_info(report: dict, console: Console | None = None) -> None:
    console = console or stdout_console()
    host = report["host"]
    table = Table(title=f"Host {host['fingerprint']}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    cores = f"{host['logical_cores']} logical"
    if host["physical_cores"]:
        cores += f", {host['physical_cores']} physical"
    cores += f", {host['usable_cores']} usable by this process"
    for key, value in (
        ("CPU", host["cpu_model"]),
        ("architecture", host["architecture"]),
        ("cores", cores),
        ("ISA", " ".join(host["isa"]) or "-"),
        ("memory", f"{host['memory_gib']} GiB"),
        ("OS", host["os"]),
        ("GPU", host["gpu"] or "none"),
    ):
        table.add_row(key, value)
    for name, version in report["versions"].items():
        table.add_row(name, version or "not installed")
    console.print(table)
