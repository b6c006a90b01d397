"""Small matplotlib charts as PNG bytes: inlined (base64) in report pages, or files next to a card.

Every chart function returns PNG bytes; `img` turns them into an <img> tag, so pages need no network.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from stages.reports.figures import img as inline_img
from stages.reports.figures import png as figure_png

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def png(fig) -> bytes:
    data = figure_png(fig, dpi=110)
    plt.close(fig)
    return data


def img(data: bytes, alt: str = "chart") -> str:
    return inline_img(data, alt)


def _axes(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (7, 3)):
    fig, ax = plt.subplots(figsize=size)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def funnel(stages: Sequence[str], kept: Sequence[int], rows_in: int) -> bytes:
    """Rows remaining after each stage, as horizontal bars with counts."""
    labels = ["input", *stages]
    values = [rows_in, *kept]
    fig, ax = _axes("Funnel: rows after each stage", "rows", "", (7, 0.45 * len(labels) + 0.8))
    bars = ax.barh(labels[::-1], values[::-1], color=PALETTE[0])
    for bar, value in zip(bars, values[::-1], strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:,}", va="center", fontsize=9)
    ax.set_xlim(0, max(values) * 1.15 if values and max(values) else 1)
    return png(fig)


def stacked_reasons(stages: Sequence[str], reasons: Sequence[dict[str, int]]) -> bytes:
    """Dropped rows per stage, stacked by reason."""
    names = sorted({r for per in reasons for r in per})
    fig, ax = _axes("Dropped rows by reason", "dropped rows", "", (7, 0.45 * len(stages) + 1.2))
    left = [0] * len(stages)
    for i, name in enumerate(names):
        widths = [per.get(name, 0) for per in reasons]
        ax.barh(stages, widths, left=left, label=name, color=PALETTE[i % len(PALETTE)])
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    if names:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return png(fig)


def histogram(values: Sequence[float], title: str, xlabel: str, bins: int = 40, log: bool = False) -> bytes:
    fig, ax = _axes(title, xlabel, "rows")
    ax.hist(values, bins=bins, color=PALETTE[2], log=log)
    return png(fig)


def overlaid_histogram(series: dict[str, Sequence[float]], title: str, xlabel: str, bins: int = 30) -> bytes:
    """Several distributions on shared bins (e.g. lengths of correct vs incorrect samples)."""
    fig, ax = _axes(title, xlabel, "samples")
    present = {k: v for k, v in series.items() if len(v)}
    if present:
        ax.hist(
            list(present.values()),
            bins=bins,
            label=[f"{k} ({len(v):,})" for k, v in present.items()],
            color=PALETTE[: len(present)],
            stacked=True,
        )
        ax.legend(fontsize=8, frameon=False)
    return png(fig)


def pass_rate_histogram(rates: Sequence[float], low: float, high: float, title: str) -> bytes:
    """Problems per pass rate, with the kept band [low, high] shaded."""
    fig, ax = _axes(title, "pass rate (correct / verified samples)", "problems")
    ax.axvspan(low, high, color=PALETTE[2], alpha=0.12, label=f"kept: {low} ≤ rate ≤ {high}")
    ax.hist(rates, bins=[i / 20 - 0.025 for i in range(22)], color=PALETTE[0], rwidth=0.85)
    ax.set_xlim(-0.05, 1.05)
    ax.legend(fontsize=8, frameon=False, loc="upper center")
    return png(fig)
