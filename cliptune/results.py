"""The results store: tidy rows that notebooks read into pandas.

Introduced in notebook 01. Each run writes its rows to one CSV file named by the hash of its
configuration, atomically (write to a temporary file, then rename). So several runs writing at
once lose nothing, and a rerun of the same configuration replaces its own rows instead of
adding duplicates.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import pathlib
import tempfile

from cliptune import runtime

COLUMNS = ("experiment", "method", "dataset", "shots", "seed", "train_model", "eval_model",
           "split", "domain", "metric", "value", "config_hash")


def config_hash(config: dict) -> str:
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def record(experiment: str, config: dict, rows: list[dict], root=None) -> str:
    """Store ``rows`` (dicts with the COLUMNS, less experiment and config_hash) for a run.

    Returns the run's config hash: ``load(experiment, hashes=[...])`` selects exactly those
    runs, so a notebook never mixes in rows that an earlier run with other settings left."""
    root = pathlib.Path(root or runtime.RESULTS_DIR) / experiment
    root.mkdir(parents=True, exist_ok=True)
    h = config_hash(config)
    path = root / f"{h}.csv"
    fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS + ("config",))
        writer.writeheader()
        for row in rows:
            missing = [c for c in ("method", "metric", "value") if c not in row]
            if missing:
                raise ValueError(f"result row {row} lacks {missing}")
            unknown = set(row) - set(COLUMNS)
            if unknown:
                raise ValueError(f"result row has unknown columns {sorted(unknown)}; "
                                 f"the columns are {COLUMNS}")
            writer.writerow({**{c: "" for c in COLUMNS}, **row, "experiment": experiment,
                             "config_hash": h, "config": json.dumps(config, sort_keys=True,
                                                                   default=str)})
    os.replace(tmp, path)
    return h


def load(experiment: str | None = None, root=None, hashes=None):
    """All stored rows (of one experiment, or of all; of some runs only, given their config
    hashes) as a pandas DataFrame."""
    import pandas as pd
    root = pathlib.Path(root or runtime.RESULTS_DIR)
    pattern = f"{experiment}/*.csv" if experiment else "*/*.csv"
    # config_hash as text: a hash such as "041e08637717" would otherwise parse as a float (inf)
    frames = [pd.read_csv(p, keep_default_na=False, dtype={"config_hash": str})
              for p in sorted(root.glob(pattern))]
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS) + ["config"])
    df = pd.concat(frames, ignore_index=True)
    df["value"] = df["value"].astype(float)
    if hashes is not None:
        df = df[df.config_hash.isin(list(hashes))].reset_index(drop=True)
    return df


def exists(experiment: str, config: dict, root=None) -> bool:
    return (pathlib.Path(root or runtime.RESULTS_DIR) / experiment / f"{config_hash(config)}.csv"
            ).exists()
