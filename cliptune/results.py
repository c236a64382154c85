"""The results store: tidy rows that notebooks read into pandas.

Introduced in notebook 01. Each run writes its rows to one CSV file named by the hash of its
configuration, atomically (write to a temporary file, then rename). So several runs writing at
once lose nothing, and a rerun of the same configuration replaces its own rows instead of
adding duplicates.

Per-image correctness (for paired comparisons, `cliptune.compare`): a row may carry a boolean
vector under the key ``correct`` (one entry per test image, in the dataset's order). Those
vectors go to ``<label>_<hash>.npz`` beside the CSV, under the key ``row<i>`` of the row's position in
the CSV, so that two methods' vectors for the same task, split, domain, eval model and seed
line up image by image. The archive holds plain boolean arrays only (loaded with
``allow_pickle=False``) and is written atomically like the CSV.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import pathlib
import math
import numbers
import re
import tempfile
import warnings

import numpy as np

from cliptune import runtime

COLUMNS = ("experiment", "method", "dataset", "shots", "seed", "train_model", "eval_model",
           "split", "domain", "metric", "value", "config_hash")


class Stored(str):
    """A run's config hash (a plain string to every caller) that a notebook displays as what
    was stored and where, never as a bare hash."""

    def __new__(cls, h: str, path: pathlib.Path, n_rows: int):
        obj = super().__new__(cls, h)
        obj.description = f"{n_rows} result rows stored in {runtime.display_path(path)}"
        return obj

    def __repr__(self) -> str:
        return self.description

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(self.description)


def config_hash(config: dict) -> str:
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def file_label(config: dict) -> str:
    """A readable prefix for a run's file name, from its config ("base_to_new", "coop-shapes")."""
    parts = [str(config[k]) for k in ("experiment", "method", "task") if
             isinstance(config.get(k), (str, int)) and not isinstance(config.get(k), bool)]
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-.")
    return label[:60] or "run"


def _files_of(root: pathlib.Path, h: str) -> list[pathlib.Path]:
    return [p for p in root.glob(f"*{h}.csv") if p.name == f"{h}.csv" or
            p.name.endswith(f"_{h}.csv")]


def _check_row(row: dict, experiment: str) -> None:
    missing = [c for c in ("method", "metric", "value") if c not in row]
    if missing:
        raise ValueError(f"result row {row} lacks {missing}")
    unknown = set(row) - set(COLUMNS) - {"correct"}
    if unknown:
        raise ValueError(f"result row has unknown columns {sorted(unknown)}; "
                         f"the columns are {COLUMNS} (plus an optional 'correct' vector)")
    value = row["value"]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isinf(value):
        raise ValueError(f"result value {row['value']!r} ({type(row['value']).__name__}) of "
                         f"metric {row['metric']!r}, method {row['method']!r} in experiment "
                         f"{experiment!r} is not a finite number; store numbers only (e.g. "
                         "float(acc)); nothing was written")
    row["value"] = float(value)


def record(experiment: str, config: dict, rows: list[dict], root=None) -> str:
    """Store ``rows`` (dicts with the COLUMNS, less experiment and config_hash) for a run.

    The file is ``<label>_<hash>.csv``: a readable label from the config (its "experiment",
    "method" and "task") and the config hash. Every row is checked before anything is written,
    so a bad row never replaces a run's earlier rows.

    Returns the run's config hash: ``load(experiment, hashes=[...])`` selects exactly those
    runs, so a notebook never mixes in rows that an earlier run with other settings left."""
    root = pathlib.Path(root or runtime.RESULTS_DIR) / experiment
    rows = [dict(r) for r in rows]
    for row in rows:
        _check_row(row, experiment)
    root.mkdir(parents=True, exist_ok=True)
    h = config_hash(config)
    path = root / f"{file_label(config)}_{h}.csv"
    vectors = {f"row{i}": _as_correct(row.pop("correct"), row)
               for i, row in enumerate(rows) if "correct" in row}
    _write_vectors(path.with_suffix(".npz"), vectors)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{h}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS + ("config",))
            writer.writeheader()
            for row in rows:
                writer.writerow({**{c: "" for c in COLUMNS}, **row, "experiment": experiment,
                                 "config_hash": h, "config": json.dumps(config, sort_keys=True,
                                                                       default=str)})
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    for old in _files_of(root, h):  # the same run under an older name: replaced
        if old != path:
            old.unlink(missing_ok=True)
            old.with_suffix(".npz").unlink(missing_ok=True)
    runtime.note_output(path)
    return Stored(h, path, len(rows))


def _as_correct(vec, row) -> np.ndarray:
    arr = np.asarray(vec)
    if arr.ndim != 1 or not (arr.dtype == bool or np.isin(arr, (0, 1)).all()):
        raise ValueError(f"row {row.get('method')}/{row.get('dataset')}: 'correct' must be a 1-D "
                         f"vector of 0/1 or booleans (one per test image), got shape {arr.shape}")
    return arr.astype(bool)


def _write_vectors(path: pathlib.Path, vectors: dict) -> None:
    if not vectors:  # a rerun without vectors must not leave the old run's vectors behind
        path.unlink(missing_ok=True)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as fh:  # a file object: numpy does not append ".npz" to the name
        np.savez_compressed(fh, **vectors)
    os.replace(tmp, path)


def _read_vectors(csv_path: pathlib.Path, n_rows: int) -> list:
    path = csv_path.with_suffix(".npz")
    if not path.exists():
        return [None] * n_rows
    with np.load(path, allow_pickle=False) as z:
        return [z[f"row{i}"] if f"row{i}" in z.files else None for i in range(n_rows)]


def load(experiment: str | None = None, root=None, hashes=None, correct: bool = False):
    """All stored rows (of one experiment, or of all; of some runs only, given their config
    hashes) as a pandas DataFrame. ``correct=True`` adds a column ``correct`` with each row's
    per-image boolean vector (None where the run stored none)."""
    import pandas as pd
    root = pathlib.Path(root or runtime.RESULTS_DIR)
    pattern = f"{experiment}/*.csv" if experiment else "*/*.csv"
    # config_hash as text: a hash such as "041e08637717" would otherwise parse as a float (inf)
    frames = []
    for p in sorted(root.glob(pattern)):
        try:
            frame = pd.read_csv(p, keep_default_na=False, dtype={"config_hash": str})
            frame["value"] = frame["value"].astype(float)  # "nan" (not measured) parses; text does not
        except (ValueError, KeyError, pd.errors.ParserError) as err:
            # one damaged file must not hide every other run's rows
            warnings.warn(f"skipped result file {runtime.display_path(p)}: it is not a valid "
                          f"results table ({type(err).__name__}: {str(err)[:120]}); delete it "
                          "and rerun the notebook that wrote it", stacklevel=2)
            continue
        if correct:
            frame["correct"] = pd.Series(_read_vectors(p, len(frame)), index=frame.index,
                                         dtype=object)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS) + ["config"] + (["correct"] if correct else []))
    df = pd.concat(frames, ignore_index=True)
    if hashes is not None:
        df = df[df.config_hash.isin(list(hashes))].reset_index(drop=True)
    return df


def exists(experiment: str, config: dict, root=None) -> bool:
    return bool(_files_of(pathlib.Path(root or runtime.RESULTS_DIR) / experiment,
                          config_hash(config)))
