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


def _require_columns(frame, columns) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the frame (columns: {list(frame.columns)})")


def _mean_and_spread(df, x: str, y: str, err: str):
    """Per ``x``: the mean of ``y`` over the rows (seeds) and its spread, ``err`` = "sd"
    (standard deviation) or "ci" (95% normal interval of the mean); one row has spread 0."""
    import numpy as np
    g = df.groupby(x)[y].agg(["mean", "std", "count"]).reset_index()
    spread = g["std"].fillna(0.0)
    if err == "ci":
        spread = 1.96 * spread / np.sqrt(g["count"].clip(lower=1))
    return g[x], g["mean"], spread


def _check_err(err: str) -> None:
    if err not in ("sd", "ci"):
        raise ValueError(f"err={err!r}: use 'sd' or 'ci'")


def lines_with_errorbars(df, x: str, y: str, hue: str, ax=None, err: str = "sd",
                         order=None, ylabel: str | None = None):
    """Mean of ``y`` against ``x`` for each ``hue``, with error bars over the rows (seeds) of
    each point: ``err`` = "sd" (standard deviation) or "ci" (95% normal interval of the mean).
    Every line is drawn (markers distinguish overlapping ones) and named in the legend; the y
    axis is not cropped below what the error bars need. Returns the axes."""
    import matplotlib.pyplot as plt
    _check_err(err)
    _require_columns(df, (x, y, hue))
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    markers = "osD^vP*Xh<>"
    names = order or list(dict.fromkeys(df[hue]))
    for k, name in enumerate(names):
        xs, mean, spread = _mean_and_spread(df[df[hue] == name], x, y, err)
        ax.errorbar(xs, mean, yerr=spread, marker=markers[k % len(markers)],
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


# ---- figures-a helpers
# Shared by notebooks 00-03: lines that stay visible when they overlap, few-shot curves on a
# log2 axis with reference lines, y ranges that do not blow small differences up, and tick
# labels that never run together.

LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)),
               (0, (3, 1, 3, 1, 1, 1)))
MARKERS = "osD^vPX*h<>"


def distinct_lines(ax, curves, n_markers: int = 8, **kwargs):
    """Draw ``curves`` ({label: (x, y)}) so that every line stays visible when they overlap.

    Each line gets its own line style and marker; the markers sit at ``n_markers`` positions
    staggered from line to line, so that a line drawn exactly on top of another still shows
    its markers between the other's. Every line is named in the legend. Returns the axes."""
    import numpy as np
    n = max(len(curves), 1)
    for k, (label, (x, y)) in enumerate(curves.items()):
        x = np.asarray(x)
        step = max(1, len(x) // n_markers)
        start = (k * step) // n  # stagger: line k's markers fall between line k-1's
        ax.plot(x, y, linestyle=LINE_STYLES[k % len(LINE_STYLES)],
                marker=MARKERS[k % len(MARKERS)], markevery=(start, step), markersize=5,
                label=str(label), zorder=3 + k, **{"lw": 1.5, **kwargs})
    ax.legend(fontsize=8)
    return ax


def honest_ylim(ax, min_span: float = 10.0, floor: float | None = None,
                ceiling: float | None = None):
    """Widen the y range to at least ``min_span`` (in the data's units) about its centre.

    Matplotlib fits the y axis to the data, so a spread of half a point fills the whole
    height and looks like a large effect. This keeps the current limits when they are wider
    already and never goes below ``floor`` or above ``ceiling`` (e.g. 0 and 100 for an
    accuracy). Returns the new (low, high)."""
    lo, hi = ax.get_ylim()
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
        if floor is not None and lo < floor:
            lo, hi = floor, floor + min_span
        if ceiling is not None and hi > ceiling:
            lo, hi = ceiling - min_span, ceiling
        if floor is not None:
            lo = max(lo, floor)
        ax.set_ylim(lo, hi)
    return ax.get_ylim()


def shot_curves(ax, df, x: str = "shots", y: str = "value", hue: str = "method",
                references=None, order=None, err: str = "sd", dodge: float = 0.06,
                min_span: float = 10.0, legend: str = "best"):
    """Few-shot curves: mean of ``y`` per ``x`` (shots) for each ``hue``, with error bars over
    the seeds (``err``: "sd" or "ci", as in :func:`lines_with_errorbars`).

    The x axis is log2 with exactly the shot counts as ticks. Each method has its own marker
    and line style, and is shifted sideways by a little (``dodge``, in log2 units, centred on
    the true position) so that overlapping error bars stay apart. ``references``
    ({label: value}, e.g. zero-shot) are horizontal lines in the legend. The y range spans
    at least ``min_span`` points (:func:`honest_ylim`), so differences of a fraction of a point
    do not fill the panel. ``legend``: a location, "outside" (to the right of the axes) or
    None. Returns the axes."""
    _check_err(err)
    _require_columns(df, (x, y, hue))
    names = list(order) if order is not None else list(dict.fromkeys(df[hue]))
    shots = sorted(df[x].unique())
    if not shots or min(shots) <= 0:
        raise ValueError(f"shot counts must be positive for a log2 axis, got {shots}")
    for k, name in enumerate(names):
        xs, mean, spread = _mean_and_spread(df[df[hue] == name], x, y, err)
        shift = (k - (len(names) - 1) / 2) * dodge
        ax.errorbar(xs * 2.0 ** shift, mean, yerr=spread,
                    marker=MARKERS[k % len(MARKERS)], markersize=5, capsize=3, linewidth=1.4,
                    linestyle=LINE_STYLES[k % len(LINE_STYLES)], label=str(name), zorder=3 + k)
    grey = ("0.45", "0.0", "0.7")
    for k, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, color=grey[k % len(grey)], linestyle=(0, (1, 1 + k)), linewidth=1.3,
                   label=str(label), zorder=2)
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [f"{s:g}" for s in shots])
    ax.minorticks_off()
    ax.set_xlim(min(shots) / 2 ** 0.4, max(shots) * 2 ** 0.4)
    ax.set_xlabel(f"{x} per class (log2 scale)" if x == "shots" else x)
    honest_ylim(ax, min_span, floor=0.0, ceiling=100.0)
    title = f"bars: {'±1 sd' if err == 'sd' else '95% CI'} over seeds"
    if legend == "outside":
        ax.legend(fontsize=7, title=title, title_fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    elif legend:
        ax.legend(fontsize=7, title=title, title_fontsize=7, loc=legend)
    return ax


def readable_ticks(ax, axis: str = "x", width: int = 10, rotation: float = 30,
                   fontsize: float | None = None):
    """Wrap long tick labels at ``width`` characters and rotate them (right-aligned), so that
    neighbouring labels never run together. Returns the axes."""
    import matplotlib.pyplot as plt
    target = ax.xaxis if axis == "x" else ax.yaxis
    plt.setp(target.get_majorticklabels(), visible=True)  # catplot hides inner panels' labels
    labels = [_wrap(t.get_text(), width) for t in target.get_ticklabels()]
    ticks = target.get_ticklocs()
    kw = {"fontsize": fontsize} if fontsize else {}
    if axis == "x":
        ax.set_xticks(ticks, labels, rotation=rotation, ha="right" if rotation else "center",
                      rotation_mode="anchor", **kw)
    else:
        ax.set_yticks(ticks, labels, rotation=rotation, **kw)
    return ax


def overlapping_ticks(ax, axis: str = "x") -> list[tuple[str, str]]:
    """Pairs of neighbouring tick labels that are drawn over each other (empty when readable).

    Unrotated labels overlap when their boxes do. Labels rotated by the same angle are
    parallel strips: two run together when the distance between their anchors, measured
    across the text, is less than the height of the text block."""
    import math
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    target = ax.xaxis if axis == "x" else ax.yaxis
    shown = [t for t in target.get_ticklabels() if t.get_visible() and t.get_text()]
    pairs = []
    for a, b in zip(shown, shown[1:]):
        angle = math.radians(a.get_rotation() % 180)
        if abs(math.sin(angle)) < 1e-6 or abs(math.cos(angle)) < 1e-6:
            if a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)):
                pairs.append((a.get_text(), b.get_text()))
            continue
        pa = a.get_transform().transform(a.get_position())
        pb = b.get_transform().transform(b.get_position())
        gap = abs((pb[0] - pa[0]) * math.sin(angle)) if axis == "x" else \
            abs((pb[1] - pa[1]) * math.cos(angle))
        lines = max(a.get_text().count("\n"), b.get_text().count("\n")) + 1
        _, h, _ = renderer.get_text_width_height_descent("Ag", a.get_fontproperties(), False)
        if gap < h * (1 + 1.2 * (lines - 1)):
            pairs.append((a.get_text(), b.get_text()))
    return pairs


def legend_misses(ax) -> list[str]:
    """Labels of the lines and error-bar containers drawn on ``ax`` that its legend (or the
    figure's legend) does not name; empty when every line is in a legend."""
    drawn = [l.get_label() for l in ax.get_lines() if not l.get_label().startswith("_")]
    drawn += [c.get_label() for c in ax.containers if not c.get_label().startswith("_")]
    named = set()
    for leg in [ax.get_legend(), *ax.figure.legends]:
        if leg is not None:
            named |= {t.get_text() for t in leg.get_texts()}
    return [d for d in drawn if d not in named]

# ---- figures-b helpers
# Used by notebooks 04-07: points with error bars over seeds, labels that do not overlap, equal
# axis ranges, images with their captions, drift arrows, heatmap cells with their spread.

def mean_sd_points(ax, frame, x: str, y: str, by, colour_of=None, marker_of=None,
                   label_of=None, size: float = 60.0):
    """One point per group of ``frame`` (its rows are seeds): the mean of ``x`` and ``y``, with
    error bars of ±1 standard deviation on both axes (none where a group has one row).

    ``by``: a column or list of columns; ``colour_of``, ``marker_of``, ``label_of``: functions
    of the group key giving the colour, marker and legend label (default: C0, "o", the key).
    Returns a DataFrame with one row per group: the key columns, x and y means and sds, n."""
    import pandas as pd
    by = [by] if isinstance(by, str) else list(by)
    _require_columns(frame, (*by, x, y))
    g = frame.groupby(by, sort=False)[[x, y]].agg(["mean", "std", "count"])
    rows = []
    for key, r in g.iterrows():
        parts = key if isinstance(key, tuple) else (key,)
        k = parts if len(by) > 1 else parts[0]  # what the caller's functions receive
        xm, ym = r[(x, "mean")], r[(y, "mean")]
        xs, ys = (0.0 if pd.isna(r[(x, "std")]) else r[(x, "std")],
                  0.0 if pd.isna(r[(y, "std")]) else r[(y, "std")])
        colour = colour_of(k) if colour_of else "C0"
        ax.errorbar(xm, ym, xerr=xs, yerr=ys, fmt="none", ecolor=colour, elinewidth=1.0,
                    capsize=2.5, alpha=0.8, zorder=2)
        ax.scatter(xm, ym, s=size, color=colour, marker=marker_of(k) if marker_of else "o",
                   edgecolor="k", linewidth=0.6, zorder=3,
                   label=label_of(k) if label_of else str(k))
        rows.append({**dict(zip(by, parts)), f"{x}_mean": xm,
                     f"{x}_sd": xs, f"{y}_mean": ym, f"{y}_sd": ys,
                     "n": int(r[(x, "count")])})
    return pd.DataFrame(rows)


def label_points(ax, x, y, labels, fontsize: float = 7, radii=(10, 18, 28, 40, 54),
                 colours=None):
    """Write ``labels`` beside the points (x, y) without the labels overlapping each other or
    covering a point: each label tries offsets on growing circles around its point (in screen
    points) and takes the first free place; a label placed away from its point gets a thin
    leader line. A small stand-in for adjustText (no new dependency). Returns the annotations."""
    import numpy as np
    from matplotlib.text import Text
    x, y, labels = np.asarray(x, float), np.asarray(y, float), [str(s) for s in labels]
    if not (len(x) == len(y) == len(labels)):
        raise ValueError(f"x, y and labels differ in length: {len(x)}, {len(y)}, {len(labels)}")
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(np.column_stack([x, y])) if len(x) else np.zeros((0, 2))
    scale = fig.dpi / 72.0
    taken = [(px - 4 * scale, py - 4 * scale, px + 4 * scale, py + 4 * scale) for px, py in pts]
    angles = np.deg2rad([30, 150, 210, 330, 90, 270, 0, 180, 60, 120, 240, 300])
    out = []
    for i in np.argsort(-pts[:, 1]) if len(pts) else []:
        text = ax.annotate(labels[i], (x[i], y[i]), xytext=(0, 0), textcoords="offset points",
                           fontsize=fontsize, color=colours[i] if colours is not None else "k",
                           ha="center", va="center", zorder=5,
                           arrowprops=dict(arrowstyle="-", lw=0.5, color="0.45", shrinkB=3))
        ext = Text.get_window_extent(text, renderer)  # the words only, not the leader line
        w, h = ext.width, ext.height
        best = None
        for r in radii:
            for a in angles:
                dx, dy = r * np.cos(a) * scale, r * np.sin(a) * scale
                cx, cy = pts[i, 0] + dx + np.sign(np.round(dx, 6)) * w / 2, pts[i, 1] + dy
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                           for b in taken):
                    best = (box, cx - pts[i, 0], cy - pts[i, 1], r)
                    break
            if best:
                break
        if best is None:  # crowded: the farthest place, overlapping if it must
            cx, cy = pts[i, 0] + radii[-1] * scale + w / 2, pts[i, 1]
            best = ((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), cx - pts[i, 0], 0.0,
                    radii[-1])
        box, ox, oy, r = best
        taken.append(box)
        text.xyann = (ox / scale, oy / scale)
        # a leader line only where the label stands away from its point
        text.arrow_patch.set_visible(bool(r > radii[0]))
        out.append(text)
    return out


def same_limits(ax, pad: float = 2.0, diagonal: bool = False):
    """Give the x and y axes the same range (the union of both data ranges, ``pad`` either
    side) and an equal aspect, so that a slope of 1 looks like one: neither accuracy is
    stretched to look larger than the other. ``diagonal`` draws y = x. Returns (low, high)."""
    import numpy as np
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    data = ax.dataLim  # what was drawn (relim would forget scatter points)
    lo = min(data.x0, data.y0) - pad
    hi = max(data.x1, data.y1) + pad
    if not np.isfinite([lo, hi]).all():
        lo, hi = min(x0, y0), max(x1, y1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    if diagonal:
        ax.plot([lo, hi], [lo, hi], color="0.7", lw=0.8, ls=":", label="y = x", zorder=1)
    return lo, hi


def captioned_grid(images, captions, ncols: int = 5, width: int = 26, scale: float = 1.9,
                   titles=None, fontsize: float = 6.5):
    """A grid of uint8 images, each with its caption wrapped (``width`` characters a line)
    beneath it and an optional bold title above (e.g. the class it was retrieved for). An image
    given as None leaves its cell empty, so that each row can hold one group. Returns the
    figure."""
    import matplotlib.pyplot as plt
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    wrapped = [_wrap(c, width) for c in captions]
    lines = max([w.count("\n") + 1 for w in wrapped] or [1])
    n = len(images)
    nrows = max(1, (n + ncols - 1) // ncols)
    cap_h = 0.13 * lines * fontsize / 6.5
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * (scale + cap_h)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, im in enumerate(images):
        if im is None:
            continue
        ax = axes.flat[i]
        ax.imshow(im)
        ax.text(0.5, -0.04, wrapped[i], transform=ax.transAxes, ha="center", va="top",
                fontsize=fontsize, linespacing=1.15)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=fontsize + 0.5, fontweight="bold", pad=2)
    fig.subplots_adjust(wspace=0.08, hspace=0.25 + cap_h / scale)
    return fig


def drift_arrows(ax, start, end, colours, labels=None, width: float = 1.2):
    """Arrows from ``start`` [N, 2] to ``end`` [N, 2] (e.g. each class's centroid in the old
    version and in an update, in one shared layout), one colour each; ``labels`` names the
    arrows at their start. Returns the arrow patches."""
    import numpy as np
    start, end = np.asarray(start, float), np.asarray(end, float)
    if start.shape != end.shape or start.ndim != 2 or start.shape[1] != 2:
        raise ValueError(f"start and end must both be [N, 2], got {start.shape}, {end.shape}")
    out = []
    for i in range(len(start)):
        out.append(ax.annotate("", end[i], xytext=start[i],
                               arrowprops=dict(arrowstyle="-|>", lw=width, color=colours[i],
                                               mutation_scale=9, shrinkA=0, shrinkB=0),
                               zorder=4))
    ax.update_datalim(np.vstack([start, end]))
    ax.autoscale_view()
    return out


def annotate_spread(ax, spread, fmt: str = "{:+.1f}", spread_fmt: str = "±{:.1f}"):
    """Rewrite the cell texts of a :func:`diverging_heatmap` on ``ax`` as the value over its
    spread (e.g. the standard deviation over seeds, a table of the heatmap's shape): "+0.8" on
    one line, "±0.3" under it. A value that rounds to zero is written without a sign, so that
    no cell reads "-0.0". Returns the texts."""
    import numpy as np
    spread = np.asarray(spread, dtype=float)
    texts = list(ax.texts)
    if len(texts) != spread.size:
        raise ValueError(f"{len(texts)} cells on the axes but a spread table of {spread.size}")
    ncols = spread.shape[1]
    for k, t in enumerate(texts):
        s = spread[k // ncols, k % ncols]
        value = t.get_text()
        try:
            v = float(value)
            value = fmt.format(v)
            if float(value) == 0:
                value = fmt.replace("+", "").format(0.0)
        except ValueError:
            pass  # "n/a": no spread either
        else:
            if np.isfinite(s):
                value += "\n" + spread_fmt.format(s)
        t.set_text(value)
        t.set_fontsize(6.5)
        t.set_linespacing(1.0)
    return texts
