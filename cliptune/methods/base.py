"""The method contract: model-agnostic trainable state, attached to a CLIP to make logits.

Introduced in notebook 02. A method holds only what it learns (context vectors, adapter
weights, a cache) in its ``state_dict``. :meth:`Method.attach` binds it to a CLIP and a class
list and recomputes everything model-specific (token embeddings of the class names, zero-shot
weights, ...) as non-persistent buffers. Attaching the same trained state to another CLIP is
the model-update experiment of notebook 07.

What the training loop (``cliptune.train.fit``) and the evaluation (``cliptune.evaluate``) call:

- ``frozen_image_encoder``: if True, the loop hands the method cached image features
  (``batch.features``); otherwise preprocessed pixels (``batch.pixels``).
- ``forward(batch) -> logits [B, C]``.
- ``loss(batch, logits) -> (loss, {name: float})``: cross-entropy unless a method adds terms.
- ``on_epoch_end(epoch, epochs)``: a hook for schedules such as RESTORE's ratio update.
"""
from __future__ import annotations

import dataclasses
import json

import torch
import torch.nn.functional as F
from torch import nn

from cliptune import models, text


class WidthMismatchError(ValueError):
    pass


@dataclasses.dataclass
class Batch:
    labels: torch.Tensor
    index: torch.Tensor  # positions in the training ImageSet (ARF looks captions up by them)
    features: torch.Tensor | None = None  # normalised image features, frozen encoder
    pixels: torch.Tensor | None = None  # model input, trainable encoder
    step: int = 0
    generator: torch.Generator | None = None


class Method(nn.Module):
    name = "method"
    frozen_image_encoder = True
    Config = None  # a dataclass of hyper-parameters, saved beside the weights

    def __init__(self, config=None):
        super().__init__()
        self.config = config if config is not None else self.Config()
        self._clip = None
        self.classnames: tuple = ()
        self.templates: tuple = ()

    # ------------------------------------------------------------------ attaching
    @property
    def clip(self) -> models.Clip:
        if self._clip is None:
            raise RuntimeError(f"{self.name} is not attached to a model: call "
                               ".attach(clip, classnames) first")
        return self._clip

    def __setattr__(self, key, value):
        if key == "_clip":  # never register the CLIP as a submodule: it is not our state
            object.__setattr__(self, key, value)
        else:
            super().__setattr__(key, value)

    def attach(self, clip: models.Clip, classnames, templates=("a photo of a {}.",)):
        """Bind to ``clip`` and a class list; recompute what depends on them. Returns self."""
        self.check_widths(clip)
        self._clip = clip
        self.classnames = tuple(classnames)
        self.templates = tuple(templates)
        self.to(clip.device)
        with torch.no_grad():
            self.on_attach()
        return self

    def widths(self) -> dict[str, int]:
        """Widths this method's state was built for, e.g. {"text width": 512}. Empty if none."""
        return dict(getattr(self, "_built_widths", {}))

    def check_widths(self, clip: models.Clip) -> None:
        have = model_widths(clip.model)
        for key, want in self.widths().items():
            if have.get(key) != want:
                raise WidthMismatchError(
                    f"{self.name} was built for {key} {want}, but {clip.key} has {key} "
                    f"{have.get(key)}. A module only attaches to models of the same widths; "
                    "retrain it on this model instead.")

    def record_widths(self, clip: models.Clip, *keys) -> None:
        have = model_widths(clip.model)
        self._built_widths = {k: have[k] for k in keys}

    def on_attach(self) -> None:
        """Recompute model-specific buffers for ``self.clip`` and ``self.classnames``."""

    # ------------------------------------------------------------------ training
    def forward(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: Batch, logits: torch.Tensor):
        ce = F.cross_entropy(logits, batch.labels)
        return ce, {"ce": ce.item()}

    def on_epoch_end(self, epoch: int, epochs: int) -> None:
        pass

    def on_train_start(self, train_set) -> None:
        """Called once by the training loop before the first step (e.g. to build a cache)."""

    # ------------------------------------------------------------------ helpers
    def image_features(self, batch: Batch) -> torch.Tensor:
        if batch.features is not None:
            return batch.features
        return F.normalize(self.clip.model.encode_image(batch.pixels), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.clip.model.logit_scale.exp().detach()

    # ------------------------------------------------------------------ saving
    def save(self, path) -> str:
        """Save the learned state (safetensors) with the method name, config and widths."""
        meta = {"method": self.name, "config": json.dumps(dataclasses.asdict(self.config)),
                "widths": json.dumps(self.widths())}
        return models.save_weights(self.state_dict(), path, metadata=meta)


def model_widths(model) -> dict[str, int]:
    """The widths that decide whether a module can move between two models."""
    tower = text.text_tower(model)
    out = {"text width": tower.width, "embed dim": _embed_dim(model)}
    from open_clip.transformer import VisionTransformer
    if isinstance(model.visual, VisionTransformer):
        out["vision width"] = model.visual.conv1.out_channels
    return out


def _embed_dim(model) -> int:
    tower = text.text_tower(model)
    if tower.projection is None:
        return tower.width
    if isinstance(tower.projection, nn.Linear):
        return tower.projection.out_features
    return tower.projection.shape[1]


def class_tokens(clip: models.Clip, classnames, template: str) -> torch.Tensor:
    return clip.tokenize([template.format(c.replace("_", " ")) for c in classnames])


@torch.no_grad()
def zero_shot_weights(clip: models.Clip, classnames, templates, chunk_size: int = 256):
    """Class weights [C, D]: each template encoded and normalised, averaged, normalised again."""
    per_template = []
    for t in templates:
        tokens = class_tokens(clip, classnames, t)
        per_template.append(text.encode_text(clip.model, tokens, chunk_size, normalize=True))
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)
