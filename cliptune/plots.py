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
