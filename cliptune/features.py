"""Cached image features: a frozen image encoder is run once per (model, images, view).

Introduced in notebook 02. View 0 is the un-augmented image; view k > 0 is a fixed random
augmentation drawn with seed k, so a training step with a frozen encoder costs only what the
method trains (benchmarks/bench_feature_cache.py measures the difference).
"""
from __future__ import annotations

import collections
import hashlib
import os
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

from cliptune import models, runtime

_CACHE: "collections.OrderedDict[tuple, torch.Tensor]" = collections.OrderedDict()
MAX_ENTRIES = 256


def disk_dir() -> pathlib.Path | None:
    """Where features of models loaded from a weights file persist between processes, so that
    notebooks encoding the same test sets with the same zoo model (00, 01, 07, ...) encode them
    once: CLIPTUNE_FEATURE_CACHE (a folder, or "off"); by default data/cache/features (not
    committed)."""
    value = os.environ.get("CLIPTUNE_FEATURE_CACHE", "").strip()
    if value.lower() in ("off", "0", "false", "no"):
        return None
    return pathlib.Path(value) if value else runtime.DATA_DIR / "cache" / "features"


_FINGERPRINTS: dict = {}


def fingerprint(model: torch.nn.Module) -> str:
    """A hash of the image tower's current weights: a cached file is only ever read back for
    exactly these weights, even if a loaded model was changed in place. Hashed once per state:
    every in-place change bumps a tensor's version counter, which is part of the memo key."""
    state = sorted(model.visual.state_dict(keep_vars=True).items())
    key = (id(model), tuple(t._version for _, t in state))
    if key not in _FINGERPRINTS:
        h = hashlib.sha1()
        for name, t in state:
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        _FINGERPRINTS[key] = h.hexdigest()[:16]
    return _FINGERPRINTS[key]


def _disk_path(clip: models.Clip, set_key: str, view: int, seed: int) -> pathlib.Path | None:
    root = disk_dir()
    if root is None or not clip.weights_sha256:
        return None  # fine-tuned copies are not persisted
    return root / fingerprint(clip.model) / f"{set_key}-v{view}-s{seed}.safetensors"


def _cached(clip: models.Clip, set_key: str, view: int, seed: int):
    """Features of the image set whose key is ``set_key``, from memory or else from the disk
    cache (then kept in memory, so a file is read once per process); None if neither has
    them or the file is damaged (it is then encoded again and overwritten)."""
    key = (clip.key, id(clip.model), set_key, view, seed)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    path = _disk_path(clip, set_key, view, seed)
    if path is None or not path.exists():
        return None
    try:
        feats = models.load_weights(path)["features"].to(clip.device)
    except (ValueError, KeyError):
        return None
    _remember(key, feats)
    return feats


def pixels(clip: models.Clip, ds, idx, view: int = 0, seed: int = 0) -> torch.Tensor:
    """Model input for images ``idx`` of ``ds``; view > 0 applies a seeded augmentation."""
    x = clip.prepare(ds.raw(idx))
    if view > 0:
        x = models.augment(x.cpu(), runtime.generator(seed, "view", view)).to(x.device)
    return x


@torch.no_grad()
def image_features(clip: models.Clip, ds, view: int = 0, batch_size: int = 256,
                   seed: int = 0) -> torch.Tensor:
    """Normalised features [N, D] of every image in ``ds`` under ``clip``, computed once."""
    key = (clip.key, id(clip.model), ds.key, view, seed)
    persist = isinstance(ds.images, np.ndarray)  # image-file datasets are not persisted
    feats = _cached(clip, ds.key, view, seed) if persist else _CACHE.get(key)
    if feats is not None and len(feats) == len(ds):
        return feats
    sliced = _from_parent(clip, ds, view, seed)
    if sliced is not None:
        _remember(key, sliced)
        return sliced
    path = _disk_path(clip, ds.key, view, seed) if persist else None
    clip.model.eval()
    out = []
    starts = range(0, len(ds), batch_size)
    # a bar only where encoding takes a while (real-scale models, large sets)
    slow = len(ds) * (1 if clip.is_tiny else 50) > 20_000
    for i in runtime.progress(starts, desc=f"image features ({ds.name}, view {view})",
                              disable=not slow, leave=False):
        idx = range(i, min(i + batch_size, len(ds)))
        with runtime.autocast(clip.device):
            out.append(clip.model.encode_image(pixels(clip, ds, list(idx), view, seed)).float())
    feats = F.normalize(torch.cat(out), dim=-1)
    _remember(key, feats)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        models.save_weights({"features": feats.cpu().contiguous()}, path)
    return feats


def _from_parent(clip: models.Clip, ds, view: int, seed: int):
    """A subset's un-augmented features sliced out of an ancestor's cached ones (a base/new
    split, a few-shot draw). Augmented views are not: a view's augmentation is drawn per batch,
    so an image's view depends on its neighbours."""
    if view != 0:
        return None
    for parent_key, idx in getattr(ds, "origin", ()):
        idx = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        parent = _cached(clip, parent_key, view, seed) if len(idx) else None
        if parent is not None and int(idx.max()) < len(parent):
            return parent[idx.to(parent.device)]
    return None


def _remember(key, feats) -> None:
    _CACHE[key] = feats
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)


def clear() -> None:
    _CACHE.clear()
