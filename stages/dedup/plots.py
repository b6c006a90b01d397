"""The plots of a dedup stage's report (cluster sizes, similarities around the threshold, which source
duplicates which), drawn from its details as PNG files in the stage directory. A stage starts them at
the end of reduce (`start_plots`) and the runner waits for them after the apply phase they overlap,
so matplotlib is off the critical path of a run."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from stages.reports.figures import png
from stages.stage import Details

DPI = 90
PLOTS_DIR = "plots"  # a dedup stage's plots as PNG files, next to its report.json
_plotter = ThreadPoolExecutor(1, thread_name_prefix="dedup-plots")


def size_bins(hist: dict[str, int]) -> tuple[list[str], list[int]]:
    """Clusters per size in doubling bins (2, 3-4, 5-8, ...): a bar per bin stays readable where a
    1M-row run has a hundred distinct sizes."""
    bins: dict[int, int] = {}
    for size, count in hist.items():
        top = 1 << (int(size) - 1).bit_length()  # the bin's upper end: 1, 2, 4, 8, ...
        bins[top] = bins.get(top, 0) + count
    labels = [str(top) if top <= 2 else f"{top // 2 + 1}-{top}" for top in sorted(bins)]
    return labels, [bins[top] for top in sorted(bins)]


def plain_log_labels(axis: Any) -> None:
    """1,000 rather than 10^3 on a log axis: plainer to read, and matplotlib's math text layout was
    half the time of the report's plots."""
    from matplotlib.ticker import NullFormatter, StrMethodFormatter

    axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axis.set_minor_formatter(NullFormatter())


def start_plots(details: Details, out_dir: Path) -> Future[None]:
    """Render the stage's plots into `out_dir`/plots/ in a background thread: reduce starts them, the
    apply phase (kept/dropped shards, on the workers) overlaps them, and the runner waits for the
    returned future before it publishes the stage. Off the critical path, they cost ~0.7 s less."""
    return _plotter.submit(write_plots, details.model_dump(mode="json"), out_dir / PLOTS_DIR)


def write_plots(details: dict[str, Any], directory: Path) -> None:
    directory.mkdir(exist_ok=True)  # not its parents: a failed stage's directory is gone for good
    for name, data in plot_pngs(details):
        (directory / f"{name}.png").write_bytes(data)


def plot_pngs(details: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(name, PNG) of each plot the details have data for, in the order the report shows them. Figures
    are matplotlib `Figure`s, not pyplot's: no global state, so a background thread may draw them."""
    from matplotlib.figure import Figure

    out = []
    hist = details.get("cluster_size_histogram") or details.get("group_size_histogram") or {}
    if hist:
        fig = Figure(figsize=(4.2, 2.8))
        ax = fig.subplots()
        labels, counts = size_bins(hist)
        ax.bar(labels, counts, color="#4c78a8")
        ax.set(xlabel="cluster size (rows)", ylabel="clusters", title="cluster sizes", yscale="log")
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
        plain_log_labels(ax.yaxis)
        out.append(("1-cluster_sizes", png(fig, DPI)))
    sim = details.get("similarity_histogram")
    if sim and sum(sim["joined"]) + sum(sim["below_threshold"]) + sum(sim["number_guard"]):
        edges = np.asarray(sim["edges"])
        width, left = np.diff(edges), edges[:-1]
        fig = Figure(figsize=(5.2, 2.8))
        ax = fig.subplots()
        bottom = np.zeros(left.size)
        for key, color, label in (
            ("joined", "#e45756", "joined"),
            ("below_threshold", "#bab0ac", "below threshold"),
            ("number_guard", "#f58518", "kept apart by number guard"),
        ):
            ax.bar(left, sim[key], width=width, bottom=bottom, align="edge", color=color, label=label)
            bottom += np.asarray(sim[key])
        ax.axvline(details["threshold"], color="black", linestyle="--", linewidth=1)
        ax.set(
            xlabel="pair similarity",
            ylabel="candidate pairs",
            title=f"similarity around the threshold ({details['threshold']})",
        )
        ax.legend(fontsize=7)
        out.append(("2-similarity", png(fig, DPI)))
    matrix = details.get("source_matrix")
    if matrix and matrix["sources"] and np.asarray(matrix["counts"]).sum():
        counts = np.asarray(matrix["counts"])
        names = matrix["sources"]
        fig = Figure(figsize=(1.4 + 0.7 * len(names), 1.2 + 0.5 * len(names)))
        ax = fig.subplots()
        ax.imshow(counts, cmap="Reds")
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set(xlabel="source of removed row", ylabel="source of kept row", title="who duplicates whom")
        for i, j in zip(*np.nonzero(counts), strict=True):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7)
        out.append(("3-sources", png(fig, DPI)))
    return out
