"""What the commands show: tables, notes, errors and the progress of long work (rendering
only; the data comes from the packages)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from levit_bench.console import stderr_console, stdout_console
from levit_bench.fitting import Column, fit, print_fitted
from levit_bench.records import cell_id
from levit_bench.runtimes import short_label, short_names_legend


def _millions(n: int, decimals: int) -> str:
    return f"{n / 1e6:.{decimals}f}M"


def _published(count: int | None) -> str:
    return "-" if count is None else f"{count / 1e6:g}M"


def print_models(rows: list[dict], console: Console | None = None, wide: bool = False) -> None:
    console = console or stdout_console()

    def speed(platform: str) -> Callable[[dict], str]:
        return lambda r: str(r["reported"]["images_per_s"].get(platform, "-"))

    columns = [
        Column("model", lambda r: r["name"], keep=True),
        Column("family", lambda r: r["family"], drop=4),
        Column("params", lambda r: f"{_millions(r['params'], 2)} ({_published(r['reported']['params'])})", "right",
               keep=True),
        Column("MACs", lambda r: f"{_millions(r['macs'], 1)} ({_published(r['reported']['macs'])})", "right",
               keep=True),
        Column("res", lambda r: str(r["resolution"]), "right", drop=5),
        Column("top-1*", lambda r: "-" if r["top1"] is None else f"{r['top1']:.1f}", "right", keep=True),
        Column("GPU im/s*", speed("gpu"), "right", drop=3),
        Column("Intel im/s*", speed("xeon"), "right", drop=1),
        Column("ARM im/s*", speed("arm"), "right", drop=2),
    ]
    print_fitted(console, fit("Registered models: params and MACs measured (paper's figure in brackets)",
                              columns, rows, console, wide=wide))
    sources = sorted({row["reported"]["source"] for row in rows})
    console.print("* reported figures: " + "; ".join(sources))


def print_platforms(rows: list[dict], console: Console | None = None, wide: bool = False) -> None:
    """What `levit-bench platforms` lists: each platform's settings, and where it was defined."""
    console = console or stdout_console()

    def shown(key: str, default: str = "-") -> Callable[[dict], str]:
        return lambda r: default if r[key] is None else str(r[key])

    columns = [
        Column("platform", lambda r: r["name"], keep=True),
        Column("base", lambda r: r["base"], drop=5),
        Column("cores", shown("threads", "every"), "right", keep=True),
        Column("streams", shown("streams"), "right", keep=True),
        Column("batch", shown("default_batch", "largest"), "right", keep=True),
        Column("precision", shown("default_precision"), keep=True),
        Column("defined in", lambda r: r["source"], drop=3),
        Column("description", lambda r: r["description"], drop=1),
    ]
    print_fitted(console, fit("Platforms (--platform NAME)",
                              columns, rows, console, wide=wide))


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


def _short_runtime(row: dict) -> str:
    return short_label(row["runtime"], row.get("mode"))


def _legend(rows) -> str | None:
    return short_names_legend(dict.fromkeys(r["runtime"] for r in rows))


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _host(row: dict) -> str:
    """The CPU and fingerprint of the host a row was measured on, after its fleet label if any."""
    label = f"{row['host_label']}: " if row.get("host_label") else ""
    return f"{label}{row.get('cpu_model') or '?'} ({row['host']})"


def status_text(r: dict) -> str:
    """ok; emulated (outputs checked, no speed kept); or the status in red with its reason."""
    if r["status"] in ("ok", "emulated"):
        return r["status"]
    return f"[red]{r['status']}[/red]" + (f": {r['error']}" if r.get("error") else "")


def _print_table(title: str, columns: list[Column], rows: list[dict], console: Console | None, wide: bool) -> None:
    console = console or stdout_console()
    print_fitted(console, fit(title, columns, rows, console, wide=wide, legend=_legend))


_MODEL = Column("model", lambda r: r["model"], keep=True)
_RUNTIME = Column("runtime", _runtime, keep=True, compact=_short_runtime)
_HOST = Column("host", _host, shared=True, drop=99, compact=lambda r: r["host"])
_CORES = Column("cores", lambda r: _fmt(r.get("cores"), "d"), "right", drop=9, shared=True)
_STREAMS = Column("streams", lambda r: _fmt(r.get("streams"), "d"), "right", drop=9, shared=True)
_SCENARIO = Column("scenario", lambda r: r.get("scenario") or "closed loop", drop=9, shared=True)


def print_records(records: list[dict], title: str = "Measurements", console: Console | None = None,
                  unstable: frozenset[str] = frozenset(), wide: bool = False) -> None:
    """One row per stored measurement; the CPU is named as it is (an EPYC run as xeon stays EPYC).
    A record of a cell in `unstable` (cell ids whose rounds fail a stability check) says so."""
    if not records:
        (console or stdout_console()).print(f"{title}: nothing to show")
        return

    def status(r: dict) -> str:
        text = status_text(r)
        if r.get("valid") is False:
            text += f" [yellow]INVALID[/yellow] ({'; '.join(r.get('failed_constraints') or ())})"
        if r.get("noisy"):
            text += " [yellow](noisy)[/yellow]"
        elif r["status"] == "ok" and cell_id(r) in unstable:
            text += " [yellow](unstable cell)[/yellow]"
        return text

    columns = [
        Column("created (UTC)", lambda r: r["created_at"][:16].replace("T", " "), drop=6),
        _MODEL, _RUNTIME,
        Column("platform", lambda r: r["platform"], drop=5, shared=True),
        Column("prec.", lambda r: r.get("precision") or "-", drop=3),
        Column("batch", lambda r: _fmt(r.get("batch"), "d"), "right", drop=2),
        _CORES, _STREAMS, _SCENARIO,
        Column("images/s", lambda r: _fmt(r.get("images_per_s"), ".1f"), "right", keep=True),
        Column("median ms", lambda r: _fmt(r.get("median_ms"), ".2f"), "right", drop=4),
        Column("p90 ms", lambda r: _fmt(r.get("p90_ms"), ".2f"), "right", drop=8),
        Column("CV", lambda r: _fmt(r.get("cv"), ".1%"), "right", drop=7),
        Column("peak MiB", lambda r: _fmt(r.get("peak_rss_mb"), ".0f"), "right", drop=10),
        Column("max|diff|", lambda r: _fmt(r.get("max_abs_diff"), ".1e"), "right", drop=11),
        Column("status", status, keep=True, fold=True),
        _HOST,
    ]
    _print_table(title, columns, records, console, wide)


def _interval(low: float, high: float, value: float, spec: str = ".1f") -> str:
    return f"{format(low, spec)}-{format(high, spec)} (±{(high - low) / 2 / value:.1%})" if value else "-"


def print_aggregate(rows: list[dict], title: str, console: Console | None = None, wide: bool = False) -> None:
    """One row per cell: rounds, median images/s over them and its 95% interval; unstable cells say why."""
    if not rows:
        (console or stdout_console()).print(f"{title}: nothing to show")
        return
    columns = [
        _MODEL, _RUNTIME,
        Column("platform", lambda r: r["platform"], drop=4, shared=True),
        Column("prec.", lambda r: r.get("precision") or "-", drop=3),
        Column("batch", lambda r: _fmt(r.get("batch"), "d"), "right", drop=2),
        _CORES, _STREAMS, _SCENARIO,
        Column("rounds", lambda r: str(r["rounds"]), "right", drop=1),
        Column("images/s", lambda r: f"{r['images_per_s']:.1f}", "right", keep=True),
        Column("95% interval", lambda r: _interval(*r["images_per_s_ci"], r["images_per_s"]), "right", keep=True),
        Column("stability", lambda r: "[yellow]unstable[/yellow]: " + "; ".join(r["flags"]) if r["flags"] else "ok",
               keep=True, fold=True),
        _HOST,
    ]
    _print_table(title, columns, rows, console, wide)


def print_comparison(rows: list[dict], by: str, console: Console | None = None, wide: bool = False) -> None:
    if not rows:
        (console or stdout_console()).print("nothing to compare")
        return
    a, b = rows[0]["a"], rows[0]["b"]
    colour = {"faster": "green", "slower": "red", "same": "default"}

    def verdict(r: dict) -> str:
        text = f"[{colour[r['verdict']]}]{r['verdict']}[/{colour[r['verdict']]}]"
        return text + " [yellow](unstable)[/yellow]" if r["noisy"] else text

    columns = [
        _MODEL,
        *([Column("runtime", lambda r: r["runtime"], keep=True, shared=True)] if by != "runtime" else []),
        Column("platform", lambda r: r["platform"], drop=5, shared=True),
        Column("batch", lambda r: _fmt(r.get("batch"), "d"), "right", drop=3),
        Column("rounds A/B", lambda r: "/".join(map(str, r["rounds"])), "right", drop=4),
        Column("A im/s", lambda r: f"{r['a_images_per_s']:.1f}", "right", drop=2),
        Column("B im/s", lambda r: f"{r['b_images_per_s']:.1f}", "right", drop=1),
        Column("B / A", lambda r: f"{r['ratio']:.3f}", "right", keep=True),
        Column("95% interval", lambda r: f"{r['ratio_ci'][0]:.3f}-{r['ratio_ci'][1]:.3f}", "right", keep=True),
        *([Column("efficiency", lambda r: f"{r['efficiency']:.0%}", "right", drop=6)] if by == "cores" else []),
        Column("verdict", verdict, keep=True),
    ]
    console = console or stdout_console()
    title = f"B = {b} against A = {a} (by {by}): images/s B / A with its 95% interval"
    print_fitted(console, fit(title, columns, rows, console, wide=wide))
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


def print_capacities(records: list[dict], console: Console | None = None, wide: bool = False) -> None:
    """One row per capacity search: the highest VALID server rate under its bound, the bracket's
    INVALID end, the offline rate it started from and the probes it took."""
    if not records:
        (console or stdout_console()).print("Server capacity: no capacity search stored")
        return

    def capacity(r: dict) -> str:
        if r["status"] != "ok":
            return "-"
        return "none" if r.get("capacity_qps") is None else format(r["capacity_qps"], ".4g")

    columns = [
        Column("created (UTC)", lambda r: r["created_at"][:16].replace("T", " "), drop=6),
        _MODEL, _RUNTIME,
        Column("platform", lambda r: r["platform"], drop=5, shared=True),
        Column("batch", lambda r: _fmt(r.get("batch"), "d"), "right", drop=2),
        _CORES, _STREAMS,
        Column("p99 bound ms", lambda r: _fmt(r["latency_bound_ms"], "g"), "right", keep=True),
        Column("capacity QPS", capacity, "right", keep=True),
        Column("INVALID at", lambda r: _fmt(r.get("lowest_invalid_qps"), ".4g"), "right", drop=4),
        Column("offline images/s", lambda r: _fmt(r.get("offline_qps"), ".1f"), "right", drop=3),
        Column("probes", lambda r: str(len(r.get("probes") or ())), "right", drop=7),
        Column("status", status_text, keep=True, fold=True),
        _HOST,
    ]
    _print_table("Server capacity (LoadGen, p99 within the bound)", columns, records, console, wide)


def print_hosts(rows: list[dict], title: str, console: Console | None = None, wide: bool = False) -> None:
    """One row per measuring host of a cluster: label, CPU, cores per platform (free / total), alive."""
    if not rows:
        (console or stdout_console()).print(f"{title}: no host joined with `levit-bench worker start`")
        return

    def cores(r: dict) -> str:
        return ", ".join(f"{p} {c['free']:g}/{c['total']:g}" for p, c in sorted(r["cores"].items()))

    columns = [
        Column("label", lambda r: r["label"], keep=True),
        Column("CPU", lambda r: r.get("cpu_model") or "-", keep=True),
        Column("cores free/total", cores, keep=True),
        Column("alive", lambda r: "yes" if r["alive"] else "[red]no[/red]", keep=True),
        Column("address", lambda r: r["address"], drop=3),
        Column("host", lambda r: r.get("host") or "-", drop=2),
        Column("work directory", lambda r: r.get("workdir") or "-", drop=4, fold=True),
    ]
    _print_table(title, columns, rows, console, wide)


def print_probes(record: dict, console: Console | None = None) -> None:
    """A capacity search's probes, in the order run: rate, verdict, p99."""
    console = console or stdout_console()
    table = Table(title=f"{record['model']} on {_runtime(record)}: server runs, p99 bound {record['latency_bound_ms']:g} ms")
    for column in ("QPS", "verdict", "p99 ms", "run uid"):
        table.add_column(column, justify="left" if column in ("verdict", "run uid") else "right")
    for probe in record.get("probes") or ():
        table.add_row(f"{probe['target_qps']:.4g}", "VALID" if probe["valid"] else "[yellow]INVALID[/yellow]",
                      _fmt(probe.get("p99_ms"), ".2f"), probe.get("uid") or "-")
    console.print(table)


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
        self._disabled = disable
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
        """A line printed above the display, kept after it goes (nothing while disabled)."""
        if not self._disabled:
            self._progress.console.print(message, highlight=False)
