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
# where fast runs write when the user has not chosen folders: never a committed file
FAST_DIR = ROOT / "build" / "fast"
_OUTPUT_VARS = {"FIGURES_DIR": ("CLIPTUNE_FIGURES", "figures"),
                "RESULTS_DIR": ("CLIPTUNE_RESULTS", "results"),
                "CHECKPOINT_DIR": ("CLIPTUNE_CHECKPOINTS", "checkpoints")}
_WRITTEN: list[pathlib.Path] = []  # figures and result files written by this process


def fast_dev_run() -> bool:
    """The notebooks' fast mode for tests: CLIPTUNE_FAST_DEV_RUN=1 (papermill: -p FAST_DEV_RUN True)."""
    return os.environ.get("CLIPTUNE_FAST_DEV_RUN", "0").strip().lower() not in ("", "0", "false",
                                                                               "no", "off")


def configure_outputs(fast: bool) -> dict[str, pathlib.Path]:
    """Choose the output folders for a notebook run; returns them.

    A folder named by its environment variable (CLIPTUNE_FIGURES, CLIPTUNE_RESULTS,
    CLIPTUNE_CHECKPOINTS) is always used as given. Otherwise a full run writes to the committed
    figures/ and results/ (checkpoints to data/checkpoints), and a fast run under build/fast/,
    so that a quick check never overwrites what ``make reproduce`` committed."""
    global FIGURES_DIR, RESULTS_DIR, CHECKPOINT_DIR
    defaults = {"FIGURES_DIR": ROOT / "figures", "RESULTS_DIR": ROOT / "results",
                "CHECKPOINT_DIR": DATA_DIR / "checkpoints"}
    chosen = {}
    for attr, (var, sub) in _OUTPUT_VARS.items():
        if os.environ.get(var):
            chosen[attr] = pathlib.Path(os.environ[var])
        else:
            chosen[attr] = FAST_DIR / sub if fast else defaults[attr]
    FIGURES_DIR, RESULTS_DIR, CHECKPOINT_DIR = (chosen["FIGURES_DIR"], chosen["RESULTS_DIR"],
                                                chosen["CHECKPOINT_DIR"])
    _WRITTEN.clear()
    return chosen


def display_path(path) -> str:
    """A path as a notebook may print it: relative to the repository, or to the folder an
    environment variable names; never this machine's absolute path."""
    path = pathlib.Path(path)
    for var in ("CLIPTUNE_FIGURES", "CLIPTUNE_RESULTS", "CLIPTUNE_CHECKPOINTS", "CLIPTUNE_DATA"):
        base = os.environ.get(var)
        if base:
            try:
                rel = path.resolve().relative_to(pathlib.Path(base).resolve())
                return f"${var}" if str(rel) == "." else f"${var}/{rel}"
            except ValueError:
                pass
    try:
        return str(path.resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return path.name if path.is_absolute() else str(path)


def note_output(path) -> None:
    """Remember a figure or result file this run wrote, for :func:`report_outputs`."""
    path = pathlib.Path(path)
    if path not in _WRITTEN:
        _WRITTEN.append(path)


def report_outputs(experiment: str | None = None) -> None:
    """Print where this run's figures and result rows went (repository-relative paths)."""
    figures = [p for p in _WRITTEN if p.suffix == ".png"]
    tables = [p for p in _WRITTEN if p.suffix == ".csv"]
    lines = [f"figures ({len(figures)}) in {display_path(FIGURES_DIR)}/:"]
    lines += [f"  {p.name}" for p in figures] or ["  (none)"]
    where = pathlib.Path(RESULTS_DIR) / experiment if experiment else pathlib.Path(RESULTS_DIR)
    lines.append(f"result rows ({len(tables)} files) in {display_path(where)}/:")
    lines += [f"  {p.name if p.parent == where else display_path(p)}" for p in tables] or \
        ["  (none)"]
    print("\n".join(lines))


def progress(iterable=None, **kwargs):
    """A progress bar for a loop of more than a few seconds: tqdm.auto (a widget in JupyterLab,
    text in a terminal), and a text bar on stderr in a kernel that papermill, nbval or
    nbconvert started, so that their logs show it. CLIPTUNE_PROGRESS=text forces text bars,
    CLIPTUNE_PROGRESS=off hides them."""
    mode = os.environ.get("CLIPTUNE_PROGRESS", "auto").lower()
    if mode in ("off", "0", "none"):
        kwargs["disable"] = True
    if mode == "text" or _headless_kernel():
        from tqdm.std import tqdm
        import sys
        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("mininterval", 10.0)  # a log line every 10 s at most
        kwargs.setdefault("ncols", 100)
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)


def _headless_kernel() -> bool:
    """True in a kernel started by a batch runner (papermill, nbval, nbconvert): no widget
    frontend is attached, so a widget bar would be stored as a frozen text repr."""
    try:
        from IPython import get_ipython
        ip = get_ipython()
    except ImportError:
        return False
    if ip is None or "IPKernelApp" not in getattr(ip, "config", {}):
        return False
    try:
        parent = pathlib.Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return any(name in parent for name in (b"papermill", b"pytest", b"nbconvert", b"nbclient"))


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
