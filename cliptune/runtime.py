"""Paths, the device, precision and seeds: every such choice lives here and nowhere else.

Introduced in notebook 00.
"""
from __future__ import annotations

import contextlib
import os
import pathlib

import torch

ROOT = pathlib.Path(os.environ.get("CLIPTUNE_HOME", pathlib.Path(__file__).resolve().parent.parent))
DATA_DIR = pathlib.Path(os.environ.get("CLIPTUNE_DATA", ROOT / "data"))
FIGURES_DIR = pathlib.Path(os.environ.get("CLIPTUNE_FIGURES", ROOT / "figures"))
RESULTS_DIR = pathlib.Path(os.environ.get("CLIPTUNE_RESULTS", ROOT / "results"))
CHECKPOINT_DIR = pathlib.Path(os.environ.get("CLIPTUNE_CHECKPOINTS", DATA_DIR / "checkpoints"))


def fast_dev_run() -> bool:
    """The notebooks' fast mode for tests: CLIPTUNE_FAST_DEV_RUN=1 (papermill: -p FAST_DEV_RUN True)."""
    return os.environ.get("CLIPTUNE_FAST_DEV_RUN", "0") not in ("", "0", "false", "False")


def device() -> torch.device:
    """CUDA when present (set CLIPTUNE_DEVICE=cpu to refuse it), else the CPU."""
    wanted = os.environ.get("CLIPTUNE_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(dev: torch.device | str | None = None):
    """bf16 autocast on CUDA; on the CPU, plain fp32 so that results are exactly reproducible."""
    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def generator(seed: int, *salt) -> torch.Generator:
    """A CPU generator whose stream depends only on the seed and the salt, never on call order."""
    from cliptune.world import _stable_seed
    return torch.Generator().manual_seed(_stable_seed(seed, *salt) % (2 ** 63))


def set_threads() -> None:
    """Use every core, but a fixed number of them, so that CPU runs repeat bit for bit."""
    n = int(os.environ.get("CLIPTUNE_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(n)
