"""Accuracy, base/new harmonic mean, accuracy per domain, compatibility gain.

Introduced in notebook 01 and used by every notebook after it.
"""
from __future__ import annotations

import numpy as np
import torch

from cliptune import features, runtime
from cliptune.methods.base import Batch


@torch.no_grad()
def predict(method, ds, batch_size: int = 1024) -> torch.Tensor:
    """Logits [N, C] of ``method`` (attached to a model and ``ds``'s classes) on ``ds``."""
    if tuple(method.classnames) != tuple(ds.classnames):
        raise ValueError(f"{method.name} is attached to {len(method.classnames)} classes that are "
                         f"not {ds.name}'s; call method.attach(clip, ds.classnames) first")
    was_training = method.training
    method.eval()
    clip = method.clip
    labels = torch.as_tensor(ds.labels)
    out = []
    if method.frozen_image_encoder:
        feats = features.image_features(clip, ds)
        for i in range(0, len(ds), batch_size):
            sl = slice(i, i + batch_size)
            out.append(method(Batch(labels[sl], torch.arange(len(ds))[sl],
                                    features=feats[sl])).float())
    else:
        slow = len(ds) * (1 if clip.is_tiny else 50) > 20_000
        for i in runtime.progress(range(0, len(ds), batch_size), desc=f"evaluate {method.name}",
                                  disable=not slow, leave=False):
            idx = list(range(i, min(i + batch_size, len(ds))))
            out.append(method(Batch(labels[idx], torch.tensor(idx),
                                    pixels=features.pixels(clip, ds, idx))).float())
    method.train(was_training)
    return torch.cat(out).cpu()


def correct(method, ds) -> np.ndarray:
    """Per-image top-1 correctness (bool [N], in ``ds``'s order): what ``cliptune.compare``
    pairs image by image between two methods."""
    logits = predict(method, ds)
    return (logits.argmax(-1) == torch.as_tensor(ds.labels)).numpy()


def accuracy(method, ds) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * float(correct(method, ds).mean())


def per_class_accuracy(method, ds) -> torch.Tensor:
    pred = predict(method, ds).argmax(-1)
    y = torch.as_tensor(ds.labels)
    return torch.stack([100.0 * (pred[y == c] == c).float().mean()
                        for c in range(len(ds.classnames))])


def harmonic_mean(base: float, new: float) -> float:
    return 0.0 if base + new == 0 else 2 * base * new / (base + new)
