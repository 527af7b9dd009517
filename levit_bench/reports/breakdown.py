"""Where the time goes, drawn: per model, its component times on every runtime profiled (stacked
bars, ms per image), and per platform every measured cell on a roofline (GFLOP/s against
FLOPs per byte, under the host's calibrated FMA peak and copy bandwidth).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from levit_bench.exporters.work import work_per_image  # noqa: E402
from levit_bench.models.components import LAYOUT, OTHER  # noqa: E402
from levit_bench.registry import REGISTRY  # noqa: E402
from levit_bench.reports.figures import family_style, save_figure, short_name  # noqa: E402
from levit_bench.reports.dataset import variant  # noqa: E402

GREYS = {LAYOUT: "#9e9e9e", OTHER: "#d0d0d0"}
SHOWN_SHARE = 0.06  # a segment this wide or wider is labelled with its share


def latest_profiles(profiles: list[dict]) -> list[dict]:
    """The latest profile per model, runtime variant, platform, batch and host (oldest first in)."""
    latest = {}
    for profile in profiles:
        key = (profile["model"], profile["runtime"], profile.get("mode"), profile.get("precision"),
               profile["platform"], profile.get("batch"), profile["host"])
        latest[key] = profile
    return list(latest.values())


def profile_label(profile: dict) -> str:
    return f"{variant(profile)}\n{profile['platform']}, batch {profile['batch']}"


def _colours(names: list[str]) -> dict[str, str]:
    palette = plt.get_cmap("tab20").colors
    computing = [n for n in names if n not in GREYS]
    return {**{n: palette[i % len(palette)] for i, n in enumerate(computing)}, **GREYS}


def component_figure(profiles: list[dict], model: str, path: Path) -> None:
    """One bar per profile of `model`: its components' shares of the kernels' time, stacked in
    the vocabulary's order, each bar labelled with its ms per image (runtimes differ by 100x:
    shares side by side, the time as text)."""
    names = list(dict.fromkeys(c["name"] for p in profiles for c in p["components"]))
    colours = _colours(names)
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.75 * len(profiles)), dpi=130)
    for row, profile in enumerate(profiles):
        left = 0.0
        for component in profile["components"]:
            width = component["share"] * 100
            if width <= 0:
                continue
            ax.barh(row, width, left=left, color=colours[component["name"]], edgecolor="white", linewidth=0.6)
            if component["share"] >= SHOWN_SHARE:
                ax.text(left + width / 2, row, f"{component['share']:.0%}", ha="center", va="center", fontsize=7)
            left += width
        per_image = profile["kernels_ms"] / profile["batch"]
        ax.text(101, row, f"{per_image:.3g} ms/image", va="center", fontsize=8)
    ax.set_yticks(range(len(profiles)), [profile_label(p) for p in profiles], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the kernels' time (%), by the runtime's own profiler")
    ax.set_title(f"{model}: where the time goes", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[n]) for n in names]
    ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.14, 1.0), fontsize=8, frameon=False)
    save_figure(fig, path, bbox_inches="tight")  # the legend outside the axes included


def model_intensity(model: str, batch: int) -> float | None:
    """FLOPs per byte moved of one image of a batch through the folded model (meta device)."""
    flops, moved = work_per_image(model, batch)  # cached there
    return sum(flops.values()) / sum(moved.values()) if sum(moved.values()) else None


def roofline_points(points: list[dict]) -> list[dict]:
    """Each measured point that can sit on a roofline: its GFLOP/s (2 x MACs x its images/s), its
    model's arithmetic intensity, and the ceilings its record carries."""
    placed = []
    for point in points:
        record = point["record"]
        if point["model"] not in REGISTRY or not record.get("gflops") or not record.get("images_per_s"):
            continue
        intensity = model_intensity(point["model"], point["batch"] or 1)
        if intensity is None:
            continue
        placed.append({**point, "intensity": intensity,
                       "gflops": record["gflops"] * point["images_per_s"] / record["images_per_s"],
                       "peak_fma_gflops": record.get("peak_fma_gflops"), "memory_gbps": record.get("memory_gbps")})
    return placed


def roofline_figure(points: list[dict], platform: str, path: Path) -> None:
    """Every cell of `platform` (from `roofline_points`) against the ceilings of its host: the
    FMA peak of the cores it ran on, and bandwidth x intensity."""
    fig, ax = plt.subplots(figsize=(9, 6), dpi=130)
    ceilings = sorted({(p["peak_fma_gflops"], p["memory_gbps"]) for p in points if p["peak_fma_gflops"]},
                      key=lambda c: (c[0], c[1] or 0))
    ridges = [peak / bandwidth for peak, bandwidth in ceilings if bandwidth]
    low = min([p["intensity"] for p in points] + ridges) / 3
    high = max(p["intensity"] for p in points) * 3
    for peak, bandwidth in ceilings:
        xs = [low, *([peak / bandwidth] if bandwidth else []), high]
        ax.plot(xs, [min(peak, bandwidth * x) if bandwidth else peak for x in xs], color="black", linewidth=1.2)
        ax.text(high, peak, f"FMA peak {peak:g} GFLOP/s ", va="bottom", ha="right", fontsize=8)
        if bandwidth:
            ax.text(low, bandwidth * low, f" copy {bandwidth:g} GB/s", va="bottom", fontsize=8)
    variants = list(dict.fromkeys(p["variant"] for p in points))
    markers = ("o", "s", "^", "D", "v", "P", "X", "h")
    for point in points:
        colour = family_style(point["family"])[1]
        ax.scatter(point["intensity"], point["gflops"], color=colour,
                   marker=markers[variants.index(point["variant"]) % len(markers)], s=36,
                   edgecolors="black" if point["noisy"] else colour)
        ax.annotate(short_name(point["model"]), (point["intensity"], point["gflops"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved, per image at the cell's batch, folded model)")
    ax.set_ylabel("achieved GFLOP/s (2 x MACs x images/s)")
    ax.set_title(f"{platform}: every measured cell under this host's ceilings", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    handles = [plt.Line2D([], [], color="#555555", marker=markers[i % len(markers)], linestyle="none", label=v)
               for i, v in enumerate(variants)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    save_figure(fig, path, bbox_inches="tight")  # the legend outside the axes included


