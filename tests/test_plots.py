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

# ---- figures-b helpers
def test_mean_sd_points_draws_mean_and_sd_per_group():
    import matplotlib.pyplot as plt
    df = pd.DataFrame({"m": ["a", "a", "a", "b"], "x": [1.0, 2.0, 3.0, 5.0],
                       "y": [10.0, 20.0, 30.0, 7.0]})
    _, ax = plt.subplots()
    out = plots.mean_sd_points(ax, df, "x", "y", "m").set_index("m")
    assert out.loc["a", "x_mean"] == 2.0 and out.loc["a", "y_sd"] == pytest.approx(10.0)
    assert out.loc["b", "x_sd"] == 0.0 and out.loc["b", "n"] == 1  # one seed: no bar, no NaN
    assert [t.get_text() for t in ax.legend().get_texts()] == ["a", "b"]
    plt.close("all")
    with pytest.raises(ValueError, match="not in the frame"):
        plots.mean_sd_points(ax, df, "x", "z", "m")


def test_label_points_keeps_labels_apart():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 3))
    x, y = np.zeros(6), np.linspace(0, 0.05, 6)  # six points almost on top of each other
    ax.scatter(x, y)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    texts = plots.label_points(ax, x, y, [f"label {i}" for i in range(6)])
    fig.canvas.draw()
    from matplotlib.text import Text
    boxes = [Text.get_window_extent(t) for t in texts]  # the words, without leader lines
    assert len(boxes) == 6
    for i in range(6):
        for j in range(i + 1, 6):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
    assert any(t.arrow_patch.get_visible() for t in texts)  # the far ones point back
    plt.close("all")
    with pytest.raises(ValueError, match="length"):
        plots.label_points(ax, [0, 1], [0], ["a", "b"])


def test_same_limits_gives_both_axes_one_range():
    import matplotlib.pyplot as plt
    _, ax = plt.subplots()
    ax.scatter([35, 60], [30, 37])
    lo, hi = plots.same_limits(ax, pad=2)
    assert ax.get_xlim() == ax.get_ylim() == (lo, hi) == (28, 62)
    plt.close("all")


def test_captioned_grid_writes_each_caption_wrapped_under_its_image():
    import matplotlib.pyplot as plt
    images = np.zeros((3, 8, 8, 3), np.uint8)
    caps = ["a photo of a striped pattern on a very long caption line", "b", "c"]
    fig = plots.captioned_grid(images, caps, ncols=2, width=20, titles=["x", "y", "z"])
    written = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert written[0].count("\n") >= 2 and written[0].replace("\n", " ") == caps[0]
    assert written[1:] == ["b", "c"]
    assert [ax.get_title() for ax in fig.axes[:3]] == ["x", "y", "z"]
    plt.close("all")
    with pytest.raises(ValueError, match="captions"):
        plots.captioned_grid(images, caps[:2])


def test_drift_arrows_run_from_start_to_end():
    import matplotlib.pyplot as plt
    _, ax = plt.subplots()
    arrows = plots.drift_arrows(ax, [[0, 0], [1, 1]], [[2, 0], [1, 3]], ["r", "b"])
    assert [a.xyann for a in arrows] == [(0, 0), (1, 1)] and arrows[1].xy == (1, 3)
    assert ax.get_ylim()[1] >= 3  # the heads are inside the axes
    plt.close("all")
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        plots.drift_arrows(ax, [[0, 0]], [[1, 1], [2, 2]], ["r"])


def test_annotate_spread_writes_value_over_spread_and_no_negative_zero():
    import matplotlib.pyplot as plt
    table = pd.DataFrame([[0.8, -0.04], [np.nan, -12.0]], columns=["u", "v"])
    ax = plots.diverging_heatmap(table, limit=10)
    plots.annotate_spread(ax, [[0.3, 0.1], [np.nan, np.nan]])
    assert [t.get_text() for t in ax.texts] == ["+0.8\n±0.3", "0.0\n±0.1", "n/a", "-12.0"]
    plt.close("all")
    with pytest.raises(ValueError, match="cells"):
        plots.annotate_spread(plots.diverging_heatmap(table), [[1.0]])


def test_procrustes_align_undoes_a_rotation_only():
    from cliptune import analysis
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    a, b = analysis.procrustes_align(x, x @ q + 3.0)  # rotated and shifted: same geometry
    assert np.allclose(a, b)
    a, b = analysis.procrustes_align(x, 2 * x @ q)  # a scale is drift, not undone
    assert np.allclose(b, 2 * a)
    with pytest.raises(ValueError, match="shape"):
        analysis.procrustes_align(x, x[:10])


def test_captioned_grid_leaves_a_cell_empty_for_none():
    import matplotlib.pyplot as plt
    images = [np.zeros((4, 4, 3), np.uint8), None, np.zeros((4, 4, 3), np.uint8)]
    fig = plots.captioned_grid(images, ["a", "", "c"], ncols=3)
    assert [len(ax.images) for ax in fig.axes] == [1, 0, 1]
    plt.close("all")
