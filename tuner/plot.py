"""PNG plots of best-so-far cost against trials (matplotlib, Agg backend: no display needed).

The title is wrapped to the figure's width; the time axis has plain tick labels (0.02, 0.05,
not 2x10^-2 or an offset); the legend names each curve's search strategy."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

STRATEGY_NAMES = {"xgb": "XGBoost-guided search", "random": "random search",
                  "xgb-transfer": "XGBoost-guided search, seeded by transfer records"}
TITLE_CHARS = 72  # characters per title line at the title's font size and the figure's width


def fill_curve(curve: Sequence[float | None], length: int) -> np.ndarray:
    """A curve as floats of `length` entries: nan before the first success, the last value
    carried on past its end."""
    out = np.full(length, np.nan)
    for k, v in enumerate(curve[:length]):
        out[k] = np.nan if v is None else v
    if curve and len(curve) < length:
        out[len(curve):] = out[len(curve) - 1]
    return out


def wrap_title(title: str, width: int = TITLE_CHARS) -> str:
    """`title` in lines of at most `width` characters, broken after spaces, '|' and ','
    (workload keys have no spaces); a longer piece is cut."""
    lines, line = [], ""
    for piece in re.split(r"(?<=[ |,])", title):
        while len(piece) > width:
            if line:
                lines.append(line.rstrip())
                line = ""
            lines.append(piece[:width])
            piece = piece[width:]
        if len(line) + len(piece) > width and line:
            lines.append(line.rstrip())
            line = ""
        line += piece
    if line:
        lines.append(line.rstrip())
    return "\n".join(lines)


def strategy_label(name: str) -> str:
    return STRATEGY_NAMES.get(name, name)


def figure(curves: Mapping[str, Sequence[Sequence[float | None]]], title: str = "",
           ylabel: str = "best time so far (ms)"):
    """The matplotlib figure of plot_curves (not saved; close it with plt.close)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lows, highs = [], []
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
        if np.isfinite(lo).any():
            lows.append(np.nanmin(lo))
            highs.append(np.nanmax(hi))
        line, = ax.plot(x, med, label=f"{strategy_label(label)} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
        if len(runs) > 1:
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("trials")
    ax.set_ylabel(ylabel)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    if lows and min(lows) > 0 and max(highs) / min(lows) > 3:  # several-fold: log scale, ticks at 1, 2, 5
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        formatter = ScalarFormatter(useOffset=False)
        formatter.set_scientific(False)
        ax.yaxis.set_major_formatter(formatter)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole trials
    ax.xaxis.set_major_formatter(plain)
    if title:
        ax.set_title(wrap_title(title), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(title="strategy", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    return fig


def plot_curves(curves: Mapping[str, Sequence[Sequence[float | None]]], path: str, title: str = "",
                ylabel: str = "best time so far (ms)") -> None:
    """One line per strategy (the key: "xgb", "random", ...): the median over its runs, with
    the range between the lowest and highest run shaded when there are several."""
    import matplotlib.pyplot as plt

    fig = figure(curves, title, ylabel)
    fig.savefig(path, dpi=110)
    plt.close(fig)
