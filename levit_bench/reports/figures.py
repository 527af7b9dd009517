"""Figure 1, remade from measurements: images/s (log) against ImageNet top-1.

Colour is the family, the marker the runtime, one line per family (and runtime, and host)
through its models in order of size; horizontal bars are each point's 95% interval over its
rounds; hollow markers have a `reported` top-1 (or, for int8, its fp32 source's), filled ones a
`measured` one; a reduced precision has its runtime's marker for it (runtimes table); the paper's own points for the platform are drawn faded; a dashed step line
is the Pareto frontier of what was measured. Labels are placed greedily where they cover
neither a point nor another label.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from levit_bench.registry import PAPER_PLATFORMS, REGISTRY  # noqa: E402
from levit_bench.registry import family as family_info  # noqa: E402
from levit_bench.runtimes import RUNTIMES  # noqa: E402
from levit_bench.workdir import atomic_path  # noqa: E402

EXTRA_MARKERS = ("v", "<", ">", "p", "8", "1", "2")  # none a runtime's or a precision's own
LINESTYLES = ("-", "--", ":", "-.")


def family_style(name: str) -> tuple[str, str]:
    """(legend name, colour) of a family, from the registry (grey, named as it is, if unknown)."""
    found = family_info(name)
    return found.label, found.colour


def short_name(model: str) -> str:
    spec = REGISTRY.get(model)
    return spec.label if spec else model


def _marker(variant: str, extra: dict[str, str]) -> str:
    """The runtime's own marker (runtimes table), or its marker for a reduced precision
    (`openvino int8`); other variants (batches, an unregistered runtime) get the next spare one."""
    label, _, qualifier = variant.partition(" ")  # `torch:eager b32`: the runtime and mode, then the rest
    name, _, mode = label.partition(":")
    runtime = RUNTIMES.get(name)
    if runtime is not None and not qualifier:
        return runtime.mode_markers.get(mode, runtime.marker)
    if runtime is not None and qualifier in runtime.precision_markers:
        return runtime.precision_markers[qualifier]
    return extra.setdefault(variant, EXTRA_MARKERS[len(extra) % len(EXTRA_MARKERS)])


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points that no other point beats on both speed and accuracy, fastest first."""
    front, best = [], float("-inf")
    for speed, accuracy in sorted(points, key=lambda p: (-p[0], -p[1])):
        if accuracy > best:
            front.append((speed, accuracy))
            best = accuracy
    return front


def _place_labels(ax, items: list[tuple[float, float, str, str]]) -> None:
    """Greedy placement: for each point, the first of 8 offsets whose box hits nothing placed."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_pixels = ax.transData.transform
    occupied = []
    for x, y, _, _ in items:  # every marker is an obstacle
        px, py = to_pixels((x, y))
        occupied.append((px - 5, py - 5, px + 5, py + 5))
    offsets = [(5, 4, "left", "bottom"), (5, -4, "left", "top"), (-5, 4, "right", "bottom"),
               (-5, -4, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top"),
               (9, 0, "left", "center"), (-9, 0, "right", "center")]
    for x, y, text, color in items:
        best, best_overlap = None, None
        for dx, dy, ha, va in offsets:
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                                fontsize=8, color=color)
            box = label.get_window_extent(renderer)
            rect = (box.x0, box.y0, box.x1, box.y1)
            overlap = sum(max(0, min(r[2], rect[2]) - max(r[0], rect[0])) * max(0, min(r[3], rect[3]) - max(r[1], rect[1]))
                          for r in occupied)
            if best_overlap is None or overlap < best_overlap:
                if best is not None:
                    best[0].remove()
                best, best_overlap = (label, rect), overlap
            else:
                label.remove()
            if overlap == 0:
                break
        occupied.append(best[1])


def tradeoff_figure(points: list[dict], platform: str, title: str, path: Path) -> None:
    """Write the speed-accuracy plot of `points` (one platform) to `path` as PNG."""
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=150)
    extra: dict[str, str] = {}
    hosts = list(dict.fromkeys(p["host"] for p in points))
    order = {name: i for i, name in enumerate(REGISTRY)}
    plotted = [p for p in points if p["top1"] is not None]
    labels: list[tuple[float, float, str, str]] = []

    # the paper's own points, faded
    paper = [(spec.reported.images_per_s[platform], spec.reported.top1, name, spec.family)
             for name, spec in REGISTRY.items() if platform in spec.reported.images_per_s and spec.reported.top1]
    for family in dict.fromkeys(f for *_, f in paper):
        series = sorted([p for p in paper if p[3] == family], key=lambda p: order[p[2]])
        color = family_style(family)[1]
        ax.plot([p[0] for p in series], [p[1] for p in series], linestyle=":", marker="*", markersize=7,
                color=color, alpha=0.3, linewidth=1)

    # the measurements: one line per (host, variant, family)
    for host_index, host in enumerate(hosts):
        for variant in dict.fromkeys(p["variant"] for p in plotted if p["host"] == host):
            marker = _marker(variant, extra)
            for family in dict.fromkeys(p["family"] for p in plotted):
                series = sorted((p for p in plotted if p["host"] == host and p["variant"] == variant
                                 and p["family"] == family), key=lambda p: order.get(p["model"], 99))
                if not series:
                    continue
                color = family_style(family)[1]
                ax.plot([p["images_per_s"] for p in series], [p["top1"] for p in series],
                        linestyle=LINESTYLES[host_index % len(LINESTYLES)], color=color, linewidth=1.4, alpha=0.85)
                for p in series:
                    filled = p["top1_source"] == "measured"
                    low, high = p.get("images_per_s_ci") or (p["images_per_s"], p["images_per_s"])
                    spread = [[p["images_per_s"] - low], [high - p["images_per_s"]]]
                    ax.errorbar(p["images_per_s"], p["top1"], xerr=spread,
                                marker=marker, markersize=7, color=color, markerfacecolor=color if filled else "white",
                                markeredgewidth=1.4, linestyle="none", elinewidth=1.2, capsize=3)
                    labels.append((p["images_per_s"], p["top1"], short_name(p["model"]), color))

    # a model whose accuracy nobody knows (a user's ONNX model): its speed alone, as a vertical line
    speed_only = [p for p in points if p["top1"] is None]
    for p in speed_only:
        color = family_style(p["family"])[1]
        ax.axvline(p["images_per_s"], color=color, linestyle=(0, (3, 2)), linewidth=1.2, alpha=0.9)
        low, high = p.get("images_per_s_ci") or (p["images_per_s"], p["images_per_s"])
        ax.axvspan(low, high, color=color, alpha=0.12, linewidth=0)
        ax.annotate(f"{short_name(p['model'])} · {p['variant']}", xy=(p["images_per_s"], 0.98),
                    xycoords=("data", "axes fraction"), rotation=90, ha="right", va="top", fontsize=7, color=color)

    front = pareto_front((p["images_per_s"], p["top1"]) for p in plotted)
    if len(front) > 1:
        xs, ys = zip(*front)
        ax.step(xs, ys, where="post", color="black", linestyle="--", linewidth=0.9, alpha=0.6)

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"images / second (log scale) on {platform}")
    ax.set_ylabel("ImageNet top-1 accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.annotate("up and to the right is better", xy=(1.13, 0.02), xytext=(1.02, 0.02), xycoords="axes fraction",
                ha="left", va="bottom", fontsize=9, color="#444444", style="italic")
    ax.annotate("", xy=(1.12, 0.12), xytext=(1.04, 0.06), xycoords="axes fraction",
                arrowprops={"arrowstyle": "->", "color": "#444444"})
    fig.canvas.draw()
    _place_labels(ax, labels)

    paper_platform = PAPER_PLATFORMS.get(platform)
    # every family drawn is named, measured or only among the paper's faded points
    drawn = dict.fromkeys([*(p["family"] for p in [*plotted, *speed_only]), *(family for *_, family in paper)])
    handles = [Line2D([], [], color=family_style(f)[1], linewidth=2, label=family_style(f)[0]) for f in drawn]
    handles += [Line2D([], [], color="#555555", marker=_marker(v, extra), linestyle="none", label=v)
                for v in dict.fromkeys(p["variant"] for p in plotted)]
    if len(hosts) > 1:
        handles += [Line2D([], [], color="#555555", linestyle=LINESTYLES[i % len(LINESTYLES)],
                           label=next(p["host_label"] for p in points if p["host"] == h)) for i, h in enumerate(hosts)]
    handles += [
        Line2D([], [], color="#555555", marker="o", markerfacecolor="white", linestyle="none", label="top-1 reported (int8: fp32's, not evaluated)"),
        Line2D([], [], color="#555555", marker="o", linestyle="none", label="top-1 measured"),
        Line2D([], [], color="#555555", marker="|", markersize=8, linestyle="-", label="95% interval over rounds"),
        Line2D([], [], color="#999999", marker="*", linestyle=":", alpha=0.5,
               label=f"paper Table 3 ({paper_platform.column if paper_platform else platform}, PyTorch)"),
        Line2D([], [], color="black", linestyle="--", alpha=0.6, label="Pareto frontier (measured)"),
    ]
    if speed_only:
        handles.append(Line2D([], [], color="#555555", linestyle=(0, (3, 2)), label="no top-1 known: speed only"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: Path, **options) -> None:
    """A PNG written whole or not at all (`options` go to `savefig`); the figure closed."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **options)
    plt.close(fig)
