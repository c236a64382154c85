"""Choosing a reconstruction's design on validation data only: tiny-v1 and the validation update.

Introduced with the reconstructions (notebook 02 for ContCoOp, 04 for RESTORE, 05 for ARF),
whose papers leave designs unknown. Each unknown is a switch; :func:`select` trains every named
variant on a tiny-v1 few-shot split, measures it on validation images of the TRAIN split
(carved from the training draw, :func:`carve`, or fresh draws of it, :func:`validation`; never
the test split), under tiny-v1 and attached to the validation update
``tiny-v2-validation``, and picks one by a stated rule. The two reported updates
(``tiny-v2-continued``, ``tiny-v2-retrained``) and every test split stay untouched test
conditions: :func:`select` refuses them, by name and by image content.

The rule (``rule=``):

- ``"mean"`` (default): the mean of the tiny-v1 and validation-update accuracies, since the
  reconstructions are about both accuracy and what survives an update;
- ``"source"``: tiny-v1 validation accuracy alone (for methods that do not attach to another
  model, e.g. ARF, which carries its own fine-tuned copy);
- ``"update"``: the validation update alone; ``"all"``: the mean of every column, the extra
  validation sets (e.g. a sketch split of the train data) included; ``"source-all"``: the
  mean of the source model's columns (its validation set and the extra ones).

Ties go to the variant listed first, so list today's default first: a switch must win to be
adopted. With ``adopt="better"`` it must win beyond noise: every variant is compared with the
default by the paired comparison of :mod:`cliptune.compare` (paired by seed and validation
image, over the rule's columns), and the best-scoring variant is adopted only when its whole 95%
interval lies above the default's; otherwise the default stays. Use it with several seeds and a
validation set of :func:`validation` (fresh draws of the train split, hundreds of images), so
the interval can resolve a few points.
"""
from __future__ import annotations

import numpy as np

import json
import os
import pathlib
import tempfile

from cliptune import compare, data, models, protocols, runtime, world

SOURCE = "tiny-v1"
VALIDATION_UPDATE = "tiny-v2-validation"
RULES = ("mean", "source", "update", "all", "source-all")
ADOPT = ("best", "better")
# scene seeds of the train-split draws that only validation uses (experiments train on draw 0,
# the preconditions' probe on draws 11-14); three draws give each task hundreds of images
VALIDATION_DRAWS = (101, 102, 103)


class SelectionError(ValueError):
    """A selection was asked to look at data or models it must never see."""


def carve(task: str, shots: int, seed: int = 1, val_shots: int | None = None,
          domain: str = "photo", base_classes: bool = False):
    """(train part, validation part) of a tiny-world task's TRAIN split: ``shots`` images per
    class to train on and ``val_shots`` (CoOp: min(shots, 4)) others per class to validate on.
    ``base_classes``: only the base half of the classes (base-to-new protocols)."""
    from cliptune.methods.tip_adapter import validation_split
    full = data.tiny(task, "train", domain)
    if base_classes:
        full, _ = data.base_new(full)
    train_part = data.few_shot(full, shots, seed)
    return train_part, validation_split(full, train_part, val_shots or min(shots, 4), seed)


def validation(task: str, domain: str = "photo", base_classes: bool = False,
               draws=VALIDATION_DRAWS):
    """A validation set of fresh draws of a task's TRAIN split (``data.tiny(task, "train",
    domain, seed=d)`` for each of ``draws``): other scenes than the training draw and the test
    split, and as many images as the draws hold (objects' base classes: 960 a draw; textures:
    240), so a selection can resolve differences that a few carved shots cannot."""
    if not draws:
        raise ValueError("draws is empty: give the scene seeds of at least one train-split draw")
    if 0 in draws:
        raise SelectionError("draw 0 is the training split that experiments train on; "
                             f"validate on other draws, e.g. {VALIDATION_DRAWS}")
    parts = [data.tiny(task, "train", domain, seed=int(d)) for d in draws]
    if base_classes:
        parts = [p.select_classes(world.base_classes(task)) for p in parts]
    name = f"{task}/train/{domain}" + ("/base" if base_classes else "") + \
        "/draws" + "-".join(str(int(d)) for d in draws)
    return data.concat(parts, name)


def check_models(source: str, update: str) -> None:
    if source != SOURCE:
        raise SelectionError(f"designs are chosen on {SOURCE!r}, not {source!r}: pass "
                             f"source={SOURCE!r}")
    if update != VALIDATION_UPDATE:
        raise SelectionError(
            f"designs are chosen with the validation update {VALIDATION_UPDATE!r}, not "
            f"{update!r}: the reported updates (tiny-v2-continued, tiny-v2-retrained) must stay "
            f"untouched test conditions; pass update={VALIDATION_UPDATE!r}")


def check_validation_set(val_set, train_set=None) -> None:
    """Refuse a validation set that is not carved from a tiny-world TRAIN split, that shares
    an image with the test split of its task and domain, or one with ``train_set``."""
    parts = val_set.name.split("/")
    if val_set.scenes is None or len(parts) < 2 or parts[0] not in world.TASKS:
        raise SelectionError(f"validation set {val_set.name!r} is not a tiny-world split; build "
                             "it with selection.carve(task, shots, seed)")
    if parts[1] != "train":
        raise SelectionError(f"validation set {val_set.name!r} comes from the {parts[1]!r} "
                             "split; designs are chosen on images of the TRAIN split only: "
                             "build it with selection.carve(task, shots, seed)")
    from cliptune.methods.arf import image_hashes
    mine = set(image_hashes(val_set.images))
    test = set(image_hashes(data.tiny(parts[0], "test", val_set.domain).images))
    if mine & test:
        raise SelectionError(f"validation set {val_set.name!r} holds {len(mine & test)} images "
                             "of the test split; carve it from the train split")
    if train_set is not None and mine & set(image_hashes(train_set.images)):
        raise SelectionError(f"validation set {val_set.name!r} shares images with the training "
                             f"set {train_set.name!r}; use selection.carve, which keeps them "
                             "apart")


def rule_columns(rule: str, columns: list) -> list:
    """The measured columns that ``rule`` averages ("source-all": every column measured under
    the source model, i.e. the validation set and the extra ones, e.g. sketches)."""
    if rule == "mean":
        return [f"{SOURCE} val", f"{VALIDATION_UPDATE} val"]
    if rule == "source":
        return [f"{SOURCE} val"]
    if rule == "update":
        return [f"{VALIDATION_UPDATE} val"]
    if rule == "source-all":
        return [c for c in columns if c.startswith(f"{SOURCE} ")]
    return list(columns)


def score(row: dict, rule: str, columns: list) -> float:
    return float(np.mean([row[c] for c in rule_columns(rule, columns)]))


def select(method: str, variants: dict, train_set, val_set, source: str = SOURCE,
           update: str = VALIDATION_UPDATE, seeds=(1,), train_cfg=None, rule: str = "mean",
           extra_val: dict | None = None, load=models.load_clip, adopt: str = "best"):
    """Train every variant of ``method`` on ``train_set`` under ``source`` and measure it.

    ``variants``: {label: config overrides}, e.g. ``{"residual": {}, "readout":
    {"prompt_form": "readout"}}`` (the methods' ``PRESETS`` dicts); the first is the default.
    ``extra_val``: more validation sets {label: ImageSet} (train-derived too), measured under
    ``source``. ``load``: how a model name becomes a CLIP (tests pass a stand-in).
    ``adopt``: "best" takes the best score (ties: first listed); "better" takes it only if it
    beats the default beyond noise (see the module docstring).

    Returns (table, chosen label): a pandas DataFrame with one row per variant, its config,
    the accuracy of every column averaged over ``seeds``, the score of ``rule``, the paired
    difference from the default over the rule's columns with its 95% interval and verdict,
    and which variant was chosen. ``table.attrs["histories"]`` holds the training history of
    every run, {(variant, seed): history}, for ``convergence.report``: the selection's
    comparisons are only as good as its runs' convergence.
    """
    import pandas as pd
    check_models(source, update)
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose one of {RULES}")
    if adopt not in ADOPT:
        raise ValueError(f"unknown adoption rule adopt={adopt!r}; choose one of {ADOPT}")
    if not variants:
        raise ValueError("no variants to choose from: give {label: config overrides}")
    check_validation_set(val_set, train_set)
    for label, ds in (extra_val or {}).items():
        check_validation_set(ds, train_set)
    clip_src, clip_upd = load(source), load(update)
    rows, hits = [], []  # hits[i]: {column: {seed: per-image correctness}}
    histories = {}  # (variant, seed) -> the run's training history
    for label, cfg in variants.items():
        measured: dict[str, dict] = {}
        for seed in seeds:
            m, histories[label, seed] = protocols.train_method(method, clip_src, train_set, seed,
                                                               train_cfg, **cfg)
            if hasattr(m, "use_training_images"):  # caches that rebuild need their images
                m.use_training_images(train_set)
            sets = [(f"{source} val", clip_src, val_set)]
            sets += [(f"{source} {name}", clip_src, ds) for name, ds in (extra_val or {}).items()]
            sets.append((f"{update} val", clip_upd, val_set))
            for column, clip, ds in sets:
                measured.setdefault(column, {})[seed] = protocols.score(m, clip, ds)["correct"]
        hits.append(measured)
        rows.append({"variant": label, "config": dict(cfg),
                     **{k: float(np.mean([100.0 * v.mean() for v in by_seed.values()]))
                        for k, by_seed in measured.items()}})
    columns = [c for c in rows[0] if c not in ("variant", "config")]
    used = rule_columns(rule, columns)
    for row in rows:
        row["score"] = score(row, rule, columns)
    rows[0].update({"vs default": 0.0, "95% CI": "[+0.00, +0.00]", "verdict": "(default)"})
    for row, measured in zip(rows[1:], hits[1:]):
        c = compare.paired_difference({k: measured[k] for k in used},
                                      {k: hits[0][k] for k in used},
                                      names=(row["variant"], rows[0]["variant"]))
        row.update({"vs default": c.difference, "95% CI": f"[{c.low:+.2f}, {c.high:+.2f}]",
                    "verdict": c.verdict})
    best = max(range(len(rows)), key=lambda i: (rows[i]["score"], -i))  # ties: first listed
    if adopt == "better" and rows[best]["verdict"] != compare.BETTER:
        best = 0  # the best score did not beat the default beyond noise
    table = pd.DataFrame(rows)
    table["chosen"] = [i == best for i in range(len(rows))]
    table.attrs.update({"method": method, "rule": rule, "adopt": adopt, "train": train_set.name,
                        "validation": val_set.name, "seeds": tuple(seeds),
                        "images": {k: len(ds) for k, ds in
                                   [("val", val_set), *(extra_val or {}).items()]},
                        "histories": histories})
    _record(method, rows[best]["variant"], table)
    return table, rows[best]["variant"]


def _choice_path(method: str) -> pathlib.Path:
    return pathlib.Path(runtime.RESULTS_DIR) / "selection" / f"{method}.json"


def _record(method: str, label: str, table) -> None:
    """Store the choice beside the results, so a later notebook (07) uses the same design."""
    path = _choice_path(method)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"method": method, "chosen": label, "rule": table.attrs["rule"],
            "adopt": table.attrs["adopt"], "seeds": list(table.attrs["seeds"]),
            "images": table.attrs["images"],
            "train": table.attrs["train"], "validation": table.attrs["validation"],
            "table": json.loads(table.drop(columns=["config"]).to_json(orient="records"))}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(blob, fh, indent=1)
    os.replace(tmp, path)


def chosen(method: str) -> str:
    """The variant :func:`select` chose for ``method`` in the notebook that introduced it."""
    path = _choice_path(method)
    if not path.exists():
        where = {"contcoop": "02", "restore": "04", "arf": "05"}.get(method, "that introduces it")
        raise FileNotFoundError(f"no design has been chosen for {method!r} yet ({path} is "
                                f"missing): run notebook {where} first")
    return json.loads(path.read_text())["chosen"]


def report_convergence(table, title: str):
    """Print the convergence of a selection's runs (``table.attrs["histories"]``), one line on
    them and a line naming any unconverged run behind a comparison, and add to ``table`` a
    ``convergence`` column: each variant against the default (the first row) is a comparison
    too, so each row carries the summary of its own runs and the default's. Returns the
    convergence table. Introduced with the selections of notebooks 02, 04 and 05."""
    from cliptune import convergence
    runs = convergence.report(table.attrs["histories"], title=title)
    default = table.variant.iloc[0]
    table["convergence"], caveats = convergence.for_comparisons(
        runs, [(v, default) for v in table.variant], what="selection runs of")
    print(convergence.summary(runs, title))
    for line in caveats:
        print(line)
    return runs
