"""Tables the commands print: rendering only, the data comes from the packages."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from levit_bench.console import stderr_console, stdout_console


def _millions(n: int, decimals: int) -> str:
    return f"{n / 1e6:.{decimals}f}M"


def _published(count: int | None) -> str:
    return "-" if count is None else f"{count / 1e6:g}M"


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
            f"{_millions(row['params'], 2)} ({_published(rep['params'])})",
            f"{_millions(row['macs'], 1)} ({_published(rep['macs'])})",
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


def print_export(sidecar: dict, onnx_path: str, console: Console | None = None) -> None:
    console = console or stdout_console()
    parity = sidecar["parity"]
    table = Table(title=f"Exported {sidecar['model']}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    weights = sidecar["weights"]
    source = weights["source"]
    if "seed" in weights:
        source += f" (seed {weights['seed']})"
    else:
        source += f" ({weights['layout']} layout, sha256 {weights['sha256'][:12]})"
    if weights.get("dtype", "float32") != "float32":
        source += f"; stored as {weights['dtype']}, upcast to float32 for export"
    histogram = ", ".join(f"{op} {n}" for op, n in sidecar["op_histogram"].items())
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in sidecar["timings_s"].items())
    for key, value in (
        ("file", f"{onnx_path} ({sidecar['onnx_bytes'] / 2**20:.1f} MiB)"),
        ("sha256", sidecar["onnx_sha256"]),
        ("weights", source),
        ("input", f"{sidecar['input_name']} {sidecar['input_shape']}"),
        ("opset / exporter", f"{sidecar['opset']} / {sidecar['exporter']}"),
        ("simplified", "yes (onnxsim)" if sidecar["simplified"] else "no"),
        ("ops", histogram),
        ("parity", f"max |diff| {parity['max_abs_diff']:.2e} <= {parity['tolerance']:.2e}, top-1 agreement "
                   f"{parity['top1_agreement']:.0%} on {parity['inputs']} inputs ({parity['runtime']} vs "
                   f"{parity['reference']})"),
        ("fused vs unfused", f"max |diff| {sidecar['fused_vs_unfused']['max_abs_diff']:.2e} "
                             f"(relative {sidecar['fused_vs_unfused']['relative']:.1e})"),
        ("wall time", timings),
    ):
        table.add_row(key, value)
    console.print(table)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_records(records: list[dict], title: str = "Measurements", console: Console | None = None) -> None:
    """One row per stored measurement; the CPU is named as it is (an EPYC run as xeon stays EPYC)."""
    console = console or stdout_console()
    if not records:
        console.print(f"{title}: nothing to show")
        return
    table = Table(title=title)
    for column, justify in (("created (UTC)", "left"), ("model", "left"), ("runtime", "left"),
                            ("platform", "left"), ("prec.", "left"), ("batch", "right"), ("thr.", "right"),
                            ("status", "left"), ("images/s", "right"), ("median ms", "right"),
                            ("p90 ms", "right"), ("CV", "right"), ("max|diff|", "right"), ("host", "left")):
        table.add_column(column, justify=justify, no_wrap=True)
    for r in records:
        runtime = r["runtime"] + (f":{r['mode']}" if r.get("mode") else "")
        status = "ok" if r["status"] == "ok" else f"[red]{r['status']}[/red]: {r.get('error') or ''}"
        if r.get("noisy"):
            status += " [yellow](noisy)[/yellow]"
        table.add_row(
            r["created_at"][:16].replace("T", " "), r["model"], runtime, r["platform"],
            r.get("precision") or "-", _fmt(r.get("batch"), "d"), _fmt(r.get("threads"), "d"), status,
            _fmt(r.get("images_per_s"), ".1f"), _fmt(r.get("median_ms"), ".2f"), _fmt(r.get("p90_ms"), ".2f"),
            _fmt(r.get("cv"), ".1%"), _fmt(r.get("max_abs_diff"), ".1e"),
            f"{r.get('cpu_model', '?')} ({r['host']})",
        )
    console.print(table)


def print_error(message: str) -> None:
    stderr_console().print(f"[red]error:[/red] {message}", highlight=False, markup=True)


def print_note(message: str) -> None:
    stderr_console().print(message, highlight=False)
