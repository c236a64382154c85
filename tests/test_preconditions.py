"""The preconditions functions on small synthetic inputs (the real numbers live in notebook 00)."""
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
