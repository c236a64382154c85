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
        n_ctx = int(getattr(self.config, "n_ctx", 0) or 0)  # prompt learners: "X X X X {}."
        check_classnames(clip, classnames, (" ".join(["X"] * n_ctx) + " {}.",) if n_ctx
                         else templates)
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


def _token_count(tokenizer, text_: str) -> int | None:
    """BPE tokens of ``text_`` including start and end, or None if the tokenizer cannot say."""
    inner = getattr(tokenizer, "tokenizer", None)
    for tok in (tokenizer, inner):
        if tok is not None and hasattr(tok, "encode") and hasattr(tok, "sot_token_id"):
            return len(tok.encode(text_)) + 2
    if inner is not None and hasattr(inner, "__call__") and hasattr(inner, "add_special_tokens"):
        return len(inner(text_)["input_ids"])  # a Hugging Face tokenizer adds its own
    return None


def _short(name: str) -> str:
    return name if len(name) <= 60 else f"{name[:30]}...{name[-20:]}"


def check_classnames(clip: models.Clip, classnames, templates=("{}",)) -> None:
    """Refuse class lists that cannot work: empty, blank or repeated names, and prompts longer
    than the text tower's context (the tokenizer would cut them silently, and two long names
    that differ only at the end would become the same class)."""
    if isinstance(classnames, str):
        raise ValueError(f"classnames must be a list of names, not the string {classnames!r}")
    names = list(classnames)
    if not names:
        raise ValueError("the class list is empty: pass at least one class name "
                         "(e.g. ds.classnames)")
    blank = [i for i, c in enumerate(names) if not isinstance(c, str) or not c.strip()]
    if blank:
        raise ValueError(f"class names at positions {blank[:10]} are empty or blank "
                         f"({[names[i] for i in blank[:3]]!r}): such a class can never win; "
                         "give every class a name")
    seen, dups = set(), []
    for c in names:
        key = " ".join(c.replace("_", " ").split()).lower()
        if key in seen and c not in dups:
            dups.append(c)
        seen.add(key)
    if dups:
        raise ValueError(f"class names repeat: {dups[:5]} (compared case- and space-"
                         "insensitively); two identical classes split their images at random. "
                         "Merge them or name them apart")
    context = getattr(clip.tokenizer, "context_length", None) or \
        getattr(clip.model, "context_length", None)
    if not context:
        return
    for t in templates:
        for c in names:
            n = _token_count(clip.tokenizer, t.format(c.replace("_", " ")))
            if n is None:
                return
            if n > context:
                raise ValueError(
                    f"class name {_short(c)!r} is too long for {clip.key}: the prompt {t!r} with it takes "
                    f"{n} tokens, more than the text context of {context}, and the tokenizer "
                    "would cut it (names that differ only past the cut become the same class). "
                    "Shorten the class name" + (" or use fewer context vectors (n_ctx)"
                                                if t.startswith("X X") else ""))


def class_tokens(clip: models.Clip, classnames, template: str) -> torch.Tensor:
    return clip.tokenize([template.format(c.replace("_", " ")) for c in classnames])


@torch.no_grad()
def zero_shot_weights(clip: models.Clip, classnames, templates, chunk_size: int = 256):
    """Class weights [C, D]: each template encoded and normalised, averaged, normalised again."""
    check_classnames(clip, classnames, templates)
    per_template = []
    for t in templates:
        tokens = class_tokens(clip, classnames, t)
        per_template.append(text.encode_text(clip.model, tokens, chunk_size, normalize=True))
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)
