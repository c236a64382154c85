"""Does the world leave room for an effect? Measured preconditions before any comparison.

Introduced in notebook 00. A method can only show a gain that the frozen features allow, a
robustness loss where shifted domains are harder, and base-to-new overfitting where new
classes are not easier or harder than base ones. So, for every task and zoo model, we measure

- zero-shot accuracy per domain (the hand-made template, as CoOp evaluates zero-shot CLIP);
- a frozen-feature ceiling: multinomial logistic regression on frozen, normalised image
  features with ample training images, the inverse regularisation C chosen on a validation
  split (CLIP's and CoOp's linear-probe protocol);
- zero-shot accuracy on the base and on the new half of the classes (CoOp's split);

and check them against the targets of docs/DESIGN.md ("World preconditions"), which copy the shape
of real CLIP ViT-B/16 on CoOp's datasets at a smaller scale.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np

from cliptune import data, models, world

# the attribute a task's classes differ in (objects: two of them)
TASK_ATTRIBUTES = {"shapes": ("shape",), "colours": ("colour",), "objects": ("colour", "shape"),
                   "textures": ("texture",), "counts": ("count",)}


@dataclasses.dataclass(frozen=True)
class Targets:
    """The pass marks of every precondition (docs/DESIGN.md, "World preconditions")."""
    zero_shot_low: float = 35.0  # photo zero-shot inside [low, high]: room above and below
    zero_shot_high: float = 75.0
    ceiling_gap: float = 20.0  # frozen-feature ceiling at least this far above zero-shot
    domain_gap: float = 5.0  # every shifted domain at least this far below photo zero-shot
    base_new_gap: float = 10.0  # |zero-shot base - zero-shot new| at most this
    min_main_tasks: int = 3


# What the later notebooks evaluate, per model and task, and on which images: a missed mark
# matters for a later claim only where that claim rests on it (notebook 00 prints this beside
# each miss). Read from the notebooks' sources; tests/test_preconditions.py checks that it
# covers every (notebook, model, task, images) that the committed results/ hold.
LATER_USE = (  # (notebooks, what they do there, models, tasks, images evaluated)
    (("01",), "zero-shot described, no method compared", ("tiny-v1",) + models.UPDATES,
     world.MAIN_TASKS, ("photo", "shifted domains")),
    (("02", "03", "04", "05", "06", "07"), "", ("tiny-v1",), world.MAIN_TASKS, ("photo",)),
    (("02", "03"), "", ("tiny-v1",), ("objects",), ("shifted domains",)),
    (("05",), "", ("tiny-v1", "tiny-v2-continued"), ("textures",), ("shifted domains",)),
    (("06",), "embedding drift, no accuracy", models.UPDATES, ("objects",), ("shifted domains",)),
    (("06",), "", models.UPDATES, ("objects",), ("photo",)),
    (("02", "04"), "", ("tiny-v1",), ("objects", "shapes"), ("base and new halves",)),
    (("05",), "", ("tiny-v2-continued",), ("shapes", "textures"), ("photo",)),
    (("07",), "", models.UPDATES, world.MAIN_TASKS, ("photo",)),
)
# the images each precondition is about
MARK_IMAGES = {"zero-shot in range": "photo", "ceiling above zero-shot": "photo",
               "shifted domains harder": "shifted domains", "base ~ new": "base and new halves"}


def later_use(model: str, task: str, images: str) -> list[str]:
    """The notebooks that evaluate ``model`` on ``task``'s ``images`` ("photo", "shifted
    domains" or "base and new halves"), as :data:`LATER_USE` lists them: ["01 (zero-shot
    described, no method compared)", "05", ...], in notebook order."""
    kinds = sorted(set(MARK_IMAGES.values()))
    if images not in kinds:
        raise ValueError(f"images={images!r}: use one of {', '.join(kinds)}")
    found = {}
    for notebooks, what, ms, ts, ks in LATER_USE:
        if model in ms and task in ts and images in ks:
            for nb in notebooks:
                found.setdefault(nb, what)
    return [nb + (f" ({found[nb]})" if found[nb] else "") for nb in sorted(found)]


def class_attributes(task: str) -> list[dict]:
    """What each class of a task fixes, e.g. objects' "red star" -> {colour: red, shape: star}."""
    if task not in TASK_ATTRIBUTES:
        raise KeyError(f"unknown task {task!r}; known tasks: {', '.join(TASK_ATTRIBUTES)}")
    names = TASK_ATTRIBUTES[task]
    out = []
    for c in world.TASKS[task].classnames:
        values = c.split(" ") if len(names) > 1 else [c]
        out.append(dict(zip(names, values)))
    return out


def same_evidence(task: str) -> bool:
    """Base and new classes need the same kind of evidence: every attribute that tells new
    classes apart also varies among the base classes (so base training exercises it)."""
    attrs = class_attributes(task)
    in_base = set(world.base_classes(task))  # as data.base_new splits
    classes = world.TASKS[task].classnames
    base = [a for c, a in zip(classes, attrs) if c in in_base]
    new = [a for c, a in zip(classes, attrs) if c not in in_base]
    varies = lambda group, a: len({c[a] for c in group}) > 1  # noqa: E731
    return all(varies(base, a) for a in TASK_ATTRIBUTES[task] if varies(new, a))


def probe_ceiling(train_x, train_y, val_x, val_y, test_x, test_y,
                  cs=(0.01, 0.1, 1.0, 10.0, 100.0), max_iter: int = 2000) -> dict:
    """Logistic regression on frozen features; C chosen on the validation split, then scored
    once on the test split. Returns C, validation, test and train accuracy (percent) and
    whether the chosen fit converged.

    The features are standardised first (statistics of the training split only): normalised
    CLIP features have tiny per-dimension scales, which makes L-BFGS crawl at the large C they
    need; on standardised features the same grid converges in a few hundred iterations.
    """
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    if len(cs) == 0:
        raise ValueError("cs is empty: give at least one inverse regularisation strength C")
    xs = [np.asarray(x, dtype=np.float64) for x in (train_x, val_x, test_x)]
    mean, std = xs[0].mean(0), xs[0].std(0) + 1e-8
    xs = [(x - mean) / std for x in xs]
    best = None
    # one regularisation path, weakest C first, each fit warm-started from the last: the
    # solutions of neighbouring C are close, so L-BFGS needs a fraction of the iterations
    clf = LogisticRegression(max_iter=max_iter, warm_start=True)
    for c in sorted(cs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.set_params(C=c).fit(xs[0], train_y)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        val = 100.0 * clf.score(xs[1], val_y)
        if best is None or val > best[1]:
            best = (c, val, copy.deepcopy(clf), converged)
    c, val, clf, converged = best
    return {"C": c, "val": val, "test": 100.0 * clf.score(xs[2], test_y),
            "train": 100.0 * clf.score(xs[0], train_y), "converged": converged}


def check(zero_shot: dict, ceiling: float, base: float, new: float, evidence: bool,
          targets: Targets = Targets()) -> dict:
    """PASS/FAIL of the per-task preconditions from measured numbers.

    ``zero_shot`` maps domain -> accuracy and must hold "photo". Returns precondition -> bool.
    """
    if "photo" not in zero_shot:
        raise KeyError(f"zero_shot needs a 'photo' entry, got {sorted(zero_shot)}")
    photo = zero_shot["photo"]
    shifted = [v for d, v in zero_shot.items() if d != "photo"]
    return {
        "zero-shot in range": targets.zero_shot_low <= photo <= targets.zero_shot_high,
        "ceiling above zero-shot": ceiling - photo >= targets.ceiling_gap,
        "shifted domains harder": bool(shifted) and
        all(photo - v >= targets.domain_gap for v in shifted),
        "base ~ new": evidence and abs(base - new) <= targets.base_new_gap,
    }


def _row_checks(r, columns, targets: Targets) -> tuple[dict, dict]:
    """One table row's zero-shot per domain and its :func:`check` results."""
    import pandas as pd
    zs = {c[3:]: r[c] for c in columns if c.startswith("zs_") and
          c not in ("zs_base", "zs_new") and not pd.isna(r[c])}
    return zs, check(zs, r["ceiling"], r["zs_base"], r["zs_new"], bool(r["same_evidence"]),
                     targets)


def verdicts(table, main_tasks, targets: Targets = Targets()):
    """Per (model, task) PASS/FAIL columns, plus whether enough main tasks pass everything.

    ``table`` is a DataFrame with one row per (model, task) and columns ``zs_<domain>``,
    ``ceiling``, ``zs_base``, ``zs_new``, ``same_evidence``.
    """
    import pandas as pd
    rows = []
    for _, r in table.iterrows():
        _, res = _row_checks(r, table.columns, targets)
        rows.append({"model": r["model"], "task": r["task"],
                     "main task": r["task"] in main_tasks,
                     **{k: "PASS" if v else "FAIL" for k, v in res.items()},
                     "all": "PASS" if all(res.values()) else "FAIL"})
    out = pd.DataFrame(rows)
    passing = out[out["main task"] & (out["all"] == "PASS")].groupby("model")["task"].nunique()
    enough = {m: int(passing.get(m, 0)) >= targets.min_main_tasks for m in out["model"].unique()}
    return out, enough


def gap_interval(acc_a: float, n_a: int, acc_b: float, n_b: int, z: float = 1.96):
    """The gap ``acc_a - acc_b`` between two accuracies (percent) measured on independent
    image sets of sizes ``n_a`` and ``n_b``, with its normal-approximation interval
    (``z`` = 1.96: 95%): gap +- z * sqrt(p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b) * 100.
    It is the test-set noise only: the model is fixed, the images are a sample."""
    if min(n_a, n_b) <= 0:
        raise ValueError(f"image counts must be positive, got {n_a} and {n_b}")
    pa, pb = acc_a / 100.0, acc_b / 100.0
    half = z * 100.0 * float(np.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b))
    gap = acc_a - acc_b
    return gap, gap - half, gap + half


def _against(mark: float, gap: float, lo: float, hi: float) -> str:
    """How a measured gap's interval lies against the mark it must reach."""
    where = ("the mark lies inside it: the test set cannot tell this gap from the mark"
             if lo <= mark <= hi else "a miss beyond the test-set noise")
    return f"gap {gap:.1f}, 95% interval over test images [{lo:.1f}, {hi:.1f}]; {where}"


def _size(r, key):
    """A test-set size from a table row (``n_<domain>``, ``n_base``, ``n_new``), or None where
    the table does not hold it."""
    import pandas as pd
    return int(r[key]) if key in r.index and not pd.isna(r[key]) else None


def _base_new_gap(r):
    """The base/new gap of a row read from its larger half ("base - new" or "new - base", since
    the mark bounds the gap's size), with its :func:`gap_interval`: (label, gap, low, high);
    None where the row lacks the halves' test-set sizes."""
    if not (_size(r, "n_base") and _size(r, "n_new")):
        return None
    g, lo, hi = gap_interval(r["zs_base"], _size(r, "n_base"), r["zs_new"], _size(r, "n_new"))
    return ("base - new", g, lo, hi) if g >= 0 else ("new - base", -g, -hi, -lo)


def shortfalls(table, main_tasks, targets: Targets = Targets()) -> list[str]:
    """One sentence per failed precondition of a main task: the measured value, the mark it
    missed and by how many points (``table`` as for :func:`verdicts`). Where the table holds
    the test-set sizes (``n_<domain>``, ``n_base``, ``n_new``, as :func:`measure` records
    them), a missed domain or base/new gap also gets its interval (:func:`gap_interval`)
    and whether the mark lies inside it."""
    out = []
    for _, r in table[table.task.isin(main_tasks)].iterrows():
        zs, res = _row_checks(r, table.columns, targets)
        where, photo = f"{r['model']} / {r['task']}", zs["photo"]
        if not res["zero-shot in range"]:
            low, high = targets.zero_shot_low, targets.zero_shot_high
            miss = low - photo if photo < low else photo - high
            out.append(f"{where}: photo zero-shot {photo:.1f} lies outside [{low:.0f}, "
                       f"{high:.0f}] by {miss:.1f} points")
        if not res["ceiling above zero-shot"]:
            gap = r["ceiling"] - photo
            out.append(f"{where}: ceiling {r['ceiling']:.1f} is {gap:.1f} points above zero-shot, "
                       f"{targets.ceiling_gap - gap:.1f} short of {targets.ceiling_gap:.0f}")
        if not res["shifted domains harder"]:
            close = {d: v for d, v in zs.items() if d != "photo" and photo - v < targets.domain_gap}
            out.append(f"{where}: " + ", ".join(f"{d} {v:.1f}" for d, v in close.items())
                       + f" within {targets.domain_gap:.0f} points of photo {photo:.1f}")
            for d, v in close.items():
                if _size(r, "n_photo") and _size(r, f"n_{d}"):
                    out[-1] += (f" (photo - {d}: " + _against(targets.domain_gap, *gap_interval(
                        photo, _size(r, "n_photo"), v, _size(r, f"n_{d}"))) + ")")
        if not res["base ~ new"]:
            gap = abs(r["zs_base"] - r["zs_new"])
            out.append(f"{where}: base {r['zs_base']:.1f} vs new {r['zs_new']:.1f}, "
                       f"{gap - targets.base_new_gap:.1f} points beyond {targets.base_new_gap:.0f}"
                       if r["same_evidence"] else
                       f"{where}: base and new classes do not need the same kind of evidence")
            if r["same_evidence"] and _base_new_gap(r):
                label, g, lo, hi = _base_new_gap(r)
                out[-1] += f" ({label}: " + _against(targets.base_new_gap, g, lo, hi) + ")"
    return out


def zero_shot_accuracy(clip, ds) -> float:
    """Zero-shot top-1 (percent) with the task's single hand-made template (as CoOp reports)."""
    from cliptune import methods, protocols
    return protocols.evaluate_on(methods.create("zero-shot", clip, ensemble=False), clip, ds)


def measure(clip, task: str, domains=world.DOMAINS, ceiling_train_seeds=(11, 12, 13, 14),
            ceiling_val_seed: int = 15) -> dict:
    """One row of the preconditions table for ``clip`` on ``task``."""
    from cliptune import features
    row = {"model": clip.name, "task": task}
    for d in domains:
        ds = data.tiny(task, "test", d)
        row[f"zs_{d}"], row[f"n_{d}"] = zero_shot_accuracy(clip, ds), len(ds)
    test = data.tiny(task, "test")
    base, new = data.base_new(test)
    row["zs_base"], row["n_base"] = zero_shot_accuracy(clip, base), len(base)
    row["zs_new"], row["n_new"] = zero_shot_accuracy(clip, new), len(new)
    # ample training images: train splits drawn with seeds no experiment uses
    trains = [data.tiny(task, "train", "photo", seed=s) for s in ceiling_train_seeds]
    val = data.tiny(task, "train", "photo", seed=ceiling_val_seed)
    feats = lambda ds: features.image_features(clip, ds).cpu().numpy()  # noqa: E731
    probe = probe_ceiling(np.concatenate([feats(t) for t in trains]),
                          np.concatenate([t.labels for t in trains]),
                          feats(val), val.labels, feats(test), test.labels)
    row.update(ceiling=probe["test"], ceiling_C=probe["C"], ceiling_train=probe["train"],
               ceiling_converged=probe["converged"], ceiling_n=int(sum(len(t) for t in trains)),
               same_evidence=same_evidence(task))
    return row


def per_class_zero_shot(clip, task: str) -> dict:
    """Zero-shot accuracy (percent) of every class of ``task``'s test photos, among the classes
    of its own half, as ``zs_base`` and ``zs_new`` count it: the mean over a half's classes is
    that half's accuracy (the test split holds as many images of every class), so this says
    which classes a base/new gap comes from."""
    from cliptune import evaluate, methods
    out = {}
    for half in data.base_new(data.tiny(task, "test")):
        method = methods.create("zero-shot", clip, ensemble=False)
        method.attach(clip, half.classnames, half.templates)
        out.update(zip(half.classnames, evaluate.per_class_accuracy(method, half).tolist()))
    return {c: out[c] for c in world.TASKS[task].classnames}


def base_new_gaps(per_class, base) -> "pandas.DataFrame":
    """Base minus new zero-shot of each run from a per-class table (one row per run, one
    column per class, as :func:`per_class_zero_shot` gives; ``base``: the base classes), with
    the spread of the classes within each half. When single classes swing from run to run
    (which class names a pretraining run happened to learn), the gap of five-class halves
    swings with them, whatever the split."""
    import pandas as pd
    per_class = pd.DataFrame(per_class)
    unknown = [c for c in base if c not in per_class.columns]
    if unknown or len(base) in (0, per_class.shape[1]):
        raise ValueError(f"base classes {list(base)} must be some, not all, of the table's "
                         f"columns {list(per_class.columns)}")
    new = [c for c in per_class.columns if c not in base]
    b, n = per_class[list(base)], per_class[new]
    return pd.DataFrame({"base": b.mean(axis=1), "new": n.mean(axis=1),
                         "gap": b.mean(axis=1) - n.mean(axis=1),
                         "class sd within base": b.std(axis=1, ddof=0),
                         "class sd within new": n.std(axis=1, ddof=0)})


def margins(table, main_tasks, targets: Targets = Targets()):
    """Each mark of each main-task row as data: the quantity the mark checks, the line it must
    reach, the signed ``margin`` (points to spare; negative: missed by that much), and the
    quantity's 95% interval over test images where the table holds the test-set sizes
    (``inside``: the line lies within it, so the test set cannot tell the two apart).

    Quantities: photo zero-shot (against the nearer end of its range); ceiling minus photo
    zero-shot (no interval: both are scored on the same images); the smallest gap between
    photo and a shifted domain; |base - new|. ``quantity`` names it ("photo zero-shot",
    "ceiling - photo", "photo - sketch", "new - base"). One row per (model, task, mark), in
    ``table``'s row order, so two runs' marks line up by (task, mark)."""
    import pandas as pd
    rows = []
    for _, r in table[table.task.isin(main_tasks)].iterrows():
        zs, res = _row_checks(r, table.columns, targets)
        photo, interval = zs["photo"], (np.nan, np.nan)
        n = _size(r, "n_photo")
        low, high = targets.zero_shot_low, targets.zero_shot_high
        line = low if photo - low < high - photo else high
        if n:
            half = 1.96 * 100.0 * float(np.sqrt(photo / 100 * (1 - photo / 100) / n))
            interval = (photo - half, photo + half)
        marks = [("zero-shot in range", photo, line, min(photo - low, high - photo), interval,
                  "photo zero-shot")]
        marks.append(("ceiling above zero-shot", r["ceiling"] - photo, targets.ceiling_gap,
                      r["ceiling"] - photo - targets.ceiling_gap, (np.nan, np.nan),
                      "ceiling - photo"))
        shifted = {d: photo - v for d, v in zs.items() if d != "photo"}
        if shifted:
            where = min(shifted, key=shifted.get)
            interval = (np.nan, np.nan)
            if n and _size(r, f"n_{where}"):
                interval = gap_interval(photo, n, zs[where], _size(r, f"n_{where}"))[1:]
            marks.append(("shifted domains harder", shifted[where], targets.domain_gap,
                          shifted[where] - targets.domain_gap, interval, f"photo - {where}"))
        gap, halves = abs(r["zs_base"] - r["zs_new"]), _base_new_gap(r)
        interval = halves[2:] if halves else (np.nan, np.nan)
        marks.append(("base ~ new", gap, targets.base_new_gap,
                      targets.base_new_gap - gap if r["same_evidence"] else np.nan, interval,
                      ("base - new" if r["zs_base"] >= r["zs_new"] else "new - base")
                      if r["same_evidence"] else "not the same kind of evidence"))
        for mark, value, line_, margin, (lo, hi), quantity in marks:
            rows.append({"model": r["model"], "task": r["task"], "mark": mark, "value": value,
                         "line": line_, "margin": margin, "low": lo, "high": hi,
                         "inside": bool(lo <= line_ <= hi), "verdict": "PASS" if res[mark]
                         else "FAIL", "quantity": quantity})
    return pd.DataFrame(rows, columns=["model", "task", "mark", "quantity", "value", "line",
                                       "margin", "low", "high", "inside", "verdict"])


def run_to_run(first, second):
    """How far each mark moved between two pretraining runs of one recipe: two
    :func:`margins` tables (one model each), matched by (task, mark). ``change`` is the second
    run's value minus the first's; ``test noise`` the half-width that test-set noise alone would
    give that change, sqrt(h1^2 + h2^2) from the two runs' intervals (conservative: both runs
    are scored on the same test images, which share part of that noise); ``flips``: the
    verdict differs between the runs."""
    for name, t in (("first", first), ("second", second)):
        if t["model"].nunique() != 1:
            raise ValueError(f"run_to_run: {name} holds {t['model'].nunique()} models; give one "
                             "run's margins each (filter the table by model first)")
    keep = ["task", "mark", "quantity", "value", "low", "high", "verdict"]
    both = first[keep].merge(second[keep], on=["task", "mark"], suffixes=(" 1", " 2"))
    if len(both) != len(first) or len(both) != len(second):
        raise ValueError("run_to_run: the two runs do not hold the same (task, mark) rows; "
                         "measure both on the same main tasks")
    half = lambda k: (both[f"high {k}"] - both[f"low {k}"]) / 2  # noqa: E731
    both["change"] = both["value 2"] - both["value 1"]
    both["test noise"] = np.sqrt(half(1) ** 2 + half(2) ** 2)
    both["flips"] = both["verdict 1"] != both["verdict 2"]
    return both[["task", "mark", "quantity 1", "value 1", "verdict 1", "quantity 2", "value 2",
                 "verdict 2", "change", "test noise", "flips"]]


def run_spread(runs):
    """How far each mark's quantity spreads between pretraining runs of one recipe, pooled over
    recipes and tasks: ``runs`` stacks :func:`margins` tables of several runs, with a
    ``recipe`` column naming the recipe each run (its ``model``) was pretrained with. Per mark:
    the pooled run-to-run sd (sum of squared deviations from each (recipe, task) mean over the
    pooled degrees of freedom, sum of n - 1), its degrees of freedom, and the 95% interval of
    the sd (chi-square; with a few degrees of freedom it is wide, and it is printed so)."""
    import pandas as pd
    from scipy import stats
    runs = _signed(runs, "run_spread")
    rows = []
    for mark, g in runs.groupby("mark", sort=False):
        groups = g.groupby(["recipe", "task"])["value"]
        ss = float(((g["value"] - groups.transform("mean")) ** 2).sum())
        df = int((groups.count() - 1).sum())
        sd = float(np.sqrt(ss / df)) if df else np.nan
        low, high = ((float(np.sqrt(ss / stats.chi2.ppf(q, df))) for q in (0.975, 0.025))
                     if df else (np.nan, np.nan))
        rows.append({"mark": mark, "sd": sd, "df": df, "sd low": low, "sd high": high})
    out = pd.DataFrame(rows, columns=["mark", "sd", "df", "sd low", "sd high"])
    if not (out.df > 0).any():
        raise ValueError("run_spread: no (recipe, task) holds two runs; a spread between runs "
                         "needs a recipe pretrained at least twice (a replicate)")
    return out


def pass_chance(runs, spread, targets: Targets = Targets()):
    """The chance that another pretraining run of each recipe passes each mark, and every mark.

    ``runs`` as for :func:`run_spread`; ``spread`` its result. A new run's quantity is taken as
    normal around the mean of the recipe's n runs with the predictive sd, sd * sqrt(1 + 1/n)
    (the mean is itself an estimate), so a recipe with one run borrows the pooled sd of the
    recipes that have replicates; the base/new gap is signed (base - new), as in
    :func:`run_spread`. ``chance`` uses the sd, ``chance low`` / ``chance high`` the
    ends of its interval that make passing least / most likely. Returns (per mark: recipe,
    task, mark, runs, mean, chance...; per recipe: the product over its marks, which treats
    the marks as independent: a rough guide, not a test)."""
    import pandas as pd
    runs = _signed(runs, "pass_chance")
    sds = spread.set_index("mark")
    missing = sorted(set(runs["mark"]) - set(sds.index))
    if missing:
        raise ValueError(f"pass_chance: spread has no sd for marks {missing}; compute it with "
                         "run_spread on the same runs")
    def chance(mark, mean, sd):  # sd 0 (no run moved it): the mean passes or not, for certain
        return np.nan if np.isnan(sd) else _between(mean, max(sd, 1e-12), *_band(mark, targets))

    rows = []
    for (recipe, task, mark), g in runs.groupby(["recipe", "task", "mark"], sort=False):
        n, mean = len(g), float(g["value"].mean())
        inflate = float(np.sqrt(1 + 1 / n))
        by_sd = {k: chance(mark, mean, sds.loc[mark, k] * inflate)
                 for k in ("sd", "sd low", "sd high")}
        rows.append({"recipe": recipe, "task": task, "mark": mark, "runs": n, "mean": mean,
                     "predictive sd": sds.loc[mark, "sd"] * inflate, "chance": by_sd["sd"],
                     "chance low": min(by_sd["sd low"], by_sd["sd high"]),
                     "chance high": max(by_sd["sd low"], by_sd["sd high"])})
    per_mark = pd.DataFrame(rows)
    per_recipe = (per_mark.groupby("recipe", sort=False)
                  .agg(runs=("runs", "max"), marks=("mark", "size"),
                       chance=("chance", "prod"), **{"chance low": ("chance low", "prod"),
                                                     "chance high": ("chance high", "prod")})
                  .reset_index())
    return per_mark, per_recipe


def base_new_best_case(spread, targets: Targets = Targets()) -> float:
    """The chance that one run passes the base ~ new mark on one task even when its recipe's
    true base/new gap is zero: 2 Phi(line / sd) - 1, the sd being ``spread``'s run-to-run sd of
    the signed gap. No recipe choice does better on these class splits; only a smaller spread
    (more classes in each half, or runs that vary less) does."""
    sd = float(spread.set_index("mark").loc["base ~ new", "sd"])
    return _between(0.0, sd, *_band("base ~ new", targets))


def clearance(spread, n_marks: int, joint: float = 0.9, targets: Targets = Targets()):
    """What a recipe would need for one pretraining run to pass all ``n_marks`` marks together
    with chance ``joint``: each mark must then pass with chance joint ** (1 / n_marks), so a
    recipe's true quantity must sit z run-to-run sds inside its line (z the normal quantile of
    that chance; marks treated as independent). Per mark: the chance each mark needs, z, and
    the quantity a recipe needs, ``at least`` and / or ``at most`` (photo zero-shot: a range;
    the base/new gap: |base - new| at most, ``reachable`` False where even a true gap of zero
    falls short, see :func:`base_new_best_case`)."""
    import pandas as pd
    from statistics import NormalDist
    if not 0 < joint < 1 or n_marks < 1:
        raise ValueError(f"clearance: joint={joint} must lie in (0, 1) and n_marks={n_marks} "
                         "be at least 1")
    each = joint ** (1 / n_marks)
    z = NormalDist().inv_cdf(each)
    rows = []
    for _, r in spread.iterrows():
        low, high = _band(r.mark, targets)
        if r.mark == "base ~ new":  # |base - new|; the signed gap must stay in [-line, line]
            least, most = np.nan, _largest_gap(r.sd, each, high)
        else:  # an open end stays open
            least, most = (low + z * r.sd if low > -np.inf else np.nan,
                           high - z * r.sd if high < np.inf else np.nan)
        rows.append({"mark": r.mark, "sd": r.sd, "chance each": each, "z": z,
                     "at least": least, "at most": most,
                     "reachable": not (np.isnan(least) and np.isnan(most))})
    return pd.DataFrame(rows)


def _band(mark: str, targets: Targets) -> tuple[float, float]:
    """The values of a mark's quantity (as :func:`margins` gives it, the base/new gap signed)
    that pass it: (low, high), an open end infinite."""
    return {"zero-shot in range": (targets.zero_shot_low, targets.zero_shot_high),
            "ceiling above zero-shot": (targets.ceiling_gap, np.inf),
            "shifted domains harder": (targets.domain_gap, np.inf),
            "base ~ new": (-targets.base_new_gap, targets.base_new_gap)}[mark]


def _between(mean: float, sd: float, low: float, high: float) -> float:
    """The chance that a normal quantity (``mean``, ``sd``) lands inside [low, high]."""
    from statistics import NormalDist
    phi = NormalDist().cdf
    return phi((high - mean) / sd) - phi((low - mean) / sd)


def _largest_gap(sd: float, chance: float, line: float) -> float:
    """The largest true |base - new| gap at which a run's signed gap, normal with ``sd``, stays
    inside [-line, line] with ``chance`` (bisection; NaN where a gap of zero falls short)."""
    if _between(0.0, sd, -line, line) < chance:
        return np.nan
    lo, hi = 0.0, line
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _between(mid, sd, -line, line) >= chance else (lo, mid)
    return lo


def _signed(runs, who: str):
    """``runs`` checked, with the base/new gap turned signed (base - new); rows of a task whose
    halves need different evidence (no base ~ new mark) are left out of that mark."""
    for col in ("recipe", "model", "task", "mark", "quantity", "value"):
        if col not in runs.columns:
            raise ValueError(f"{who}: runs has no {col!r} column; stack margins() tables of "
                             "each run and add a 'recipe' column naming the recipe each run used")
    bn = runs["mark"] == "base ~ new"
    keep = ~bn | runs["quantity"].isin(["base - new", "new - base"])
    out = runs[keep].copy()
    flip = (out["mark"] == "base ~ new") & (out["quantity"] == "new - base")
    out.loc[flip, "value"] = -out.loc[flip, "value"]
    return out
