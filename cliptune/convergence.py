"""Did a training run reach a plateau? The convergence table every training notebook prints.

Introduced in notebook 02. ``train.fit`` returns (and saves beside the checkpoint) a history
with the training loss of every step; this module summarises it:

- with the full-set objective that ``train.fit`` records (the training loss over the whole
  training set, un-augmented, at the start of the last 10% of the summed learning rate and at
  the end): ``final_loss`` is its final value and ``rel_change`` its change over that tail,
  relative to the final value. It has no batch noise, so a 2% change is a real change. With
  the objective before the first step too, ``tail_share`` is the tail's share of the run's
  whole fall: a run still in its linear regime (small steps, far from a plateau) makes about
  10% of its progress in the last 10% of its summed learning rate however flat that tail
  looks, so a share above ``TAIL_SHARE`` (5%) is flagged as well;
- for older histories without it, the batch losses: ``final_loss`` is their mean over the last
  10% of steps (the tail), since single-batch losses are noisy;
- ``rel_change``: how much the loss still moved during the tail, relative to the final loss:
  the least-squares slope of loss against step over the tail, times the tail's length, divided
  by ``final_loss``. Negative = still falling. A slope is used rather than last-minus-first
  because it averages the batch noise over the whole tail;
- ``converged``: ``|rel_change| <= THRESHOLD`` (2%) and the tail holds at least ``MIN_TAIL``
  (5) steps. A run of fewer than 50 steps has too short a tail to tell and is flagged. With
  the full-set objective, a fall over the tail below ``ABS_TOL`` (0.005 nats) counts as a
  plateau too, since a loss near 0 makes any relative change large (the tail-share rule still
  applies);
- ``note``: why a run is flagged, or, for a converged run whose full-set objective ROSE over
  the tail (by more than float rounding, ``RISE_FLOOR``, and less than the threshold),
  "rising slightly": counted as converged, but a rise is not a plateau reached from above (a
  learning rate that ends too high, or a regulariser pulling against the loss), so ``report``
  names such runs. Batch losses get no such note: their fitted slope moves with batch noise.

A run that follows its paper's published recipe unchanged (``train.paper_config``; the history
then holds ``paper_recipe``) needs no plateau: the issue's rule is "the paper's recipe, or a
schedule shown to reach a plateau". Such a run is listed as ``schedule = "paper recipe"`` and
counts as valid even where its training loss still falls (e.g. a prompt memorising 80
images); ``ok`` is the column a comparison checks.

A caveat the table cannot remove: under a cosine schedule the learning rate in the last 10% of
steps is at most a few percent of its peak, so the loss flattens there even when the run
stopped far from a plateau. ``by="lr"`` takes the tail as the last 10% of the *summed learning
rate* instead, which is the stricter test for such schedules.
"""
from __future__ import annotations

import numpy as np

THRESHOLD = 0.02  # |relative change of the loss over the tail| below which a run has plateaued
TAIL = 0.10  # the fraction of steps (or of summed learning rate) that makes the tail
MIN_TAIL = 5  # a shorter tail cannot separate a trend from batch noise
TAIL_SHARE = 0.05  # the tail's share of a run's whole fall in the objective, at most
# ... or, for the full-set objective, a fall over the tail below ABS_TOL nats: relative to a
# final loss near 0 (a fine-tuned head that fits its 240 training images) every fall is a large
# share, yet a fall of 0.005 nats moves the mean log-probability of the right class by 0.5%
ABS_TOL = 0.005
# a rise of the full-set objective below this many nats is float rounding, not a rise
RISE_FLOOR = 1e-6
RISING = "rising slightly"  # the note of a converged run whose objective rose
UNCONVERGED = "UNCONVERGED"  # opens every line that names unconverged runs (claims keeps them)


def tail_start(lrs, tail: float = TAIL) -> int:
    """The first step of the last ``tail`` of the summed learning rate ``lrs`` (per step)."""
    cum = np.cumsum(np.asarray(lrs, dtype=float))
    return int(np.searchsorted(cum, (1 - tail) * cum[-1], side="right"))


def summarise(history: dict, tail: float = TAIL, threshold: float = THRESHOLD,
              by: str = "steps") -> dict:
    """steps, final_loss, rel_change, converged and a short reason, from one history."""
    if by not in ("steps", "lr"):
        raise ValueError(f"by={by!r}: use 'steps' (last 10% of steps) or 'lr' (last 10% of the "
                         "summed learning rate)")
    loss = np.asarray((history or {}).get("loss", []), dtype=float)
    n = len(loss)
    out = {"steps": n, "final_loss": float("nan"), "rel_change": float("nan"),
           "converged": False}
    if n == 0:
        return {**out, "note": "no training history (loaded checkpoint without one, or nothing "
                               "trained)"}
    if by == "lr" and len(history.get("lr", [])) == n:
        start = tail_start(history["lr"], tail)
    else:
        start = n - max(1, int(round(tail * n)))
    window = loss[start:]
    final = float(window.mean())
    out["final_loss"] = final
    if history.get("diverged_at") is not None:
        return {**out, "note": f"diverged: loss not finite from step {history['diverged_at']}",
                "measure": "objective"}
    obj = [float(v) for v in history.get("objective") or []]
    if len(obj) in (2, 3) and np.all(np.isfinite(obj)):
        # the noise-free measure (train.fit records it): the full-set objective [at step 0,]
        # at the start of the last 10% of the summed learning rate, and at the end
        tail_drop, final = obj[-2] - obj[-1], obj[-1]
        rel = -tail_drop / max(abs(final), 1e-8)
        share = float("nan")
        converged, note = abs(rel) <= threshold or abs(tail_drop) <= ABS_TOL, ""
        if len(obj) == 3:
            total_drop = obj[0] - final
            share = tail_drop / total_drop if total_drop > 0 else float("nan")
            if total_drop <= 0:
                converged, note = False, "no progress: the objective did not fall"
            elif share > TAIL_SHARE:
                # a run still in its linear regime makes about 10% of its progress in the
                # last 10% of its summed learning rate; a converged one makes almost none
                converged, note = False, "still falling (slow steps)"
        if not converged and not note:
            note = "still falling" if rel < 0 else "rising"
        elif converged and -tail_drop > RISE_FLOOR:
            note = RISING  # within the threshold, yet the objective went up over the tail
        return {**out, "final_loss": final, "rel_change": float(rel), "tail_share": share,
                "tail_change": -float(tail_drop), "converged": bool(converged), "note": note,
                "measure": "objective"}
    if len(window) < MIN_TAIL:
        return {**out, "note": f"tail of {len(window)} steps: too short to tell (needs "
                               f"{MIN_TAIL}, i.e. about {int(np.ceil(MIN_TAIL / tail))} steps)"}
    x = np.arange(len(window), dtype=float)
    slope = float(np.polyfit(x, window, 1)[0])
    rel = slope * len(window) / max(abs(final), 1e-8)
    converged = abs(rel) <= threshold
    note = "" if converged else ("still falling" if rel < 0 else "rising")
    return {**out, "rel_change": rel, "converged": converged, "note": note,
            "measure": "batch losses"}


def table(histories: dict, tail: float = TAIL, threshold: float = THRESHOLD,
          by: str = "steps"):
    """One row per run: ``histories`` maps a run's name (a string or a tuple such as
    (task, method, seed)) to its history dict."""
    import pandas as pd
    rows = []
    for key, hist in histories.items():
        key = key if isinstance(key, tuple) else (key,)
        rows.append({"run": " / ".join(str(k) for k in key),
                     **summarise(hist, tail, threshold, by)})
    # tail_change: the objective's change over the tail in nats (NaN for batch losses), for a
    # final loss near 0, where the relative change is huge for a negligible move
    df = pd.DataFrame(rows, columns=["run", "steps", "final_loss", "rel_change", "tail_share",
                                     "tail_change", "converged", "measure", "note"])
    paper = [bool((h or {}).get("paper_recipe")) for h in histories.values()]
    df["schedule"] = ["paper recipe" if p else "own" for p in paper]
    df["ok"] = df.converged.astype(bool) | pd.Series(paper, index=df.index, dtype=bool)
    return df


def runs_of(df, *names: str):
    """The rows of a convergence table whose run name has one of ``names`` as a component
    (run "FT / 3" belongs to "FT"): the runs behind a comparison of those methods."""
    parts = df.run.str.split(" / ")
    return df[[bool(set(p) & set(names)) for p in parts]]


def summary(df, what: str = "runs") -> str:
    """One sentence from a convergence table: how many runs follow their paper's recipe, how
    many plateaued (and how many of those rose slightly), and how many are unconverged
    (neither)."""
    if not len(df):
        return f"{what}: no training history recorded"
    n, paper = len(df), int((df.schedule == "paper recipe").sum())
    plateau = int(df.converged.astype(bool).sum())
    # a rise is no plateau reached from above: say so wherever the count is read
    rising = int((df.converged.astype(bool) & (df.note == RISING)).sum())
    bad = int((~df.ok.astype(bool)).sum())
    return (f"{what}: {paper} of {n} on their paper's recipe, {plateau} of {n} at a plateau"
            + (f" ({rising} of them rising slightly)" if rising else "") + f", {bad} unconverged")


def summary_of(df, *names: str, what: str = "runs of") -> str:
    """``summary`` of the runs behind one comparison (``runs_of``), named after its methods:
    the "why" of a claims-table row, so a claim carries only its own runs' flags."""
    return summary(runs_of(df, *names), f"{what} {' and '.join(names)}")


def report(histories: dict, title: str = "convergence", tail: float = TAIL,
           threshold: float = THRESHOLD, by: str = "steps"):
    """Print the convergence table, a line naming every unconverged run and one naming every
    converged run whose objective rose slightly (``verdicts``); return the table.

    A comparison that includes a flagged run compares training budgets, not methods."""
    import pandas as pd
    df = table(histories, tail, threshold, by)
    with pd.option_context("display.max_rows", 200, "display.width", 120):
        shown = df.drop(columns="tail_change")  # the printed change is relative, as labelled
        shown = shown.assign(final_loss=df.final_loss.round(4),
                             rel_change=(100 * df.rel_change).round(2),
                             tail_share=(100 * df.tail_share).round(1))
        shown = shown.rename(columns={"rel_change": "change over tail (% of loss)",
                                      "tail_share": "tail's share of the fall (%)"})
        print(f"{title}: with the full-set objective (measure 'objective'), final loss = its "
              f"final value and the tail = the last {TAIL:.0%} of the summed learning rate; "
              f"otherwise the mean batch loss over the last {tail:.0%} of "
              f"{'steps' if by == 'steps' else 'summed learning rate'}. Converged = |change| "
              f"<= {threshold:.0%} (or, for the objective, a fall under {ABS_TOL} nats) and "
              f"the tail's share of the whole fall <= {TAIL_SHARE:.0%}")
        print(shown.to_string(index=False))
    for line in verdicts(df, threshold):
        print(line)
    return df


def _names(runs, most: int = 8) -> str:
    runs = list(runs)
    return ", ".join(runs[:most]) + (", ..." if len(runs) > most else "")


def verdicts(df, threshold: float = THRESHOLD) -> list:
    """The lines ``report`` prints under its table, from a convergence table: the runs valid by
    their paper's recipe only, the converged runs whose objective rose slightly, and the
    unconverged runs (or that all converged)."""
    bad = df[~df.ok.astype(bool)]
    falling = df[df.ok.astype(bool) & ~df.converged.astype(bool)]
    rising = df[df.converged.astype(bool) & (df.note == RISING)]
    lines = []
    if len(falling):
        lines.append(f"{len(falling)} of {len(df)} runs follow their paper's recipe and have not "
                     "reached a plateau (their training loss still moves): valid by the recipe, "
                     "not by a plateau")
    if len(rising):
        lines.append(f"{RISING}: {len(rising)} of {len(df)} runs ({_names(rising.run)}): their "
                     f"objective rose over the tail, by no more than {threshold:.0%} of the final "
                     f"loss (or {ABS_TOL} nats); counted as converged")
    if len(bad):
        lines.append(f"{UNCONVERGED}: {len(bad)} of {len(df)} runs ({_names(bad.run)}): "
                     "comparisons that include them compare training budgets, not methods")
    elif not len(falling):
        lines.append(f"all {len(df)} runs converged")
    return lines


def caveat(df, what: str = "this comparison") -> str:
    """A sentence to print beside a comparison whose runs (rows of a convergence table, e.g.
    ``runs_of``) include an unconverged one, naming those runs; "" when none does."""
    bad = df[~df.ok.astype(bool)]
    if not len(bad):
        return ""
    return (f"{UNCONVERGED} runs behind {what}: {len(bad)} of {len(df)} ({_names(bad.run)}): it "
            "compares training budgets, not methods")


def for_comparisons(df, pairs, what: str = "runs of"):
    """For comparisons given as (a, b) pairs of run-name components: ``summary`` of each
    comparison's runs, a column for the table that reports them, and the ``caveat`` of each
    whose runs include an unconverged one, lines to print beside that table. A row of one name
    (``b`` None or equal to ``a``: a default beside its variants) gets its summary but no
    caveat, since it compares nothing; its runs are flagged in the rows that compare with it.
    Returns (summaries, caveats)."""
    summaries, caveats = [], []
    for a, b in pairs:
        names = tuple(dict.fromkeys(str(n) for n in (a, b) if n is not None))
        rows = runs_of(df, *names)
        summaries.append(summary(rows, f"{what} {' and '.join(names)}"))
        text = caveat(rows, " vs ".join(names)) if len(names) > 1 else ""
        if text:
            caveats.append(text)
    return summaries, caveats
