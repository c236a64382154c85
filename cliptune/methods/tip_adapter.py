"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022): a key-value cache of the few shots.

    keys   K = normalize( mean_v  f_v(x_i) )      [NK, D]  features of the training images,
                                                           averaged over augmented views
    values L = onehot(y_i)                        [NK, C]
    logits = exp(t) f W^T + alpha exp(-beta (1 - f K^T)) L

(the buffer ``alpha`` holds the weight as used on these logits: see ``alpha_scale`` below).
W are the zero-shot class weights of the attached model (the dataset's first, hand-made
template; ``ensemble=True`` averages all of them) and f the normalised test feature.

Introduced in notebook 03. Tip-Adapter is training-free: the cache is built by
:meth:`TipAdapter.on_train_start` (``protocols.train_method`` calls it for modules with nothing
to train). Tip-Adapter-F makes the keys a parameter, initialised with the cache and trained
with CE on the same logits (AdamW, lr 1e-3 in the paper; the notebook's TrainConfig says so).

Deviations from the official code, each a documented choice:

- The clip term uses the attached model's temperature exp(t) instead of the hard-coded 100
  (OpenAI CLIP's exp(t) is 100, so nothing changes there; the tiny models learn their own).
  alpha weighs the cache against those logits, so it is kept on the paper's scale: with
  ``alpha_scale="paper"`` (default) the cache weight used is ``alpha * exp(t) / 100``, the
  paper's ratio of cache to clip logits (ImageNet's init alpha 1.17 is the default), and the
  search grid is scaled the same way. ``alpha_scale="raw"`` uses ``alpha`` as given on the
  exp(t) logits: the workbook's earlier default (alpha 1 on a temperature near 28 weighs the
  cache about 3x the paper's), kept as the preset ``PRESETS["raw-alpha"]``.
- The cache averages view 0 (the clean image) and views 1..n_views (default 4) of the seeded
  flip-and-shift augmentation of :mod:`cliptune.features` (the paper: 10 passes of random
  resized crops and flips).
- alpha and beta are searched on a validation split (:meth:`search_hyperparameters`), as the
  paper does; Tip-Adapter-F trains with the initial alpha, beta and is searched again after.
  The official Tip-Adapter-F keeps the epoch with the best *test* accuracy; here the last
  epoch is kept and nothing looks at the test set.

What the cache means for a model update (notebook 07): the keys are old-space image features,
i.e. state. ``rebuild_keys_on_attach=False`` (default, the pure plug-in that the
compatibility analysis uses) carries the old keys to the new model, so the new model's test
features are compared with the old model's training features. ``True`` recomputes the keys
with the new image encoder, which needs the training images (remembered by
:meth:`on_train_start` or given with :meth:`use_training_images`). For Tip-Adapter-F a rebuild
discards what training changed in the keys.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from cliptune import features
from cliptune.methods import base
from cliptune.methods.linear_probe import check_class_list


@dataclasses.dataclass
class TipAdapterConfig:
    alpha: float = 1.17  # cache weight (paper: per-dataset init 1.17 .. 10; ImageNet 1.17)
    alpha_scale: str = "paper"  # "paper": alpha * exp(t) / 100 on our logits; "raw": alpha
    beta: float = 1.0  # sharpness of the affinities (paper: init 1)
    # augmented views averaged into the keys, plus the clean view 0. The paper uses 10 passes;
    # 4 (TrainConfig's default n_views) keeps the CPU budget, and with view_seed 1 a seed-1
    # training run's cached views are the same tensors (features.image_features caches them).
    n_views: int = 4
    view_seed: int = 1  # the paper fixes its augmentation seed to 1
    ensemble: bool = False  # False: the dataset's first (hand-made) template, as in the paper
    rebuild_keys_on_attach: bool = False  # False = pure plug-in: keep the old-space keys
    classnames: tuple = ()  # the classes of the values' columns, filled when the cache is built


ALPHA_SCALES = ("paper", "raw")
PRESETS = {"paper": {}, "raw-alpha": {"alpha": 1.0, "alpha_scale": "raw"}}


def default_grid(logit_scale: float = 100.0, search_scale=(7.0, 3.0), steps=(50, 20)) -> dict:
    """The paper's search grid, scaled for the tiny world.

    The paper searches beta over ``steps[0]`` values in [0.1, search_scale[0]) and alpha over
    ``steps[1]`` values in [0.1, search_scale[1]) (200 x 20 steps; ImageNet's scale (7, 3) is
    the smallest in its configs and is the default here). The tiny world uses 50 beta steps
    (its validation sets are small, finer steps only fit noise) and scales alpha by
    exp(t) / 100 because the clip logits here are exp(t) cos, not 100 cos.
    """
    def span(top, n):
        return [0.1 + i * (top - 0.1) / n for i in range(n)]
    ratio = float(logit_scale) / 100.0
    return {"beta": span(search_scale[0], steps[0]),
            "alpha": [a * ratio for a in span(search_scale[1], steps[1])]}


class TipAdapter(base.Method):
    name = "tip-adapter"
    Config = TipAdapterConfig
    learnable_keys = False

    def __init__(self, clip, config=None):
        super().__init__(config)
        if self.config.alpha_scale not in ALPHA_SCALES:
            raise ValueError(f"{self.name} alpha_scale must be one of {ALPHA_SCALES}, not "
                             f"{self.config.alpha_scale!r}")
        dim = base.model_widths(clip.model)["embed dim"]
        n_classes = len(self.config.classnames)
        empty = torch.zeros(0, dim)
        if self.learnable_keys:  # the Parameter object is kept; building the cache fills it
            self.keys = nn.Parameter(empty)
        else:
            self.register_buffer("keys", empty)
        self.register_buffer("values", torch.zeros(0, n_classes))
        # alpha and beta are state: the search changes them, and they travel with the cache
        self.register_buffer("alpha", torch.tensor(float(self.config.alpha)))
        self.register_buffer("beta", torch.tensor(float(self.config.beta)))
        self.record_widths(clip, "embed dim")
        self._train_set = None
        self._keys_from = None  # (model key, id) of the encoder the keys came from, if known

    # ------------------------------------------------------------------ the cache
    @torch.no_grad()
    def cache_features(self, train_set) -> torch.Tensor:
        """Keys for ``train_set`` under the attached model: views 0..n_views averaged, normalised."""
        views = [features.image_features(self.clip, train_set, v, seed=self.config.view_seed)
                 for v in range(self.config.n_views + 1)]
        return F.normalize(torch.stack(views).mean(0), dim=-1)

    def use_training_images(self, train_set) -> None:
        """Remember the training images, so that ``rebuild_keys_on_attach`` can re-encode them."""
        if self.config.classnames:
            check_class_list(self, self.config.classnames, train_set.classnames)
        self._train_set = train_set

    @torch.no_grad()
    def build_cache(self, train_set) -> None:
        """Keys from the attached model's features of ``train_set``, one-hot values, alpha, beta."""
        check_class_list(self, self.classnames, train_set.classnames)
        if len(train_set) == 0:
            raise ValueError(f"{self.name}: the training set {train_set.name} is empty; the cache "
                             "needs at least one image per class")
        self._train_set = train_set
        keys = self.cache_features(train_set).to(self.clip.device)
        labels = torch.as_tensor(train_set.labels, device=keys.device)
        self.keys.data = keys.clone()  # .data: a learnable key Parameter stays the same object
        self.values = F.one_hot(labels, len(self.classnames)).float()
        self.alpha.fill_(self.initial_alpha())
        self.beta.fill_(float(self.config.beta))
        self.config = dataclasses.replace(self.config, classnames=tuple(self.classnames))
        self._keys_from = (self.clip.key, id(self.clip.model))

    def on_train_start(self, train_set) -> None:
        self.build_cache(train_set)

    def initial_alpha(self) -> float:
        """The cache weight on this model's logits: the paper's alpha times exp(t) / 100
        (``alpha_scale="paper"``), so cache and clip logits keep the paper's ratio."""
        if self.config.alpha_scale == "raw":
            return float(self.config.alpha)
        return float(self.config.alpha) * float(self.logit_scale()) / 100.0

    def on_attach(self):
        templates = self.templates if self.config.ensemble else self.templates[:1]
        self.register_buffer("weights", base.zero_shot_weights(self.clip, self.classnames,
                                                               templates), persistent=False)
        if self.config.classnames:  # a cache exists: its values are one-hot in these classes
            check_class_list(self, self.config.classnames, self.classnames)
        if self.config.rebuild_keys_on_attach and len(self.keys) and \
                self._keys_from != (self.clip.key, id(self.clip.model)):
            if self._train_set is None:
                raise RuntimeError(
                    f"{self.name} has rebuild_keys_on_attach=True, so its keys must be re-encoded "
                    f"by {self.clip.key}, but it does not know the training images: call "
                    ".use_training_images(train_set) before attaching (or use "
                    "rebuild_keys_on_attach=False to carry the old keys)")
            keys = self.cache_features(self._train_set).to(self.keys.device)
            self.keys.data = keys.clone()
            self._keys_from = (self.clip.key, id(self.clip.model))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # A module created before its cache existed holds empty keys and values: take the
        # saved shapes (the Parameter object of Tip-Adapter-F's keys stays the same).
        for key in ("keys", "values"):
            if key in state_dict and getattr(self, key).shape != state_dict[key].shape:
                getattr(self, key).data = torch.empty_like(state_dict[key]).to(self.alpha.device)
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        # The training loop loads a finished checkpoint into a module attached to the model it
        # was trained on; a module loaded before any attach has keys of unknown origin.
        self._keys_from = None if self._clip is None else (self.clip.key, id(self.clip.model))
        return out

    # ------------------------------------------------------------------ logits
    def cache_logits(self, f: torch.Tensor, keys=None, beta=None) -> torch.Tensor:
        """exp(-beta (1 - f K^T)) L: affinities to the cached shots, summed per class."""
        keys = self.keys if keys is None else keys
        beta = self.beta if beta is None else beta
        if len(keys) == 0:
            raise RuntimeError(f"{self.name} has no cache yet: call on_train_start(train_set) "
                               "(protocols.train_method does) or load a saved module")
        affinity = f @ keys.T
        return torch.exp(-beta * (1 - affinity)) @ self.values

    def clip_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.logit_scale() * f @ self.weights.T

    def forward(self, batch):
        f = self.image_features(batch)
        return self.clip_logits(f) + self.alpha * self.cache_logits(f)

    # ------------------------------------------------------------------ the search
    @torch.no_grad()
    def search_hyperparameters(self, val_features, val_labels, grid: dict | None = None):
        """Grid-search alpha and beta on a validation split; keep the best (first on ties).

        ``val_features``: normalised features [N, D] of the validation images under the attached
        model; ``grid``: {"alpha": [...], "beta": [...]} (default: :func:`default_grid`).
        Returns {"alpha", "beta", "accuracy", "table"}; ``table`` holds every (beta, alpha, acc).
        """
        grid = grid or default_grid(float(self.logit_scale()))
        missing = {"alpha", "beta"} - set(grid)
        if missing:
            raise KeyError(f"the search grid needs lists for 'alpha' and 'beta'; missing {missing}")
        f = val_features.to(self.keys.device).float()
        y = torch.as_tensor(val_labels, device=f.device)
        if len(f) != len(y) or len(f) == 0:
            raise ValueError(f"{len(f)} validation features but {len(y)} labels; give one label "
                             "per feature (and at least one)")
        base_logits = self.clip_logits(f)
        best, table = (-1.0, float(self.alpha), float(self.beta)), []
        for beta in grid["beta"]:
            cache = self.cache_logits(f, beta=torch.tensor(float(beta)))
            for alpha in grid["alpha"]:
                acc = 100.0 * float(((base_logits + alpha * cache).argmax(-1) == y).float().mean())
                table.append((float(beta), float(alpha), acc))
                if acc > best[0]:
                    best = (acc, float(alpha), float(beta))
        self.alpha.fill_(best[1])
        self.beta.fill_(best[2])
        return {"alpha": best[1], "beta": best[2], "accuracy": best[0], "table": table}


class TipAdapterF(TipAdapter):
    """Tip-Adapter-F: the same logits, with the keys as a trainable parameter (initialised from
    the cache). Values, alpha and beta stay fixed during training; alpha and beta are searched
    again afterwards."""
    name = "tip-adapter-f"
    learnable_keys = True


def validation_split(full_train, train_set, shots: int, seed: int):
    """A few-shot validation set from ``full_train`` that shares no image with ``train_set``.

    CoOp's protocol: min(K, 4) shots per class for validation. Images of ``train_set`` are
    recognised by their bytes, so the two sets are disjoint even though both come from the
    same training split.
    """
    import numpy as np
    import random
    used = {bytes(np.asarray(im).tobytes()) for im in train_set.images}
    rng = random.Random(10_000 + seed)
    idx = []
    for c in range(len(full_train.classnames)):
        members = [i for i in np.flatnonzero(full_train.labels == c)
                   if bytes(np.asarray(full_train.images[i]).tobytes()) not in used]
        if len(members) < shots:
            raise ValueError(f"class {full_train.classnames[c]!r} has {len(members)} training "
                             f"images left after the few-shot draw; {shots} are needed for "
                             "validation: use fewer validation shots")
        idx += rng.sample(members, shots)
    return full_train.subset(idx, name=f"{full_train.name}/val{shots}-s{seed}")


def train_and_search(name: str, clip, train_set, val_set, seed: int = 1, train_cfg=None,
                     grid: dict | None = None, **method_cfg):
    """``protocols.train_method`` (cache, and training for Tip-Adapter-F; checkpoints reused),
    then the alpha/beta search on ``val_set`` under ``clip``. Cheap and deterministic, so
    notebook 07 gets the same module by calling it again. Returns (method, search result);
    the result also holds the training ``history`` (empty for the training-free cache)."""
    from cliptune import protocols
    if name not in ("tip-adapter", "tip-adapter-f"):
        raise ValueError(f"train_and_search is for tip-adapter and tip-adapter-f, not {name!r}")
    method, history = protocols.train_method(name, clip, train_set, seed, train_cfg, **method_cfg)
    method.use_training_images(train_set)  # also after a checkpoint load: rebuilds may need them
    result = method.search_hyperparameters(features.image_features(clip, val_set),
                                           val_set.labels, grid)
    return method, {**result, "history": history}
