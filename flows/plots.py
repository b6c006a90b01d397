"""Small matplotlib charts rendered to inline base64 PNG, so report pages need no network."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def to_img(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def funnel(stages: Sequence[str], kept: Sequence[int], rows_in: int) -> str:
    """Rows remaining after each stage, as horizontal bars with counts."""
    labels = ["input", *stages]
    values = [rows_in, *kept]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 0.8))
    bars = ax.barh(labels[::-1], values[::-1], color=PALETTE[0])
    for bar, value in zip(bars, values[::-1], strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:,}", va="center", fontsize=9)
    ax.set_xlabel("rows")
    ax.set_title("Funnel: rows after each stage")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlim(0, max(values) * 1.15 if values and max(values) else 1)
    return to_img(fig)


def stacked_reasons(stages: Sequence[str], reasons: Sequence[dict[str, int]]) -> str:
    """Dropped rows per stage, stacked by reason."""
    names = sorted({r for per in reasons for r in per})
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(stages) + 1.2))
    left = [0] * len(stages)
    for i, name in enumerate(names):
        widths = [per.get(name, 0) for per in reasons]
        ax.barh(stages, widths, left=left, label=name, color=PALETTE[i % len(PALETTE)])
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("dropped rows")
    ax.set_title("Dropped rows by reason")
    ax.spines[["top", "right"]].set_visible(False)
    if names:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return to_img(fig)


def histogram(values: Sequence[float], title: str, xlabel: str, bins: int = 40, log: bool = False) -> str:
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(values, bins=bins, color=PALETTE[2], log=log)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.spines[["top", "right"]].set_visible(False)
    return to_img(fig)
