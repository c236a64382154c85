import numpy as np
import pytest

from cliptune import convergence


def _hist(loss):
    return {"step": list(range(len(loss))), "loss": list(loss), "lr": [1e-3] * len(loss)}


def test_a_plateau_is_converged_and_a_falling_loss_is_not():
    steps = np.arange(400)
    rng = np.random.default_rng(0)
    flat = 0.5 + 2.0 * np.exp(-steps / 30) + 0.01 * rng.standard_normal(400)
    falling = 3.0 - 0.005 * steps
    s = convergence.summarise(_hist(flat))
    assert s["converged"] and s["steps"] == 400
    assert s["final_loss"] == pytest.approx(0.5, abs=0.01)
    f = convergence.summarise(_hist(falling))
    assert not f["converged"] and f["note"] == "still falling"
    # the loss falls by 0.2 over the last 40 steps, from about 1.1: about -18%
    assert f["rel_change"] == pytest.approx(-0.005 * 40 / falling[-40:].mean(), rel=0.05)


def test_too_short_runs_are_flagged():
    s = convergence.summarise(_hist([2.0, 1.9, 1.9, 1.9]))
    assert not s["converged"] and "too short" in s["note"]
    assert not convergence.summarise({})["converged"]


def test_table_and_report_flag_unconverged_runs(capsys):
    steps = np.arange(200)
    hists = {("shapes", "coop", 1): _hist(1 + np.exp(-steps / 10)),
             ("shapes", "coop", 2): _hist(3 - 0.01 * steps)}
    df = convergence.report(hists, title="02 base-to-new")
    out = capsys.readouterr().out
    assert df.converged.tolist() == [True, False]
    assert "UNCONVERGED: 1 of 2" in out and "shapes / coop / 2" in out


def test_tail_by_summed_learning_rate():
    # a cosine schedule: the last 10% of steps has almost no learning rate, the last 10%
    # of summed learning rate is a longer window
    n = 200
    lr = 0.5 * (1 + np.cos(np.pi * np.arange(n) / n))
    loss = 3 - np.cumsum(lr) / lr.sum() * 2
    by_steps = convergence.summarise({"loss": loss, "lr": lr})
    by_lr = convergence.summarise({"loss": loss, "lr": lr}, by="lr")
    assert abs(by_lr["rel_change"]) > abs(by_steps["rel_change"])
    with pytest.raises(ValueError, match="by="):
        convergence.summarise({"loss": loss}, by="epochs")


def test_the_full_set_objective_decides_when_recorded():
    noisy = {"loss": list(np.random.default_rng(0).normal(1.0, 0.3, 200))}
    flat = {**noisy, "objective": [0.500, 0.495]}  # 1% change: a plateau despite noisy batches
    falling = {**noisy, "objective": [0.60, 0.50]}
    a, b = convergence.summarise(flat), convergence.summarise(falling)
    assert a["converged"] and a["measure"] == "objective" and a["final_loss"] == 0.495
    assert not b["converged"] and b["note"] == "still falling"
    assert b["rel_change"] == pytest.approx(-0.2)


def test_a_loss_near_zero_plateaus_by_its_absolute_fall():
    # 0.0040 -> 0.0030 is a third of the final loss but 0.001 nats, and 0.1% of the whole fall
    fitted = convergence.summarise({"loss": [0.1] * 400, "objective": [1.2, 0.0040, 0.0030]})
    assert fitted["converged"] and fitted["rel_change"] == pytest.approx(-1 / 3)
    # the same relative fall at 0.03 nats is a run still fitting
    fitting = convergence.summarise({"loss": [0.1] * 400, "objective": [1.2, 0.12, 0.09]})
    assert not fitting["converged"] and fitting["note"] == "still falling"


def test_a_diverged_run_is_flagged_as_such():
    out = convergence.summarise({"loss": [1.0, float("nan")], "diverged_at": 1,
                                 "objective": [1.0, float("nan")]})
    assert not out["converged"] and out["note"].startswith("diverged")


def test_a_run_still_in_its_linear_regime_is_flagged_however_flat_its_tail():
    # 4 slow steps: the tail moved the objective by 0.1% only, but that is a quarter of the
    # whole (tiny) fall: far from a plateau
    slow = convergence.summarise({"loss": [0.86] * 4, "objective": [0.8620, 0.8610, 0.8600]})
    assert not slow["converged"] and slow["tail_share"] == pytest.approx(0.5)
    assert slow["note"].startswith("still falling")
    done = convergence.summarise({"loss": [0.7] * 400, "objective": [1.10, 0.7263, 0.7250]})
    assert done["converged"] and done["tail_share"] < 0.01
    stuck = convergence.summarise({"loss": [1.0] * 10, "objective": [1.0, 1.0, 1.0]})
    assert not stuck["converged"] and stuck["note"].startswith("no progress")


def test_a_run_on_its_papers_recipe_is_valid_without_a_plateau(capsys):
    steps = np.arange(200)
    falling = _hist(3 - 0.01 * steps)
    hists = {"own schedule": falling, "paper recipe": {**falling, "paper_recipe": "MaPLe"}}
    df = convergence.report(hists)
    out = capsys.readouterr().out
    assert df.converged.tolist() == [False, False]
    assert df.schedule.tolist() == ["own", "paper recipe"] and df.ok.tolist() == [False, True]
    assert "UNCONVERGED: 1 of 2 runs (own schedule)" in out
    assert "1 of 2 runs follow their paper's recipe" in out


def test_summary_counts_recipes_plateaus_and_unconverged():
    steps = np.arange(200)
    flat, falling = _hist(1 + 0 * steps), _hist(3 - 0.01 * steps)
    df = convergence.table({"a": flat, "b": falling, "c": {**falling, "paper_recipe": "CoOp"}})
    assert convergence.summary(df, "runs") == ("runs: 1 of 3 on their paper's recipe, "
                                               "1 of 3 at a plateau, 1 unconverged")


def test_runs_of_picks_the_runs_of_the_named_methods_only():
    steps = np.arange(200)
    flat, falling = _hist(1 + 0 * steps), _hist(3 - 0.01 * steps)
    df = convergence.table({("FT", 1): flat, ("FT", 2): flat, ("ARF (reconstructed)", 1): falling,
                            ("LP-FT", 1): flat})
    assert list(convergence.runs_of(df, "FT").run) == ["FT / 1", "FT / 2"]
    # the unconverged ARF run counts against ARF's comparisons, not against FT vs LP-FT
    assert convergence.summary(convergence.runs_of(df, "LP-FT", "FT")).endswith("0 unconverged")
    assert convergence.summary(convergence.runs_of(df, "ARF (reconstructed)", "FT")).endswith(
        "1 unconverged")
    assert convergence.runs_of(df, "zero-shot").empty


def test_summary_of_no_runs_says_so():
    df = convergence.table({("FT", 1): _hist(1 + 0 * np.arange(50))})
    assert convergence.summary(convergence.runs_of(df, "probe"), "runs of probe") == \
        "runs of probe: no training history recorded"


def test_summary_of_names_the_compared_methods_and_counts_only_their_runs():
    steps = np.arange(200)
    flat, falling = _hist(1 + 0 * steps), _hist(3 - 0.01 * steps)
    df = convergence.table({("FT", 1): flat, ("LP-FT", 1): flat, ("ARF", 1): falling})
    assert convergence.summary_of(df, "LP-FT", "FT") == (
        "runs of LP-FT and FT: 0 of 2 on their paper's recipe, 2 of 2 at a plateau, 0 unconverged")
    assert convergence.summary_of(df, "ARF", what="base-to-new runs of").startswith(
        "base-to-new runs of ARF: 0 of 1")
    assert convergence.summary_of(df, "probe").endswith("no training history recorded")


def _objective_run(obj):
    """A run of 400 steps whose full-set objective was [at step 0, at the tail's start, at the
    end] = ``obj``."""
    return {"loss": [obj[-1]] * 400, "lr": [1e-3] * 400, "objective": list(obj)}


def test_a_slightly_rising_objective_is_converged_with_a_note():
    flat = convergence.summarise(_objective_run([1.2, 0.500, 0.500]))
    rising = convergence.summarise(_objective_run([1.2, 0.500, 0.505]))  # +1%: under 2%
    falling = convergence.summarise(_objective_run([1.2, 0.600, 0.500]))  # -20%
    assert flat["converged"] and flat["note"] == ""
    assert rising["converged"] and rising["note"] == convergence.RISING == "rising slightly"
    assert rising["rel_change"] == pytest.approx(0.005 / 0.505)
    assert not falling["converged"] and falling["note"].startswith("still falling")
    # a rise near a loss of 0: a third of the final loss, but 0.001 nats
    assert convergence.summarise(_objective_run([1.2, 0.0030, 0.0040]))["note"] == "rising slightly"
    # float rounding is not a rise
    assert convergence.summarise(_objective_run([1.2, 0.5, 0.5 + 1e-9]))["note"] == ""


def test_report_names_the_slightly_rising_runs(capsys):
    hists = {("a", 1): _objective_run([1.2, 0.500, 0.500]),
             ("b", 1): _objective_run([1.2, 0.500, 0.505]),
             ("c", 1): _objective_run([1.2, 0.600, 0.500])}
    df = convergence.report(hists, title="synthetic")
    out = capsys.readouterr().out
    assert df.converged.tolist() == [True, True, False]
    assert "rising slightly: 1 of 3 runs (b / 1)" in out
    assert "UNCONVERGED: 1 of 3 runs (c / 1)" in out
    convergence.report({("a", 1): hists["a", 1]})
    out = capsys.readouterr().out
    assert "rising slightly" not in out and "all 1 runs converged" in out
    # the lines under the table, on their own (for notebooks that print their own table)
    assert convergence.verdicts(df)[0].startswith("rising slightly: 1 of 3")


def test_caveat_names_the_unconverged_runs_behind_a_comparison():
    df = convergence.table({("ARF", 1): _objective_run([1.2, 0.600, 0.500]),
                            ("default", 1): _objective_run([1.2, 0.500, 0.500])})
    assert convergence.caveat(convergence.runs_of(df, "default")) == ""
    text = convergence.caveat(convergence.runs_of(df, "ARF", "default"), "ARF vs default")
    assert text.startswith("UNCONVERGED runs behind ARF vs default: 1 of 2 (ARF / 1)")


def test_for_comparisons_gives_each_comparison_its_runs_summary_and_caveat():
    df = convergence.table({("no anchors", 1): _objective_run([1.2, 0.600, 0.500]),
                            ("no captions", 1): _objective_run([1.2, 0.500, 0.500]),
                            ("default", 1): _objective_run([1.2, 0.500, 0.500])})
    summaries, caveats = convergence.for_comparisons(
        df, [("default", None), ("no anchors", "default"), ("no captions", "default")])
    assert summaries[0] == ("runs of default: 0 of 1 on their paper's recipe, 1 of 1 at a "
                            "plateau, 0 unconverged")
    assert summaries[1].startswith("runs of no anchors and default:")
    assert summaries[1].endswith("1 unconverged") and summaries[2].endswith("0 unconverged")
    assert caveats == ["UNCONVERGED runs behind no anchors vs default: 1 of 2 (no anchors / 1): "
                       "it compares training budgets, not methods"]
    # a row of one name compares nothing: summarised, not flagged (its comparisons are)
    alone, flags = convergence.for_comparisons(df, [("no anchors", "no anchors")])
    assert alone[0].endswith("1 unconverged") and flags == []


def test_summary_counts_the_slightly_rising_runs_among_the_plateaus():
    hists = {("a", 1): _objective_run([1.2, 0.500, 0.500]),
             ("b", 1): _objective_run([1.2, 0.500, 0.505])}
    df = convergence.table(hists)
    assert convergence.summary(df, "runs") == ("runs: 0 of 2 on their paper's recipe, 2 of 2 at "
                                               "a plateau (1 of them rising slightly), 0 "
                                               "unconverged")
    # without a rising run the sentence stays as it was
    assert "rising" not in convergence.summary(convergence.runs_of(df, "a"), "runs")
