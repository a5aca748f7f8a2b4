"""PNG plots of best-so-far cost against trials (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np


def fill_curve(curve: Sequence[float | None], length: int) -> np.ndarray:
    """A curve as floats of `length` entries: nan before the first success, the last value
    carried on past its end."""
    out = np.full(length, np.nan)
    for k, v in enumerate(curve[:length]):
        out[k] = np.nan if v is None else v
    if curve and len(curve) < length:
        out[len(curve):] = out[len(curve) - 1]
    return out


def plot_curves(curves: Mapping[str, Sequence[Sequence[float | None]]], path: str, title: str = "",
                ylabel: str = "best time so far (ms)") -> None:
    """One line per label: the median over its runs, with the range between the lowest and
    highest run shaded when there are several."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, runs in curves.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        n = max(len(r) for r in runs)
        data = np.vstack([fill_curve(r, n) for r in runs])
        x = np.arange(1, n + 1)
        with warnings.catch_warnings():  # all-nan columns (no success yet) stay nan
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(data, axis=0)
            lo, hi = np.nanmin(data, axis=0), np.nanmax(data, axis=0)
        line, = ax.plot(x, med, label=f"{label} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
        if len(runs) > 1:
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("trials")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
