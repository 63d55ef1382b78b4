"""The PNG plots of the HTML run report (matplotlib's Agg renderer, no pyplot state).

Each function takes plain numbers and returns PNG bytes; :mod:`nemo_cls_dask.report` decides
what to plot and embeds the images. Figures are built with :class:`matplotlib.figure.Figure`
directly, so nothing depends on (or changes) the user's pyplot backend.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

ACCENT = "#3b6ea5"
MUTED = "#9aa7b4"
DPI = 100


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def label_distribution_png(names: Sequence[str], counts: Sequence[int]) -> bytes:
    """Horizontal bars, most frequent label on top, each bar annotated with its count."""
    height = 1.2 + 0.28 * len(names)
    figure = _figure(8.0, height)
    axes = figure.add_subplot()
    positions = np.arange(len(names))[::-1]
    axes.barh(positions, counts, color=ACCENT)
    axes.set_yticks(positions, labels=list(names))
    axes.set_xlabel("rows")
    axes.set_xlim(0, max(counts) * 1.15 if len(counts) and max(counts) else 1)
    for y, count in zip(positions, counts):
        axes.annotate(f"{count:,}", (count, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def confidence_png(scores_by_label: dict[str, np.ndarray], columns: int = 4) -> bytes:
    """One histogram of the top probability per predicted label, all on the same 0-1 axis."""
    names = list(scores_by_label)
    columns = max(1, min(columns, len(names)))
    rows = -(-len(names) // columns)
    figure = _figure(2.6 * columns, 2.0 * rows + 0.4)
    bins = np.linspace(0.0, 1.0, 21)
    for index, name in enumerate(names):
        scores = scores_by_label[name]
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.hist(scores, bins=bins, color=ACCENT)
        axes.set_xlim(0, 1)
        median = f", median {np.median(scores):.2f}" if len(scores) else ""
        axes.set_title(f"{_shorten(name)}\n{len(scores):,} rows{median}", fontsize=9)
        axes.tick_params(labelsize=8)
        axes.spines[["top", "right"]].set_visible(False)
    figure.supxlabel("top probability of the row", fontsize=9)
    figure.supylabel("rows", fontsize=9)
    return _png(figure)


def timeline_png(seconds: np.ndarray, rows_done: np.ndarray, padding: np.ndarray) -> bytes:
    """Throughput between updates (with the run's mean) and padding efficiency over the run.

    ``padding`` holds NaN where no token counts were reported; the right panel then says so.
    """
    figure = _figure(10.0, 3.4)
    left, right = figure.subplots(1, 2)
    # Updates at the same second are merged (the last count wins) so every step has a width.
    last = np.append(np.diff(seconds) > 0, True)
    edges, counts = seconds[last], rows_done[last]
    if len(edges) >= 2:
        rates = np.diff(counts) / np.diff(edges)
        left.stairs(rates, edges, baseline=None, color=ACCENT, linewidth=1.5, label="between updates")
        mean = (counts[-1] - counts[0]) / (edges[-1] - edges[0])
        left.axhline(mean, color=MUTED, linestyle="--", label=f"whole run: {mean:,.1f} docs/s")
        left.set_ylim(0, max(float(rates.max()), mean) * 1.25)
        left.set_xlim(left=min(0.0, float(edges[0])))
        left.legend(fontsize=8, loc="lower right")
    left.set_title("throughput", fontsize=10)
    left.set_xlabel("seconds since start")
    left.set_ylabel("docs/s")
    has_padding = ~np.isnan(padding)
    if has_padding.any():
        right.plot(seconds[has_padding], padding[has_padding], marker="o", markersize=3, color=ACCENT)
        right.set_xlim(left=min(0.0, float(seconds[0])))
        low = float(np.nanmin(padding))
        right.set_ylim(min(low - 0.02, 0.9), 1.005)
        right.axhline(1.0, color=MUTED, linewidth=0.8)
    else:
        right.text(0.5, 0.5, "no token counts in the timeline", ha="center", va="center", transform=right.transAxes, color=MUTED)
    right.set_title("padding efficiency (real / computed tokens, cumulative)", fontsize=10)
    right.set_xlabel("seconds since start")
    for axes in (left, right):
        axes.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def confusion_png(matrix: np.ndarray, truth_names: Sequence[str], predicted_names: Sequence[str]) -> bytes:
    """Rows: true labels; columns: predicted. Colour: share of the true label's rows; text: counts."""
    n_rows, n_columns = matrix.shape
    size = 0.32
    figure = _figure(max(5.0, 3.0 + size * n_columns), max(4.0, 2.2 + size * n_rows))
    axes = figure.add_subplot()
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(np.arange(n_columns), labels=[_shorten(name) for name in predicted_names], rotation=90, fontsize=8)
    axes.set_yticks(np.arange(n_rows), labels=[_shorten(name) for name in truth_names], fontsize=8)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if n_rows * n_columns <= 900:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                axes.text(j, i, f"{count}", ha="center", va="center", fontsize=6 if n_columns > 15 else 8,
                          color="white" if shares[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axes, label="share of the true label's rows", shrink=min(0.8, 4.0 / max(n_rows * size, 1.0)))
    return _png(figure)


def _shorten(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
