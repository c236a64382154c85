"""Shared fixtures. The environment is set before anything imports open_clip or torch hubs."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub: no network here
os.environ.setdefault("CLIPTUNE_DEVICE", "cpu")
os.environ.setdefault("CLIPTUNE_FEATURE_CACHE", "off")  # tests that want it name a folder

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_clip():
    """A randomly initialised tiny CLIP (the zoo's architecture), frozen, on the CPU."""
    from cliptune import models
    model = models.build_tiny("tiny-clip", seed=0).requires_grad_(False).eval()
    return models.Clip("tiny-rand", None, model, models._open_clip().get_tokenizer("tiny-clip"))


@pytest.fixture(scope="session")
def wide_clip():
    """A tiny CLIP of other widths (text 96, embed 96), for width-mismatch errors."""
    from cliptune import models
    model = models.build_tiny("tiny-clip-wide", seed=0).requires_grad_(False).eval()
    return models.Clip("tiny-wide", None, model, models._open_clip().get_tokenizer("tiny-clip-wide"))


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    """Results, figures and checkpoints of a test go to its own temporary folder."""
    from cliptune import runtime
    monkeypatch.setattr(runtime, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(runtime, "FIGURES_DIR", tmp_path / "figures")
    monkeypatch.setattr(runtime, "CHECKPOINT_DIR", tmp_path / "checkpoints")
