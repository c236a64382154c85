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


# ---- figures-a helpers

def _curve_frame():
    rows = []
    for shots, base in ((1, 40.0), (2, 50.0), (4, 55.0), (8, 60.0), (16, 62.0)):
        for seed, noise in ((1, -1.0), (2, 0.0), (3, 1.0)):
            rows.append({"method": "linear-probe", "shots": shots, "seed": seed,
                         "value": base + noise})
            rows.append({"method": "coop", "shots": shots, "seed": seed,
                         "value": 65.0 + 0.1 * noise})
    return pd.DataFrame(rows)


def test_shot_curves_log2_ticks_errorbars_references_in_legend():
    import matplotlib.pyplot as plt
    _, ax = plt.subplots()
    plots.shot_curves(ax, _curve_frame(), references={"zero-shot": 64.0})
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == [1, 2, 4, 8, 16]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8", "16"]
    # one error-bar container per method, each with bars over the seeds (nonzero sd)
    bars = [c for c in ax.containers if c.has_yerr]
    assert [c.get_label() for c in bars] == ["linear-probe", "coop"]
    segs = bars[0].lines[2][0].get_segments()
    assert len(segs) == 5 and all(abs(s[1][1] - s[0][1]) > 1.0 for s in segs)
    assert plots.legend_misses(ax) == []
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "zero-shot" in names and "coop" in names
    # different methods do not share a line style and marker
    styles = {(c.lines[0].get_linestyle(), c.lines[0].get_marker()) for c in bars}
    assert len(styles) == 2
    plt.close("all")


def test_shot_curves_does_not_blow_up_small_differences():
    import matplotlib.pyplot as plt
    df = _curve_frame()
    _, ax = plt.subplots()
    plots.shot_curves(ax, df[df.method == "coop"], min_span=10)
    lo, hi = ax.get_ylim()
    assert hi - lo >= 10 - 1e-9 and lo <= 64.9 and hi >= 65.1
    plt.close("all")
    with pytest.raises(ValueError, match="positive"):
        plots.shot_curves(plt.subplots()[1], df.assign(shots=0))


def test_honest_ylim_respects_bounds_and_keeps_wide_ranges():
    import matplotlib.pyplot as plt
    _, ax = plt.subplots()
    ax.set_ylim(99.0, 99.5)
    assert plots.honest_ylim(ax, 10, floor=0, ceiling=100) == (90.0, 100.0)
    ax.set_ylim(0, 50)
    assert plots.honest_ylim(ax, 10) == (0, 50)
    plt.close("all")


def test_legend_misses_finds_an_unnamed_line():
    import matplotlib.pyplot as plt
    _, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a")
    ax.plot([0, 1], [1, 0], label="b")
    ax.legend(handles=ax.get_lines()[:1])
    assert plots.legend_misses(ax) == ["b"]
    plt.close("all")


def test_distinct_lines_keeps_overlapping_lines_apart():
    import matplotlib.pyplot as plt
    x = np.arange(100)
    _, ax = plt.subplots()
    plots.distinct_lines(ax, {"v1": (x, x * 0.0), "v2": (x, x * 0.0), "v3": (x, x * 0.0)})
    lines = ax.get_lines()
    assert plots.legend_misses(ax) == []
    assert len({(l.get_linestyle(), l.get_marker()) for l in lines}) == 3
    # identical curves: the markers fall at different steps, so each line shows its own
    starts = {l.get_markevery()[0] for l in lines}
    assert len(starts) == 3
    plt.close("all")


def test_readable_ticks_stop_labels_running_together():
    import matplotlib.pyplot as plt
    names = ["photograph", "sketchbook", "cartoonish", "paintings", "cluttered scene"]
    _, ax = plt.subplots(figsize=(4.0, 2.0))
    ax.bar(range(5), [1] * 5)
    ax.set_xticks(range(5), names)
    assert plots.overlapping_ticks(ax)  # crowded: the check can fail
    plots.readable_ticks(ax, rotation=35)
    assert plots.overlapping_ticks(ax) == []
    assert all(t.get_rotation() == 35 for t in ax.get_xticklabels())
    plt.close("all")
