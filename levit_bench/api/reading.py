"""Reading the store: records, capacity searches, cells with their intervals, comparisons, the
report, and merging another store in."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from levit_bench.api.common import PathLike, listed, paths, progress_view, reading_store, use_onnx
from levit_bench.workdir import resolve_workdir

if TYPE_CHECKING:
    import pandas as pd


def records(*, workdir: PathLike | None = None, store: PathLike | None = None, **filters) -> list[dict]:
    """The stored measurements, oldest first, as dicts, where every filter (model, runtime,
    platform, status, host, run_id, precision) equals its value."""
    from levit_bench.registry import normalise_name

    if filters.get("model"):
        filters["model"] = normalise_name(filters["model"])
    return reading_store(workdir, store).records(**filters)


def capacities(*, workdir: PathLike | None = None, store: PathLike | None = None, **filters) -> list[dict]:
    """The stored capacity searches, oldest first, where every filter (model, runtime, platform,
    status, host, run_id) equals its value; each names its probes' runs by uid."""
    from levit_bench.registry import normalise_name

    if filters.get("model"):
        filters["model"] = normalise_name(filters["model"])
    wanted = {k: v for k, v in filters.items() if v is not None}
    searches = reading_store(workdir, store).capacity_records()
    return [r for r in searches if all(r.get(k) == v for k, v in wanted.items())]


def results(*, workdir: PathLike | None = None, store: PathLike | None = None, **filters) -> pd.DataFrame:
    """`records(...)` as a pandas DataFrame: one row per stored measurement, a column per field."""
    import pandas as pd

    return pd.DataFrame(records(workdir=workdir, store=store, **filters))


def cells(*, workdir: PathLike | None = None, store: PathLike | None = None, **filters) -> list[dict]:
    """One dict per cell (`results --aggregate`): the median images/s over its rounds, its 95%
    interval `images_per_s_ci` ([low, high]), `rounds`, and the stability `flags`."""
    from levit_bench.reports.confidence import group_cells

    return [cell.summary() for cell in group_cells(records(workdir=workdir, store=store, **filters))]


def aggregate(*, workdir: PathLike | None = None, store: PathLike | None = None, **filters) -> pd.DataFrame:
    """`cells(...)` as a DataFrame, the interval also as columns `images_per_s_low`, `images_per_s_high`."""
    return _with_interval(cells(workdir=workdir, store=store, **filters), "images_per_s")


def comparison(by: str, a: str, b: str, *, models: Sequence[str] | None = None,
               platforms: Sequence[str] | None = None, min_effect: float | None = None,
               workdir: PathLike | None = None, store: PathLike | None = None) -> list[dict]:
    """One dict per cell measured on both sides A and B along `by` (runtime, run, host, precision,
    version): `ratio` of images/s B / A, `ratio_ci`, `verdict` (faster, slower, same)."""
    from levit_bench.registry import normalise_name
    from levit_bench.reports.compare import DEFAULT_MIN_EFFECT, compare as compare_records

    models = [normalise_name(m) for m in listed(models) or ()] or None
    stored = reading_store(workdir, store).records()
    return compare_records(stored, by, a, b, models=models, platforms=listed(platforms),
                           min_effect=DEFAULT_MIN_EFFECT if min_effect is None else min_effect)


def compare(by: str, a: str, b: str, *, models: Sequence[str] | None = None, platforms: Sequence[str] | None = None,
            min_effect: float | None = None, workdir: PathLike | None = None,
            store: PathLike | None = None) -> pd.DataFrame:
    """`comparison(...)` as a DataFrame, the interval also as columns `ratio_low`, `ratio_high`."""
    return _with_interval(comparison(by, a, b, models=models, platforms=platforms, min_effect=min_effect,
                                     workdir=workdir, store=store), "ratio")


def _with_interval(rows: list[dict], name: str) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows)
    if rows:
        frame[f"{name}_low"] = [row[f"{name}_ci"][0] for row in rows]
        frame[f"{name}_high"] = [row[f"{name}_ci"][1] for row in rows]
    return frame


def report(out: PathLike | None = None, *, platforms: Sequence[str] | None = None,
           runtimes: Sequence[str] | None = None, onnx: PathLike | None = None, name: str | None = None,
           resolution: int | None = None, workdir: PathLike | None = None, store: PathLike | None = None,
           progress: bool = False) -> Path:
    """Write the report (`index.html`, the Figure-1 PNGs, `results.csv`) into `out` (default
    <workdir>/reports) and return the path of its index.html (`levit-bench report`)."""
    return report_result(out, platforms=platforms, runtimes=runtimes, onnx=onnx, name=name, resolution=resolution,
                         workdir=workdir, store=store, progress=progress).index


def report_result(out: PathLike | None = None, *, platforms=None, runtimes=None, onnx=None, name=None,
                  resolution=None, workdir=None, store=None, progress: bool = False):
    """`report`, with what it wrote (`reports.report.ReportResult`: index, figures, csv, points)."""
    from levit_bench.reports.report import build_report

    use_onnx(onnx, name, resolution)  # its name, family and counts from the file, for the points stored of it
    out = Path(out) if out is not None else resolve_workdir(workdir) / "reports"
    with progress_view("report", progress) as view:
        return build_report(reading_store(workdir, store), out, listed(platforms), listed(runtimes),
                            on_step=lambda step: view.step(f"report: {step}"))


def merge(other: PathLike, *, workdir: PathLike | None = None, store: PathLike | None = None) -> tuple[int, int]:
    """Import every row of another results store (a path or URL) that this one (`store`, as every
    function takes it) lacks, all or nothing: (rows imported, rows already here)."""
    from levit_bench.store import ResultsStore, read_rows

    rows = read_rows(other)  # all checked before this store is opened (or created)
    return ResultsStore(paths(workdir, store)[1]).insert_rows(rows)
