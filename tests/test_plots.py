import matplotlib
import numpy as np
import pandas as pd
import pytest

from cliptune import plots

matplotlib.use("Agg")


def test_diverging_heatmap_is_centred_clipped_and_annotated():
    import matplotlib.pyplot as plt
    table = pd.DataFrame([[1.0, -47.5], [np.nan, 3.2]], index=["coop", "clip-adapter"],
                         columns=["tiny-v2-continued", "tiny-v2-retrained"])
    ax = plots.diverging_heatmap(table, limit=10)
    im = ax.images[0]
    assert im.norm.vmin == -10 and im.norm.vmax == 10
    texts = [t.get_text() for t in ax.texts]
    assert "-47.5" in texts and "n/a" in texts and "+3.2" in texts
    label = ax.figure.axes[-1].get_ylabel()
    assert "±10" in label and "clipped" in label
    plt.close("all")
    with pytest.raises(ValueError, match="2-D"):
        plots.diverging_heatmap(pd.DataFrame())


def test_lines_with_errorbars_names_every_line():
    import matplotlib.pyplot as plt
    df = pd.DataFrame({"shots": [1, 1, 2, 2] * 2, "acc": [50, 52, 60, 61, 40, 41, 45, 47],
                       "method": ["CoOp"] * 4 + ["zero-shot"] * 4})
    ax = plots.lines_with_errorbars(df, "shots", "acc", "method")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["CoOp", "zero-shot"]
    plt.close("all")
    with pytest.raises(ValueError, match="not in the frame"):
        plots.lines_with_errorbars(df, "epochs", "acc", "method")
