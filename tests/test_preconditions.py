"""The preconditions functions on small synthetic inputs (the real numbers live in notebook 00)."""
import pathlib

import numpy as np
import pandas as pd
import pytest

from cliptune import preconditions, world


def test_check_passes_a_world_with_room():
    res = preconditions.check({"photo": 50.0, "sketch": 40.0, "painting": 44.0}, ceiling=80.0,
                              base=52.0, new=47.0, evidence=True)
    assert all(res.values())


@pytest.mark.parametrize("zs,ceiling,base,new,evidence,failing", [
    ({"photo": 90.0, "sketch": 70.0}, 120.0, 90.0, 90.0, True, "zero-shot in range"),
    ({"photo": 30.0, "sketch": 20.0}, 80.0, 30.0, 30.0, True, "zero-shot in range"),
    ({"photo": 50.0, "sketch": 40.0}, 65.0, 50.0, 50.0, True, "ceiling above zero-shot"),
    ({"photo": 50.0, "sketch": 47.0}, 80.0, 50.0, 50.0, True, "shifted domains harder"),
    ({"photo": 50.0}, 80.0, 50.0, 50.0, True, "shifted domains harder"),
    ({"photo": 50.0, "sketch": 40.0}, 80.0, 60.0, 45.0, True, "base ~ new"),
    ({"photo": 50.0, "sketch": 40.0}, 80.0, 50.0, 50.0, False, "base ~ new"),
])
def test_check_fails_exactly_the_broken_precondition(zs, ceiling, base, new, evidence, failing):
    res = preconditions.check(zs, ceiling, base, new, evidence)
    assert [k for k, ok in res.items() if not ok] == [failing]


def test_check_boundaries_are_inclusive():
    t = preconditions.Targets()
    res = preconditions.check({"photo": t.zero_shot_high, "sketch": t.zero_shot_high - 5},
                              ceiling=t.zero_shot_high + 20, base=50, new=60, evidence=True)
    assert all(res.values())


def test_check_needs_photo():
    with pytest.raises(KeyError, match="photo"):
        preconditions.check({"sketch": 40.0}, 80.0, 50.0, 50.0, True)


def test_verdicts_count_main_tasks_only():
    good = {"zs_photo": 50.0, "zs_sketch": 40.0, "ceiling": 80.0, "zs_base": 50.0,
            "zs_new": 50.0, "same_evidence": True}
    ceiling_task = {**good, "zs_photo": 100.0, "zs_sketch": 100.0, "ceiling": 100.0}
    table = pd.DataFrame([{"model": "m", "task": "a", **good}, {"model": "m", "task": "b", **good},
                          {"model": "m", "task": "c", **ceiling_task},
                          {"model": "m", "task": "d", **good}])
    checks, enough = preconditions.verdicts(table, main_tasks=("a", "b", "c"))
    assert checks.set_index("task")["all"].to_dict() == {"a": "PASS", "b": "PASS", "c": "FAIL",
                                                         "d": "PASS"}
    assert enough == {"m": False}  # d passes but is not a main task; c is at ceiling
    _, enough = preconditions.verdicts(table, main_tasks=("a", "b", "d"))
    assert enough == {"m": True}


def test_shortfalls_say_which_mark_was_missed_and_by_how_much():
    good = {"zs_photo": 50.0, "zs_sketch": 40.0, "ceiling": 80.0, "zs_base": 50.0,
            "zs_new": 50.0, "same_evidence": True}
    table = pd.DataFrame([
        {"model": "m", "task": "a", **good},
        {"model": "m", "task": "b", **good, "zs_photo": 76.4, "ceiling": 94.0},
        {"model": "m", "task": "c", **good, "zs_sketch": 47.0, "zs_base": 62.5},
        {"model": "m", "task": "d", **good, "zs_photo": 90.0}])  # not a main task
    assert preconditions.shortfalls(table, main_tasks=("a", "b", "c")) == [
        "m / b: photo zero-shot 76.4 lies outside [35, 75] by 1.4 points",
        "m / b: ceiling 94.0 is 17.6 points above zero-shot, 2.4 short of 20",
        "m / c: sketch 47.0 within 5 points of photo 50.0",
        "m / c: base 62.5 vs new 50.0, 2.5 points beyond 10"]
    assert preconditions.shortfalls(table, main_tasks=("a",)) == []


def test_gap_interval_is_the_normal_approximation_for_two_independent_sets():
    # 50% of 2500 and 40% of 2400: se = sqrt(.25/2500 + .24/2400) = sqrt(2e-4) = 1.4142%
    gap, lo, hi = preconditions.gap_interval(50.0, 2500, 40.0, 2400)
    assert gap == pytest.approx(10.0)
    assert (hi - gap) == pytest.approx(1.96 * 1.41421356, rel=1e-6)
    assert (gap - lo) == pytest.approx(hi - gap)
    # four times the images: half the width
    _, lo4, hi4 = preconditions.gap_interval(50.0, 10_000, 40.0, 9600)
    assert (hi4 - lo4) == pytest.approx((hi - lo) / 2)
    with pytest.raises(ValueError, match="positive"):
        preconditions.gap_interval(50.0, 0, 40.0, 10)


def test_shortfalls_say_whether_the_mark_lies_inside_the_test_set_noise():
    row = {"model": "m", "zs_photo": 50.0, "zs_sketch": 46.0, "ceiling": 80.0, "zs_base": 61.0,
           "zs_new": 50.0, "same_evidence": True}
    sizes = {"n_photo": 3000, "n_sketch": 3000, "n_base": 1500, "n_new": 1500}
    small = pd.DataFrame([{**row, "task": "a", **sizes}])
    # photo - sketch = 4.0 +- 2.5: the mark 5 is inside; base - new = 11.0 +- 3.5: 10 inside
    lines = preconditions.shortfalls(small, main_tasks=("a",))
    assert len(lines) == 2 and all("the mark lies inside it" in line for line in lines)
    assert "photo - sketch: gap 4.0, 95% interval over test images [1.5, 6.5]" in lines[0]
    assert "base - new: gap 11.0" in lines[1]
    # a hundred times the images: both intervals shrink below the marks' distance
    big = pd.DataFrame([{**row, "task": "a", **{k: 100 * v for k, v in sizes.items()}}])
    lines = preconditions.shortfalls(big, main_tasks=("a",))
    assert all("a miss beyond the test-set noise" in line for line in lines)


def test_probe_ceiling_chooses_c_on_validation_and_separates_separable_data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 3

    def draw(n):
        y = rng.integers(0, 4, n)
        return centres[y] + rng.normal(size=(n, 8)), y
    (xtr, ytr), (xva, yva), (xte, yte) = draw(400), draw(200), draw(200)
    out = preconditions.probe_ceiling(xtr, ytr, xva, yva, xte, yte, cs=(1e-6, 1.0))
    assert out["C"] == 1.0  # the weak-regularisation fit wins on validation
    assert out["test"] > 90.0 and out["converged"]
    with pytest.raises(ValueError, match="cs is empty"):
        preconditions.probe_ceiling(xtr, ytr, xva, yva, xte, yte, cs=())


def test_same_evidence_and_class_attributes():
    assert preconditions.class_attributes("objects")[0] == {"colour": "red", "shape": "circle"}
    assert all(preconditions.same_evidence(t) for t in world.TASKS)
    with pytest.raises(KeyError, match="unknown task"):
        preconditions.class_attributes("nope")


def test_main_tasks_are_known_and_disjoint_from_sanity_tasks():
    assert set(world.MAIN_TASKS) <= set(world.TASKS)
    assert not set(world.MAIN_TASKS) & set(world.SANITY_TASKS)
    assert len(world.MAIN_TASKS) >= preconditions.Targets().min_main_tasks


def test_test_splits_resolve_two_points():
    for spec in world.TASKS.values():
        assert spec.test_per_class * len(spec.classnames) >= 3000


def test_base_new_gaps_from_per_class_accuracies():
    runs = pd.DataFrame({"a": [100.0, 50.0], "b": [80.0, 50.0], "c": [40.0, 90.0],
                         "d": [60.0, 10.0]}, index=["r1", "r2"])
    gaps = preconditions.base_new_gaps(runs, base=("a", "b"))
    assert gaps.loc["r1", "base"] == 90.0 and gaps.loc["r1", "new"] == 50.0
    assert gaps.gap.tolist() == [40.0, 0.0]
    assert gaps.loc["r2", "class sd within new"] == pytest.approx(40.0)
    with pytest.raises(ValueError, match="some, not all"):
        preconditions.base_new_gaps(runs, base=("a", "z"))
    with pytest.raises(ValueError, match="some, not all"):
        preconditions.base_new_gaps(runs, base=("a", "b", "c", "d"))


def test_per_class_zero_shot_averages_to_the_halves_accuracy(tiny_clip):
    from cliptune import data
    per_class = preconditions.per_class_zero_shot(tiny_clip, "textures")
    assert list(per_class) == list(world.TASKS["textures"].classnames)
    base, new = data.base_new(data.tiny("textures", "test"))
    for half in (base, new):
        mean = np.mean([per_class[c] for c in half.classnames])
        assert mean == pytest.approx(preconditions.zero_shot_accuracy(tiny_clip, half), abs=1e-3)


def _sized_row(**over):
    row = {"model": "m", "task": "a", "zs_photo": 50.0, "zs_sketch": 46.0, "zs_cartoon": 40.0,
           "ceiling": 80.0, "zs_base": 50.0, "zs_new": 61.0, "same_evidence": True,
           "n_photo": 3000, "n_sketch": 3000, "n_cartoon": 3000, "n_base": 1500, "n_new": 1500}
    return {**row, **over}


def test_margins_give_each_mark_its_quantity_margin_and_interval():
    table = pd.DataFrame([_sized_row(), _sized_row(task="b", zs_photo=80.0),
                          _sized_row(task="c")])  # c: not a main task
    m = preconditions.margins(table, main_tasks=("a", "b")).set_index(["task", "mark"])
    assert len(m) == 8
    a = m.loc["a"]
    assert a.loc["zero-shot in range", ["value", "line", "margin"]].tolist() == [50.0, 35.0, 15.0]
    assert a.loc["ceiling above zero-shot", "margin"] == pytest.approx(10.0)
    assert np.isnan(a.loc["ceiling above zero-shot", "low"])  # same images: no interval
    # the smallest domain gap is the one checked; the same interval shortfalls prints
    dom = a.loc["shifted domains harder"]
    assert (dom.quantity, dom.value, dom.margin, dom.verdict) == ("photo - sketch", 4.0, -1.0, "FAIL")
    assert (dom.low, dom.high) == pytest.approx(
        preconditions.gap_interval(50.0, 3000, 46.0, 3000)[1:])
    assert dom.inside
    bn = a.loc["base ~ new"]  # new is the larger half: the interval is of new - base, positive
    assert (bn.quantity, bn.value, bn.margin) == ("new - base", 11.0, -1.0)
    assert 0 < bn.low < 11.0 < bn.high and bn.inside
    # photo 80 lies above the range: the nearer end is the line, missed by 5
    b = m.loc[("b", "zero-shot in range")]
    assert (b.line, b.margin, b.verdict) == (75.0, -5.0, "FAIL")
    assert not b.inside  # 80 +- 1.4 does not reach 75
    # the verdicts are verdicts' own
    checks, _ = preconditions.verdicts(table, main_tasks=("a", "b"))
    for _, r in checks[checks["main task"]].iterrows():
        for mark in ("zero-shot in range", "ceiling above zero-shot", "shifted domains harder",
                     "base ~ new"):
            assert m.loc[(r.task, mark), "verdict"] == r[mark]


def test_margins_without_test_set_sizes_have_no_interval():
    row = {k: v for k, v in _sized_row().items() if not k.startswith("n_")}
    m = preconditions.margins(pd.DataFrame([row]), main_tasks=("a",))
    assert m[["low", "high"]].isna().all().all() and not m.inside.any()
    assert m.margin.tolist() == [15.0, 10.0, -1.0, -1.0]
    assert m.quantity.tolist() == ["photo zero-shot", "ceiling - photo", "photo - sketch",
                                   "new - base"]


def test_run_to_run_matches_marks_and_names_the_flips():
    first = preconditions.margins(pd.DataFrame([_sized_row()]), main_tasks=("a",))
    second = preconditions.margins(pd.DataFrame([_sized_row(model="m2", zs_sketch=40.0,
                                                            zs_cartoon=44.0)]),
                                   main_tasks=("a",))
    r = preconditions.run_to_run(first, second).set_index("mark")
    dom = r.loc["shifted domains harder"]
    # the smallest gap moved from sketch to cartoon and past the mark
    assert (dom["quantity 1"], dom["quantity 2"], dom.change, dom.flips) == (
        "photo - sketch", "photo - cartoon", 2.0, True)
    halves = [(t.high - t.low).iloc[2] / 2 for t in (first, second)]
    assert dom["test noise"] == pytest.approx(np.hypot(*halves))
    assert r.flips.tolist() == [False, False, True, False]
    assert r.loc["base ~ new", "change"] == 0.0


def test_run_to_run_refuses_mixed_or_mismatched_tables():
    two = preconditions.margins(pd.DataFrame([_sized_row(), _sized_row(model="m2")]), ("a",))
    one = preconditions.margins(pd.DataFrame([_sized_row()]), ("a",))
    with pytest.raises(ValueError, match="first holds 2 models"):
        preconditions.run_to_run(two, one)
    other_task = preconditions.margins(pd.DataFrame([_sized_row(task="b")]), ("b",))
    with pytest.raises(ValueError, match="same \\(task, mark\\) rows"):
        preconditions.run_to_run(one, other_task)


def _runs(*rows_by_recipe):
    """margins() of each (recipe, row) stacked, as run_spread and pass_chance take them."""
    return pd.concat([preconditions.margins(pd.DataFrame([row]), ("a",)).assign(recipe=recipe)
                      for recipe, row in rows_by_recipe], ignore_index=True)


def test_run_spread_pools_the_deviations_of_each_recipe_from_its_own_mean():
    # recipe r: photo 50 and 54; recipe q: photo 60 and 60 -> deviations (2, 2, 0, 0), 2 df
    runs = _runs(("r", _sized_row(model="r1")), ("r", _sized_row(model="r2", zs_photo=54.0)),
                 ("q", _sized_row(model="q1", zs_photo=60.0)),
                 ("q", _sized_row(model="q2", zs_photo=60.0)))
    sp = preconditions.run_spread(runs).set_index("mark")
    zs = sp.loc["zero-shot in range"]
    assert (zs.sd, zs.df) == (pytest.approx(np.sqrt(8 / 2)), 2)
    assert zs["sd low"] < zs.sd < zs["sd high"]
    assert sp.loc["base ~ new", "sd"] == 0.0  # no run moved base or new


def test_run_spread_reads_the_base_new_gap_with_its_sign():
    # base - new = -11 in one run and +11 in the other: the signed gap moved by 22
    runs = _runs(("r", _sized_row(model="r1")),
                 ("r", _sized_row(model="r2", zs_base=61.0, zs_new=50.0)))
    sd = preconditions.run_spread(runs).set_index("mark").loc["base ~ new", "sd"]
    assert sd == pytest.approx(np.sqrt((11.0 ** 2 + 11.0 ** 2) / 1))


def test_run_spread_needs_a_recipe_column_and_a_replicate():
    one = preconditions.margins(pd.DataFrame([_sized_row()]), ("a",))
    with pytest.raises(ValueError, match="no 'recipe' column"):
        preconditions.run_spread(one)
    with pytest.raises(ValueError, match="pretrained at least twice"):
        preconditions.run_spread(one.assign(recipe="r"))


def test_pass_chance_of_a_mark_met_on_average_exactly_is_one_half():
    # two runs whose smallest domain gap is 3 and 7: the mean sits on the line of 5
    runs = _runs(("r", _sized_row(model="r1", zs_sketch=47.0)),
                 ("r", _sized_row(model="r2", zs_sketch=43.0, zs_cartoon=30.0)))
    spread = preconditions.run_spread(runs)
    per_mark, per_recipe = preconditions.pass_chance(runs, spread)
    m = per_mark.set_index("mark")
    dom = m.loc["shifted domains harder"]
    assert (dom.runs, dom["mean"], dom.chance) == (2, 5.0, pytest.approx(0.5))
    # predictive sd: the pooled sd (sqrt(8)) times sqrt(1 + 1/2)
    assert dom["predictive sd"] == pytest.approx(np.sqrt(8.0) * np.sqrt(1.5))
    assert (per_mark["chance low"] <= per_mark.chance + 1e-12).all()
    assert (per_mark.chance <= per_mark["chance high"] + 1e-12).all()
    assert per_recipe.set_index("recipe").loc["r", "chance"] == pytest.approx(
        per_mark.chance.prod())


def test_pass_chance_gives_a_recipe_of_one_run_the_pooled_spread():
    from statistics import NormalDist
    runs = _runs(("r", _sized_row(model="r1")), ("r", _sized_row(model="r2", zs_photo=54.0)),
                 ("one", _sized_row(model="o", zs_base=55.0, zs_new=55.0)))
    spread = preconditions.run_spread(runs)
    per_mark, _ = preconditions.pass_chance(runs, spread)
    o = per_mark[per_mark.recipe == "one"].set_index("mark")
    sd = np.sqrt(8.0 / 1) * np.sqrt(2.0)  # r's spread, inflated for a mean of one run
    phi = NormalDist().cdf
    assert o.loc["zero-shot in range", "chance"] == pytest.approx(
        phi((75 - 50) / sd) - phi((35 - 50) / sd))
    # base ~ new: no run moved it, so its spread is zero and a gap of 0 passes for certain
    assert o.loc["base ~ new", "chance"] == 1.0


def test_pass_chance_needs_the_spread_of_every_mark():
    runs = _runs(("r", _sized_row(model="r1")), ("r", _sized_row(model="r2", zs_photo=54.0)))
    spread = preconditions.run_spread(runs)
    with pytest.raises(ValueError, match="no sd for marks \\['base ~ new'\\]"):
        preconditions.pass_chance(runs, spread[spread.mark != "base ~ new"])


def test_base_new_best_case_is_the_chance_a_zero_gap_stays_inside_the_line():
    spread = pd.DataFrame([{"mark": "base ~ new", "sd": 10.0 / 1.959964}])
    assert preconditions.base_new_best_case(spread) == pytest.approx(0.95, abs=1e-6)


def test_clearance_puts_each_line_z_run_sds_inside_and_finds_unreachable_gaps():
    from statistics import NormalDist
    phi = NormalDist().cdf
    spread = pd.DataFrame([{"mark": "shifted domains harder", "sd": 4.0},
                           {"mark": "zero-shot in range", "sd": 3.0},
                           {"mark": "base ~ new", "sd": 2.0}])
    c = preconditions.clearance(spread, n_marks=3, joint=0.9).set_index("mark")
    z = NormalDist().inv_cdf(0.9 ** (1 / 3))
    assert c.loc["shifted domains harder", "at least"] == pytest.approx(5 + z * 4.0)
    assert c.loc["zero-shot in range", ["at least", "at most"]].tolist() == pytest.approx(
        [35 + z * 3.0, 75 - z * 3.0])
    most = c.loc["base ~ new", "at most"]
    assert 0 < most < 10
    assert phi((10 - most) / 2.0) - phi((-10 - most) / 2.0) == pytest.approx(0.9 ** (1 / 3))
    wide = preconditions.clearance(spread.assign(sd=10.0), n_marks=1, joint=0.9)
    assert not wide.set_index("mark").loc["base ~ new", "reachable"]  # 2 Phi(1) - 1 < 0.9


def test_clearance_refuses_a_chance_outside_zero_one():
    spread = pd.DataFrame([{"mark": "base ~ new", "sd": 2.0}])
    with pytest.raises(ValueError, match="joint=1.0 must lie in \\(0, 1\\)"):
        preconditions.clearance(spread, n_marks=3, joint=1.0)


def _images_of(row) -> str:
    """Which images a recorded result row evaluates, in LATER_USE's words."""
    halves = {"base", "new", "hm", "base-to-new"}
    if str(row["split"]) in halves or str(row["metric"]) in halves:
        return "base and new halves"
    return "photo" if str(row["domain"]) in ("photo", "nan") else "shifted domains"


def test_later_use_covers_every_evaluation_in_the_committed_results():
    root = pathlib.Path(__file__).resolve().parent.parent / "results"
    frames = [pd.read_csv(f, usecols=["experiment", "dataset", "eval_model", "split", "domain",
                                      "metric"]).drop_duplicates()
              for f in sorted(root.glob("0[1-7]_*/*.csv"))]
    assert frames, "no committed results under results/"
    rows = pd.concat(frames)
    rows = rows[rows.dataset.isin(world.MAIN_TASKS) & rows.eval_model.str.startswith("tiny-")]
    rows = rows.assign(nb=rows.experiment.str[:2], images=rows.apply(_images_of, axis=1))
    missing = [(nb, m, t, i) for nb, m, t, i in
               rows[["nb", "eval_model", "dataset", "images"]].drop_duplicates().itertuples(
                   index=False)
               if not any(u.split()[0] == nb for u in preconditions.later_use(m, t, i))]
    assert not missing, f"add these to preconditions.LATER_USE: {missing}"


def test_later_use_lists_notebooks_in_order_and_refuses_unknown_images():
    assert preconditions.later_use("tiny-v1", "objects", "photo")[0].startswith("01 ")
    uses = preconditions.later_use("tiny-v1", "objects", "photo")
    assert [u.split()[0] for u in uses] == sorted(u.split()[0] for u in uses)
    assert preconditions.later_use("tiny-v2-validation", "objects", "photo") == []
    with pytest.raises(ValueError, match="images='sketch': use one of"):
        preconditions.later_use("tiny-v1", "objects", "sketch")
