import numpy as np
import pytest

from cliptune import compare, results


def _pair(n, pa, pb, rng):
    return rng.random(n) < pa, rng.random(n) < pb


def test_interval_matches_the_normal_approximation():
    # one seed: the bootstrap over images is the paired-difference CI, whose normal
    # approximation is mean(d) +- 1.96 sd(d) / sqrt(n) with d = a - b per image
    rng = np.random.default_rng(0)
    a, b = _pair(2000, 0.7, 0.6, rng)
    c = compare.paired_difference({1: a}, {1: b}, n_boot=4000)
    d = a.astype(float) - b
    exact = 100 * d.mean()
    half = 100 * 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    assert c.difference == pytest.approx(exact)
    assert c.high - c.low == pytest.approx(2 * half, rel=0.08)
    assert (c.low + c.high) / 2 == pytest.approx(exact, abs=0.2 * half)
    assert c.verdict == "better" and c.n_seeds == 1 and c.n_images == 2000


def test_coverage_of_a_known_difference():
    # a's accuracy is 5 points above b's by construction; the 95% interval should hold it
    # in about 95% of repetitions
    rng = np.random.default_rng(1)
    hits, reps = 0, 150
    for r in range(reps):
        a, b = _pair(400, 0.65, 0.60, rng)
        c = compare.paired_difference({1: a}, {1: b}, n_boot=400, seed=r)
        hits += c.low <= 5.0 <= c.high
    assert 0.88 <= hits / reps <= 0.99


def test_identical_methods_show_no_difference():
    rng = np.random.default_rng(2)
    v = {s: rng.random(300) < 0.5 for s in (1, 2, 3)}
    c = compare.paired_difference(v, dict(v))
    assert c.difference == 0 and c.low == 0 and c.high == 0
    assert c.verdict == "no detectable difference"


def test_large_gap_is_better_and_reversed_is_worse():
    rng = np.random.default_rng(3)
    good = {s: rng.random(300) < 0.9 for s in (1, 2, 3)}
    bad = {s: rng.random(300) < 0.3 for s in (1, 2, 3)}
    assert compare.paired_difference(good, bad).verdict == "better"
    assert compare.paired_difference(bad, good).verdict == "worse"


def test_seed_spread_widens_the_interval():
    # the same images, but one seed of a is far off: resampling seeds must show it
    rng = np.random.default_rng(4)
    b = {s: rng.random(500) < 0.6 for s in (1, 2, 3)}
    steady = {s: b[s].copy() for s in b}
    for s in steady:
        steady[s][:25] = True  # about +2 points on every seed
    wild = {1: b[1].copy(), 2: b[2].copy(), 3: np.ones(500, bool)}
    w_steady = compare.paired_difference(steady, b)
    w_wild = compare.paired_difference(wild, b)
    assert (w_wild.high - w_wild.low) > 3 * (w_steady.high - w_steady.low)


def test_harmonic_mean_and_pooling_over_tasks():
    rng = np.random.default_rng(5)
    base, new = rng.random(400) < 0.8, rng.random(400) < 0.6
    worse_new = new & (rng.random(400) < 0.5)
    c = compare.paired_difference({1: (base, new)}, {1: (base, worse_new)}, metric="hm")
    hm = lambda x, y: 200 * x * y / (x + y)  # noqa: E731
    assert c.difference == pytest.approx(hm(base.mean(), new.mean()) -
                                         hm(base.mean(), worse_new.mean()))
    assert c.verdict == "better"
    # pooled: the mean over tasks of the per-task differences
    a = {"t1": {1: base}, "t2": {1: new}}
    b = {"t1": {1: base}, "t2": {1: worse_new}}
    pooled = compare.paired_difference(a, b)
    assert pooled.difference == pytest.approx(100 * (new.mean() - worse_new.mean()) / 2)
    assert pooled.n_tasks == 2


def test_a_single_seed_side_is_reused_for_every_seed():
    rng = np.random.default_rng(6)
    zs = rng.random(200) < 0.5
    trained = {s: rng.random(200) < 0.9 for s in (1, 2, 3)}
    c = compare.paired_difference(trained, {0: zs})
    assert c.n_seeds == 3 and c.verdict == "better"


def test_errors_name_the_input():
    v = np.ones(10, bool)
    with pytest.raises(ValueError, match="different seeds"):
        compare.paired_difference({1: v, 2: v}, {1: v, 3: v})
    with pytest.raises(ValueError, match="same images"):
        compare.paired_difference({1: v}, {1: np.ones(11, bool)})
    with pytest.raises(ValueError, match="different tasks"):
        compare.paired_difference({"x": {1: v}}, {"y": {1: v}})
    with pytest.raises(ValueError, match="unknown metric"):
        compare.paired_difference({1: v}, {1: v}, metric="f1")
    with pytest.raises(ValueError, match="2 vector"):
        compare.paired_difference({1: v}, {1: v}, metric="hm")


def test_vectors_round_trip_through_the_results_store(tmp_path):
    rng = np.random.default_rng(7)
    rows = []
    truth = {}
    for method, p in (("coop", 0.8), ("zero-shot", 0.5)):
        for seed in (1, 2, 3):
            for split in ("base", "new"):
                vec = rng.random(50) < p
                truth[method, seed, split] = vec
                rows.append({"method": method, "dataset": "shapes", "seed": seed,
                             "split": split, "eval_model": "v1", "metric": "top1",
                             "value": 100 * vec.mean(), "correct": vec})
    results.record("exp", {"run": 1}, rows, root=tmp_path)
    df = results.load("exp", root=tmp_path, correct=True)
    got = compare.vectors(df, "coop", ("base", "new"))
    assert np.array_equal(got["shapes"][2][1], truth["coop", 2, "new"])
    c = compare.compare_methods(df, "coop", "zero-shot", metric="hm", eval_model="v1")
    assert c.n_seeds == 3 and c.a == "coop" and c.unit == "task"
    with pytest.raises(ValueError, match="correct=True"):
        compare.vectors(results.load("exp", root=tmp_path), "coop")
    with pytest.raises(ValueError, match="no stored rows"):
        compare.vectors(df, "maple")
    assert "verdict" in compare.table([c]).columns


def test_rows_without_vectors_outside_the_parts_are_ignored(tmp_path):
    vec = np.array([True, False])
    rows = [{"method": m, "dataset": "t", "seed": 1, "split": split, "metric": "top1",
             "value": 50.0, **({"correct": vec} if split != "hm" else {})}
            for m in ("a", "b") for split in ("base", "new", "hm")]
    results.record("exp", {"run": 1}, rows, root=tmp_path)
    df = results.load("exp", root=tmp_path, correct=True)
    assert compare.compare_methods(df, "a", "b", metric="hm").difference == 0


def test_one_seed_against_zero_shot_seed_zero():
    v = np.ones(20, bool)
    assert compare.paired_difference({1: v}, {0: ~v}).verdict == "better"


def test_each_pooled_task_keeps_its_own_difference_and_the_split_is_flagged():
    # t1: a is far better; t2: a is far worse; the pooled mean hides the disagreement
    rng = np.random.default_rng(8)
    lo, hi = ({s: rng.random(600) < p for s in (1, 2, 3)} for p in (0.3, 0.9))
    c = compare.paired_difference({"t1": hi, "t2": lo}, {"t1": lo, "t2": hi}, unit="domain")
    assert set(c.per_task) == {"t1", "t2"} and c.unit == "domain"
    d1, low1, high1 = c.per_task["t1"]
    assert d1 == pytest.approx(100 * (np.mean([hi[s].mean() for s in hi]) -
                                      np.mean([lo[s].mean() for s in lo])))
    assert low1 > 0 and c.per_task["t2"][2] < 0
    assert c.difference == pytest.approx((d1 + c.per_task["t2"][0]) / 2)
    assert c.split()
    assert c.per_task_text().startswith("t1 +")
    # two tasks that agree are not a split; a single task has no per-task entry
    same = compare.paired_difference({"t1": hi, "t2": hi}, {"t1": lo, "t2": lo})
    assert same.verdict == "better" and not same.split()
    assert compare.paired_difference(hi, lo).per_task == {}


def test_pooling_over_domains_names_the_unit(tmp_path):
    rng = np.random.default_rng(9)
    rows = [{"method": m, "dataset": "textures", "domain": d, "seed": seed, "split": "test",
             "metric": "top1", "value": 0.0, "correct": rng.random(40) < p}
            for m, p in (("ft", 0.7), ("zero-shot", 0.4)) for d in ("sketch", "cartoon")
            for seed in (1, 2)]
    results.record("exp", {"run": 2}, rows, root=tmp_path)
    df = results.load("exp", root=tmp_path, correct=True)
    c = compare.compare_methods(df, "ft", "zero-shot", task_column="domain",
                                tasks=("sketch", "cartoon"), dataset="textures")
    assert c.unit == "domain" and set(c.per_task) == {"sketch", "cartoon"}
