"""Paired comparison of two methods: difference, 95% bootstrap interval, verdict.

Introduced in notebook 02 and used by every notebook that says one method beats another.

Two methods are *paired* when they ran with the same seeds (the same few-shot sample, the same
training order) and were tested on the same images: ``a[task][seed]`` and ``b[task][seed]`` are
tuples of per-image correctness vectors (one vector for plain accuracy; two, base and new, for
the base-to-new harmonic mean) whose entries are the same test images in the same order.

The difference is ``metric(a) - metric(b)`` in points, averaged over seeds, then over tasks.

The interval: a two-stage (hierarchical) percentile bootstrap, so it includes both the noise of
a finite test set and the spread between training runs. Each replicate, for every task
independently: draw S seeds with replacement from the task's S seeds; for each drawn seed, draw
that seed's test images with replacement (every part separately, the *same* image indices for
``a`` and ``b``, which keeps the pairing); compute the metric of both methods on the drawn
images and average the per-seed differences. The pooled value is the mean over tasks of the
per-task differences, computed from the same replicate, so the tasks are bootstrapped jointly.
The interval is the replicates' (2.5%, 97.5%) percentiles. With one seed only the test images
are resampled, and the interval says nothing about another training run: ``Comparison.n_seeds``
says how many there were.

Verdict: "better" when the whole interval lies above 0, "worse" when below, otherwise
"no detectable difference" (which is not evidence that the two are equal).
"""
from __future__ import annotations

import dataclasses

import numpy as np

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no detectable difference"


def accuracy(parts: list[np.ndarray]) -> np.ndarray:
    """Top-1 accuracy (points) of one part; ``parts[0]`` holds accuracies in [0, 1]."""
    return 100.0 * parts[0]


def harmonic_mean(parts: list[np.ndarray]) -> np.ndarray:
    """Base-to-new HM (points) of two parts: accuracies on base and on new classes."""
    b, n = parts
    with np.errstate(invalid="ignore", divide="ignore"):
        hm = np.where(b + n > 0, 2 * b * n / (b + n), 0.0)
    return 100.0 * hm


METRICS = {"accuracy": (accuracy, 1), "hm": (harmonic_mean, 2)}


@dataclasses.dataclass
class Comparison:
    """``a`` minus ``b`` in points, with its bootstrap interval and verdict."""
    a: str
    b: str
    metric: str
    difference: float
    low: float
    high: float
    verdict: str
    a_value: float  # metric of a (mean over seeds, then tasks)
    b_value: float
    n_tasks: int
    n_seeds: int  # seeds per task (the smallest count when tasks differ)
    n_images: int  # test images per seed, summed over tasks and parts
    level: float = 0.95
    # each pooled task on its own: {task: (difference, low, high)}, from the same replicates
    per_task: dict = dataclasses.field(default_factory=dict)
    unit: str = "task"  # what the pooled entries are (e.g. "domain"), for printed sentences

    def own_verdicts(self) -> dict:
        """Each pooled task's verdict from its own interval: {task: verdict}."""
        return {t: verdict(lo, hi) for t, (_, lo, hi) in self.per_task.items()}

    def differing(self) -> dict:
        """The pooled tasks whose own verdict is not the pooled one: {task: verdict}."""
        return {t: v for t, v in self.own_verdicts().items() if v != self.verdict}

    def split(self) -> bool:
        """True when the pooled tasks disagree: one task's own interval says better and
        another's worse, or one says the opposite of the pooled verdict."""
        own = set(self.own_verdicts().values())
        opposite = {BETTER: WORSE, WORSE: BETTER}.get(self.verdict)
        return {BETTER, WORSE} <= own or opposite in own

    def per_task_text(self, digits: int = 1) -> str:
        """Each pooled task's difference and interval, e.g. "objects +11.2 [+9.0, +13.1]"."""
        return "; ".join(f"{t} {d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
                         for t, (d, lo, hi) in self.per_task.items())

    def interval(self, digits: int = 1) -> str:
        return f"{self.difference:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def __str__(self) -> str:
        return f"{self.a} vs {self.b} ({self.metric}): {self.interval()} {self.verdict}"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def verdict(low: float, high: float) -> str:
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return NO_DIFFERENCE


def _as_tasks(vectors, side: str) -> dict:
    """Accept {task: {seed: parts}}; a bare {seed: parts} is one unnamed task."""
    if not isinstance(vectors, dict) or not vectors:
        raise ValueError(f"{side}: expected a non-empty dict {{task: {{seed: vectors}}}} or "
                         f"{{seed: vectors}}, got {type(vectors).__name__}")
    first = next(iter(vectors.values()))
    if isinstance(first, dict):
        return vectors
    return {"": vectors}


def _parts(value, n_parts: int, where: str) -> list[np.ndarray]:
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = (value,)
    parts = [np.asarray(v, dtype=float) for v in value]
    if len(parts) != n_parts:
        raise ValueError(f"{where}: the metric needs {n_parts} vector(s) per seed (e.g. base "
                         f"and new for 'hm'), got {len(parts)}")
    for p in parts:
        if p.ndim != 1 or len(p) == 0:
            raise ValueError(f"{where}: expected a non-empty 1-D correctness vector, "
                             f"got shape {p.shape}")
    return parts


def _pair_seeds(sa: dict, sb: dict, task: str) -> list:
    """The seeds both sides share. A side with exactly one entry (e.g. zero-shot, which has no
    training seed) is reused for every seed of the other side."""
    if set(sa) == set(sb):
        return [(s, s, s) for s in sorted(sa)]
    if len(sb) == 1:
        only = next(iter(sb))
        return [(s, s, only) for s in sorted(sa)]
    if len(sa) == 1:
        only = next(iter(sa))
        return [(s, only, s) for s in sorted(sb)]
    raise ValueError(f"task {task!r}: the two methods ran different seeds ({sorted(sa)} vs "
                     f"{sorted(sb)}); compare them over the seeds both ran")


def paired_difference(a, b, metric: str = "accuracy", names=("a", "b"), n_boot: int = 2000,
                      level: float = 0.95, seed: int = 0, unit: str = "task") -> Comparison:
    """Compare ``a`` with ``b`` paired by task, seed and test image (see the module docstring).

    ``a``, ``b``: ``{task: {seed: parts}}`` (or ``{seed: parts}`` for one task), where
    ``parts`` is one correctness vector (metric "accuracy") or a (base, new) pair ("hm").
    ``unit`` names what the keys of ``a`` are ("task", or e.g. "domain") for printed text.
    Returns a Comparison of a minus b, in points, with each task's own difference and interval
    in ``per_task``."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: use one of {sorted(METRICS)}")
    fn, n_parts = METRICS[metric]
    ta, tb = _as_tasks(a, names[0]), _as_tasks(b, names[1])
    if set(ta) != set(tb):
        raise ValueError(f"the two methods cover different tasks ({sorted(ta)} vs {sorted(tb)}); "
                         "pool only over a task set both ran")
    rng = np.random.default_rng(seed)
    point_a, point_b, boot, seeds_per_task, n_images = [], [], [], [], 0
    for task in ta:
        pairs = _pair_seeds(ta[task], tb[task], task)
        n_seeds = len(pairs)
        # replicates x seed slots: which seed each slot draws
        slots = rng.integers(0, n_seeds, size=(n_boot, n_seeds)) if n_seeds > 1 else \
            np.zeros((n_boot, 1), dtype=int)
        diff_slots = np.empty((n_boot, n_seeds))
        va_task, vb_task = [], []
        for k, (s, s_a, s_b) in enumerate(pairs):
            pa = _parts(ta[task][s_a], n_parts, f"{names[0]}, task {task!r}, seed {s_a}")
            pb = _parts(tb[task][s_b], n_parts, f"{names[1]}, task {task!r}, seed {s_b}")
            for x, y in zip(pa, pb):
                if len(x) != len(y):
                    raise ValueError(f"task {task!r}, seed {s}: {names[0]} has {len(x)} test "
                                     f"images and {names[1]} {len(y)}; a paired comparison needs "
                                     "the same images in the same order")
            va_task.append(float(fn([p.mean() for p in pa])))
            vb_task.append(float(fn([p.mean() for p in pb])))
            n_images += sum(len(p) for p in pa) if k == 0 else 0
            # every (replicate, slot) that drew this seed gets its own image resample
            drew = slots == k
            m = int(drew.sum())
            if m == 0:
                continue
            acc_a, acc_b = [], []
            for x, y in zip(pa, pb):
                w = rng.multinomial(len(x), np.full(len(x), 1.0 / len(x)), size=m) / len(x)
                acc_a.append(w @ x)
                acc_b.append(w @ y)
            diff_slots[drew] = fn(acc_a) - fn(acc_b)
        point_a.append(np.mean(va_task))
        point_b.append(np.mean(vb_task))
        boot.append(diff_slots.mean(axis=1))
        seeds_per_task.append(n_seeds)
    reps = np.mean(boot, axis=0)
    alpha = (1 - level) / 2
    low, high = (float(q) for q in np.quantile(reps, [alpha, 1 - alpha]))
    av, bv = float(np.mean(point_a)), float(np.mean(point_b))
    diff = av - bv
    per_task = {task: (float(pa - pb), *(float(q) for q in np.quantile(bt, [alpha, 1 - alpha])))
                for task, pa, pb, bt in zip(ta, point_a, point_b, boot)} if len(ta) > 1 else {}
    return Comparison(names[0], names[1], metric, diff, low, high, verdict(low, high), av, bv,
                      len(ta), min(seeds_per_task), n_images, level, per_task, unit)


def vectors(df, method: str, parts=("test",), part_column: str = "split", tasks=None,
            task_column: str = "dataset", **where) -> dict:
    """``{task: {seed: parts}}`` from a results frame loaded with ``results.load(...,
    correct=True)``: the rows of ``method`` matching ``where`` (column=value), one vector per
    value of ``part_column`` listed in ``parts`` (("base", "new") for the HM). The "tasks"
    that a comparison pools over are the values of ``task_column`` (e.g. "domain" to pool
    over shifted domains of one task), restricted to ``tasks`` when given."""
    if "correct" not in df.columns:
        raise ValueError("the results frame has no per-image vectors: load it with "
                         "results.load(experiment, correct=True)")
    sel = df[df.method == method]
    for col, val in where.items():
        if col not in sel.columns:
            raise ValueError(f"no results column {col!r}; the columns are {list(df.columns)}")
        sel = sel[sel[col].astype(str) == str(val)]
    if tasks is not None:
        sel = sel[sel[task_column].isin(list(tasks))]
    if sel.empty:
        raise ValueError(f"no stored rows for method {method!r} with {where}; methods present: "
                         f"{sorted(df.method.unique())}")
    out: dict = {}
    for (task, seed), group in sel.groupby([task_column, "seed"], sort=True):
        by_part = {}
        for part, g in group[group[part_column].isin(list(parts))].groupby(part_column):
            if len(g) != 1:
                raise ValueError(f"{method}, task {task!r}, seed {seed}, {part_column}={part!r}: "
                                 f"{len(g)} rows match; narrow the selection (e.g. eval_model=, "
                                 "domain=, shots=)")
            vec = g.correct.iloc[0]
            if vec is None:
                raise ValueError(f"{method}, task {task!r}, seed {seed}: the run stored no "
                                 "per-image vector; rerun it (rows need a 'correct' entry)")
            by_part[part] = vec
        missing = [p for p in parts if p not in by_part]
        if missing:
            raise ValueError(f"{method}, task {task!r}, seed {seed}: no rows with "
                             f"{part_column} in {missing}")
        out.setdefault(task, {})[seed] = tuple(by_part[p] for p in parts)
    return out


def compare_methods(df, a: str, b: str, metric: str = "accuracy", tasks=None, a_where=None,
                    b_where=None, part_column: str = "split", task_column: str = "dataset",
                    n_boot: int = 2000, seed: int = 0, **where) -> Comparison:
    """``paired_difference`` of two methods' stored vectors (``results.load(...,
    correct=True)``). ``where`` filters both sides; ``a_where``/``b_where`` one side only
    (e.g. a module and zero-shot evaluated on different models). The HM reads the rows whose
    ``part_column`` is "base" and "new"; accuracy the split "test" unless ``where`` names
    another."""
    if metric == "hm":
        parts = ("base", "new")
    else:
        parts = (where.pop(part_column, "test"),)
    va = vectors(df, a, parts, part_column, tasks, task_column, **{**where, **(a_where or {})})
    vb = vectors(df, b, parts, part_column, tasks, task_column, **{**where, **(b_where or {})})
    common = sorted(set(va) & set(vb))
    if tasks is None:  # pool only over the tasks both ran
        va, vb = {t: va[t] for t in common}, {t: vb[t] for t in common}
    # pooled keys are named by their column: "task" for datasets, "domain" for domains
    unit = "task" if task_column == "dataset" else task_column
    return paired_difference(va, vb, metric, names=(a, b), n_boot=n_boot, seed=seed, unit=unit)


def table(comparisons) -> "pandas.DataFrame":
    """One row per Comparison: a, b, metric, difference, 95% interval, verdict, seeds, tasks."""
    import pandas as pd
    return pd.DataFrame([{"a": c.a, "b": c.b, "metric": c.metric, "a value": round(c.a_value, 1),
                          "b value": round(c.b_value, 1), "difference": round(c.difference, 2),
                          "95% CI": f"[{c.low:+.2f}, {c.high:+.2f}]", "verdict": c.verdict,
                          "tasks": c.n_tasks, "seeds": c.n_seeds} for c in comparisons])
