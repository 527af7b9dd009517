"""What the commands show: tables, notes, errors and the progress of long work (rendering
only; the data comes from the packages)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from levit_bench.console import stderr_console, stdout_console
from levit_bench.records import cell_id


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
    if report.get("peak"):
        for key, value in _peak_rows(report["peak"]):
            table.add_row(key, value)
    console.print(table)


def _peak_rows(peak: dict) -> list[tuple[str, str]]:
    fma = peak["fma"]
    rows = [("FMA peak (1 core)", f"{fma['gflops']:.0f} GFLOP/s ({fma['vector_bits']}-bit vectors, {fma['compiler']})"
             if fma.get("gflops") else f"not measured: {fma.get('reason')}")]
    rows += [(f"GEMM {library}", f"{rate:.0f} {'GOP/s' if library.endswith('int8') else 'GFLOP/s'}")
             for library, rate in peak["gemm_gflops"].items()]
    rows.append(("memory bandwidth", f"{peak['memory_gbps']:.1f} GB/s (one core, copy)"))
    return rows


def print_peak(peak: dict, console: Console | None = None) -> None:
    console = console or stdout_console()
    table = Table(title=f"Calibration of {peak['cpu_model']} ({peak['host']}), {peak['created_at']}",
                  show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in _peak_rows(peak):
        table.add_row(key, value)
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


def _runtime(row: dict) -> str:
    """The runtime and the mode it ran in, as stored: `torch:traced`, `onnxruntime`."""
    return row["runtime"] + (f":{row['mode']}" if row.get("mode") else "")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_records(records: list[dict], title: str = "Measurements", console: Console | None = None,
                  unstable: frozenset[str] = frozenset()) -> None:
    """One row per stored measurement; the CPU is named as it is (an EPYC run as xeon stays EPYC).
    A record of a cell in `unstable` (cell ids whose rounds fail a stability check) says so."""
    console = console or stdout_console()
    if not records:
        console.print(f"{title}: nothing to show")
        return
    table = Table(title=title)
    for column, justify in (("created (UTC)", "left"), ("model", "left"), ("runtime", "left"),
                            ("platform", "left"), ("prec.", "left"), ("batch", "right"), ("thr.", "right"),
                            ("status", "left"), ("images/s", "right"), ("median ms", "right"),
                            ("p90 ms", "right"), ("CV", "right"), ("peak MiB", "right"), ("max|diff|", "right"),
                            ("host", "left")):
        table.add_column(column, justify=justify, no_wrap=True)
    for r in records:
        status = "ok" if r["status"] == "ok" else f"[red]{r['status']}[/red]: {r.get('error') or ''}"
        if r.get("noisy"):
            status += " [yellow](noisy)[/yellow]"
        elif r["status"] == "ok" and cell_id(r) in unstable:
            status += " [yellow](unstable cell)[/yellow]"
        table.add_row(
            r["created_at"][:16].replace("T", " "), r["model"], _runtime(r), r["platform"],
            r.get("precision") or "-", _fmt(r.get("batch"), "d"), _fmt(r.get("threads"), "d"), status,
            _fmt(r.get("images_per_s"), ".1f"), _fmt(r.get("median_ms"), ".2f"), _fmt(r.get("p90_ms"), ".2f"),
            _fmt(r.get("cv"), ".1%"), _fmt(r.get("peak_rss_mb"), ".0f"), _fmt(r.get("max_abs_diff"), ".1e"),
            f"{r.get('cpu_model', '?')} ({r['host']})",
        )
    console.print(table)


def _interval(low: float, high: float, value: float, spec: str = ".1f") -> str:
    return f"{format(low, spec)}-{format(high, spec)} (±{(high - low) / 2 / value:.1%})" if value else "-"


def print_aggregate(rows: list[dict], title: str, console: Console | None = None) -> None:
    """One row per cell: rounds, median images/s over them and its 95% interval; unstable cells say why."""
    console = console or stdout_console()
    if not rows:
        console.print(f"{title}: nothing to show")
        return
    table = Table(title=title)
    for column, justify in (("model", "left"), ("runtime", "left"), ("platform", "left"), ("prec.", "left"),
                            ("batch", "right"), ("rounds", "right"), ("images/s", "right"),
                            ("95% interval", "right"), ("stability", "left"), ("host", "left")):
        table.add_column(column, justify=justify, no_wrap=column != "stability")
    for r in rows:
        stability = "[yellow]unstable[/yellow]: " + "; ".join(r["flags"]) if r["flags"] else "ok"
        table.add_row(r["model"], _runtime(r), r["platform"], r.get("precision") or "-", _fmt(r.get("batch"), "d"),
                      str(r["rounds"]), f"{r['images_per_s']:.1f}", _interval(*r["images_per_s_ci"], r["images_per_s"]),
                      stability, f"{r.get('cpu_model') or '?'} ({r['host']})")
    console.print(table)


def print_comparison(rows: list[dict], by: str, console: Console | None = None) -> None:
    console = console or stdout_console()
    a, b = rows[0]["a"], rows[0]["b"]
    table = Table(title=f"{b} against {a} (by {by}): images/s ratio B / A with its 95% interval")
    for column, justify in (("model", "left"), ("platform", "left"), ("batch", "right"), ("rounds A/B", "right"),
                            (f"A: {a}", "right"), (f"B: {b}", "right"), ("B / A", "right"),
                            ("95% interval", "right"), ("verdict", "left")):
        table.add_column(column, justify=justify, no_wrap=True)
    colour = {"faster": "green", "slower": "red", "same": "default"}
    for r in rows:
        verdict = f"[{colour[r['verdict']]}]{r['verdict']}[/{colour[r['verdict']]}]"
        if r["noisy"]:
            verdict += " [yellow](unstable)[/yellow]"
        table.add_row(r["model"], r["platform"], _fmt(r.get("batch"), "d"), "/".join(map(str, r["rounds"])),
                      f"{r['a_images_per_s']:.1f}", f"{r['b_images_per_s']:.1f}", f"{r['ratio']:.3f}",
                      f"{r['ratio_ci'][0]:.3f}-{r['ratio_ci'][1]:.3f}", verdict)
    console.print(table)
    for r in rows:
        for flag in r["flags"]:
            print_note(f"{r['model']}: {flag}")


def print_profile(result: dict, console: Console | None = None) -> None:
    """A cell's time per component: ms per call, share, GFLOP/s; then the profiler's totals."""
    console = console or stdout_console()
    table = Table(title=f"{result['model']} on {_runtime(result)} ({result['platform']}, batch {result['batch']}, "
                        f"{result['precision']}): time per component, {result['calls']} profiled calls")
    for column in ("component", "ms / call", "share", "GFLOP/s", "kernels"):
        table.add_column(column, justify="left" if column == "component" else "right")
    for row in result["components"]:
        if row["kernels"]:
            table.add_row(row["name"], f"{row['ms']:.3f}", f"{row['share']:.1%}", _fmt(row.get("gflops"), ".1f"),
                          str(row["kernels"]))
    console.print(table)
    console.print(f"kernels sum {result['kernels_ms']:.3f} ms; profiled total {result['total_ms']:.3f} ms per call; "
                  f"unprofiled median {result['median_ms']:.3f} ms (profiler overhead {result['overhead']:+.1%})",
                  highlight=False)
    outside = result["outside_kernels_ms"]
    if result["total_ms"]:
        console.print(f"outside kernels {outside:.3f} ms per call ({outside / result['total_ms']:.1%} of the profiled "
                      "total): the runtime's own work between kernels, its profiler's included", highlight=False)


def print_error(message: str) -> None:
    stderr_console().print(f"[red]error:[/red] {message}", highlight=False, markup=True)


def print_note(message: str) -> None:
    stderr_console().print(message, highlight=False)


class ProgressView:
    """The one progress display of every long command, on stderr.

    It starts as a spinner that names the current step (`step`); once the amount of work is
    known (`start(total)`, or `total` given at once) it is a bar with a count, a free-text
    `info` (a loss, the best time so far) and the elapsed time. Use it as a context manager:
    the display goes when the work ends, however it ends; `disable` hides it (other ranks).
    """

    def __init__(self, description: str, total: int | None = None, disable: bool = False):
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=stderr_console(), disable=disable,
            transient=True,  # gone when the work ends: an error is then its one line, a result its table
        )
        self._task = self._progress.add_task(description, total=None, count="", info="")
        if total is not None:
            self.start(total)

    def __enter__(self) -> "ProgressView":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def step(self, description: str) -> None:
        self._progress.update(self._task, description=description)

    @property
    def total(self) -> float | None:
        """The bar's total (None: still a spinner)."""
        return self._progress.tasks[self._task].total

    def start(self, total: int, description: str | None = None) -> None:
        """From now on a bar over `total` units of work, from 0."""
        fields = {"description": description} if description else {}
        self._progress.reset(self._task, total=total, count=f"0/{total}", info="", **fields)

    def update(self, completed: int | None = None, info: str | None = None, advance: int = 0) -> None:
        task = self._progress.tasks[self._task]
        done = (task.completed if completed is None else completed) + advance
        fields = {"count": f"{int(done)}/{int(task.total)}"} if task.total is not None else {}
        if info is not None:
            fields["info"] = info
        self._progress.update(self._task, completed=done, **fields)

    def advance(self, units: int = 1) -> None:
        self.update(advance=units)

    def extend(self, units: int) -> None:
        """`units` more work than the bar's total said (e.g. another round for some cells)."""
        task = self._progress.tasks[self._task]
        self._progress.update(self._task, total=(task.total or 0) + units)
        self.update()

    def log(self, message: str) -> None:
        """A line printed above the display, kept after it goes."""
        self._progress.console.print(message, highlight=False)
