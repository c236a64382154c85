"""Cached image features: a frozen image encoder is run once per (model, images, view).

Introduced in notebook 02. View 0 is the un-augmented image; view k > 0 is a fixed random
augmentation drawn with seed k, so a training step with a frozen encoder costs only what the
method trains (benchmarks/bench_feature_cache.py measures the difference).
"""
from __future__ import annotations

import collections

import torch
import torch.nn.functional as F

from cliptune import models, runtime

_CACHE: "collections.OrderedDict[tuple, torch.Tensor]" = collections.OrderedDict()
MAX_ENTRIES = 256


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
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
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
    _CACHE[key] = feats
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)
    return feats


def clear() -> None:
    _CACHE.clear()
