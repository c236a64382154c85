"""Figures: one seaborn style, saved deterministically to figures/.

Introduced in notebook 00. PNGs are written without the software/date metadata so that a rerun
with the same numbers gives the same bytes.
"""
from __future__ import annotations

import pathlib

from cliptune import runtime


def style() -> None:
    import matplotlib as mpl
    import seaborn as sns
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "svg.hashsalt": "cliptune",
                         "figure.autolayout": False})


def save(fig, name: str) -> pathlib.Path:
    """Save ``fig`` as figures/<name>.png (directory overridable with CLIPTUNE_FIGURES)."""
    out = pathlib.Path(runtime.FIGURES_DIR)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, bbox_inches="tight", metadata={"Software": None})
    runtime.note_output(path)
    return path


def image_grid(images, titles=None, ncols: int = 10, scale: float = 1.1):
    """A grid of uint8 images with optional small titles; returns the figure."""
    import matplotlib.pyplot as plt
    n = len(images)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.15),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, im in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(im)
        if titles is not None:
            ax.set_title(titles[i], fontsize=6)
    fig.tight_layout()
    return fig


def diverging_heatmap(table, limit: float | None = None, label: str = "difference (points)",
                      ax=None, fmt: str = "{:+.1f}", missing: str = "n/a"):
    """A heatmap of signed differences on a diverging scale centred at 0.

    ``table``: a DataFrame (rows x columns, NaN = not run). The colour range is symmetric,
    [-limit, limit] (default: the largest |value|, rounded up to a multiple of 5, at most 20),
    and clipped: a cell beyond it takes the end colour, and its written value still tells the
    truth. The range is stated in the colourbar label, every value is written in its cell, and
    long tick labels are wrapped and rotated so they never run together. Returns the axes."""
    import matplotlib.pyplot as plt
    import numpy as np
    values = np.asarray(table, dtype=float)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"diverging_heatmap needs a non-empty 2-D table, got shape {values.shape}")
    finite = np.abs(values[np.isfinite(values)])
    if limit is None:
        top = float(finite.max()) if finite.size else 1.0
        limit = min(20.0, max(5.0, 5.0 * np.ceil(top / 5.0)))
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.9 * values.shape[1], 0.8 + 0.45 * values.shape[0]))
    shown = np.ma.masked_invalid(np.clip(values, -limit, limit))
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#eeeeee")
    im = ax.imshow(shown, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    clipped = bool((finite > limit).any())
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label(
        f"{label}, colour range ±{limit:g}" + (" (clipped)" if clipped else ""), fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            text = missing if not np.isfinite(v) else fmt.format(v)
            dark = np.isfinite(v) and abs(v) > 0.6 * limit
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    rows = list(getattr(table, "index", range(values.shape[0])))
    cols = list(getattr(table, "columns", range(values.shape[1])))
    ax.set_xticks(range(len(cols)), [_wrap(c) for c in cols], rotation=35, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(rows)), [_wrap(r, 28) for r in rows], fontsize=8)
    ax.grid(False)
    return ax


def _wrap(label, width: int = 14) -> str:
    import textwrap
    text = " / ".join(str(x) for x in label) if isinstance(label, tuple) else str(label)
    return "\n".join(textwrap.wrap(text, width)) or text


def lines_with_errorbars(df, x: str, y: str, hue: str, ax=None, err: str = "sd",
                         order=None, ylabel: str | None = None):
    """Mean of ``y`` against ``x`` for each ``hue``, with error bars over the rows (seeds) of
    each point: ``err`` = "sd" (standard deviation) or "ci" (95% normal interval of the mean).
    Every line is drawn (markers distinguish overlapping ones) and named in the legend; the y
    axis is not cropped below what the error bars need. Returns the axes."""
    import matplotlib.pyplot as plt
    import numpy as np
    if err not in ("sd", "ci"):
        raise ValueError(f"err={err!r}: use 'sd' or 'ci'")
    missing = [c for c in (x, y, hue) if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the frame (columns: {list(df.columns)})")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    markers = "osD^vP*Xh<>"
    names = order or list(dict.fromkeys(df[hue]))
    for k, name in enumerate(names):
        g = df[df[hue] == name].groupby(x)[y].agg(["mean", "std", "count"]).reset_index()
        spread = g["std"].fillna(0.0)
        if err == "ci":
            spread = 1.96 * spread / np.sqrt(g["count"].clip(lower=1))
        ax.errorbar(g[x], g["mean"], yerr=spread, marker=markers[k % len(markers)],
                    markersize=5, capsize=3, linewidth=1.4, label=str(name),
                    alpha=0.9, zorder=3 + k)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    ax.legend(fontsize=8, title=f"{hue} (bars: {'±1 sd' if err == 'sd' else '95% CI'})",
              title_fontsize=8)
    return ax


def interactive(fn, note: str, **controls):
    """A static figure and, beside it, a live control that redraws it.

    ``fn(**values)`` draws one figure with ``plt.show()``. It is drawn once for the controls'
    current values as an ordinary image (what papermill, nbval and a notebook viewer keep), then
    the controls and a live copy follow (JupyterLab). The widget's text form is ``note``, not
    ``interactive(children=(FloatSlider(...``. Returns nothing, so that a cell ending with it
    shows no second copy of the widget."""
    import ipywidgets as widgets
    from IPython.display import display
    fn(**{name: c.value for name, c in controls.items()})
    box = widgets.VBox([*controls.values(), widgets.interactive_output(fn, controls)])
    box.add_class("cliptune-interactive")
    bundle = box._repr_mimebundle_()
    bundle["text/plain"] = f"[interactive: {note}; needs a live kernel. The figure above is its " \
                           "static copy.]"
    display(bundle, raw=True)
