"""Full fine-tuning (FT) and linear-probe-then-fine-tune (LP-FT): the robust fine-tuning baselines.

Introduced in notebook 05. The zero-shot head follows the WiSE-FT convention (Wortsman et al.,
CVPR 2022): for class c, every template is encoded and normalised, the results averaged and
normalised again (w_c); the head is a linear layer initialised at the temperature-scaled
weights, so that at step 0 the fine-tuned model *is* zero-shot CLIP:

    z = normalize(f_theta(x))                    (image encoder, trained)
    logits = z W^T + b,    W_0 = exp(t) [w_1 ... w_C],   b_0 = 0
    FT:     L = CE(logits, y)       theta, W, b trained with AdamW; the text tower is not trained

    LP-FT (Kumar et al., ICLR 2022): first a linear probe on the frozen encoder, then the
    whole model fine-tuned from the probe's head.
      stage 1 (default ``lp_solver="lbfgs"``): L2-regularised logistic regression on the clean
        features of the training images, solved to convergence before the first step, C by
        cross-validation on them (as Kumar et al. fit it);
      stage 2: theta, W, b trained by ``train.fit`` over the same schedule as FT,
        lr x ft_lr_scale (< 1: VRF's description, LP-FT fine-tunes at 1/3 of FT's lr)

The earlier variant (``lp_solver="sgd"``, preset ``shared-schedule``) ran both stages inside
one cosine schedule: the first ``lp_steps`` steps trained only W, b at ``lp_lr_scale`` times
the base lr, so stage 2 got only the tail of the schedule (a few percent of FT's summed
learning rate): LP-FT against FT then compared training budgets, not methods.
``train.fit`` multiplies the schedule by :meth:`LPFT.lr_multiplier`, so a resumed run lands
on exactly the same numbers.

**These methods train CLIP's weights, so unlike prompts and adapters they are not
model-agnostic.** The method deep-copies the CLIP it is created with into the submodule
``net`` (the only copy whose parameters require gradients; the caller's model stays frozen and
untouched) and its ``state_dict`` holds the whole fine-tuned model plus the head.
``attach(clip, classnames)`` binds class names as for every method, but the attached ``clip``
is used only for its tokenizer and device: the copy is what runs. Attaching a v1-fine-tuned
method to a v2 CLIP therefore still runs the fine-tuned v1 copy; to fine-tune v2, create the
method from v2. :meth:`FullModelMethod.finetuned_clip` wraps the trained copy as a
:class:`~cliptune.models.Clip`, so zero-shot evaluation and WiSE-FT (``cliptune.wise_ft``) can
use it like any other model.

Attached to other classes than the head was trained on (the "zero-shot on unseen tasks"
measurement of notebook 05), FT classifies with zero-shot weights built from the copy's
text tower, which FT never changes: what moves is the image encoder alone.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json

import torch
import torch.nn.functional as F
from torch import nn

from cliptune import models
from cliptune.methods import base


def is_visual(param_name: str) -> bool:
    return param_name.startswith("visual.")


def is_text(param_name: str) -> bool:
    return not is_visual(param_name) and param_name not in ("logit_scale", "logit_bias")


def state_fingerprint(module: nn.Module) -> str:
    """A short hash of a module's weights, so a cache never mixes two versions of a model."""
    h = hashlib.sha1()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:10]


class FullModelMethod(base.Method):
    """A method that owns and trains a copy of the CLIP model (FT, LP-FT, FLYP, ARF)."""

    frozen_image_encoder = False

    def __init__(self, clip: models.Clip, config=None):
        super().__init__(config)
        self._source = clip  # the CLIP this copy came from (a plain attribute, not state)
        self.net = copy.deepcopy(clip.model)
        for name, p in self.net.named_parameters():
            p.requires_grad_(self.trains(name))
        self.record_widths(clip, *base.model_widths(clip.model))
        self._version = 0  # bumped whenever the copy's weights may have changed
        self._weights_cache = None

    def trains(self, param_name: str) -> bool:
        """Whether parameter ``param_name`` of the copy is trained (overridden per method)."""
        return True

    # ------------------------------------------------------------------ the copy as a CLIP
    def net_clip(self, name: str | None = None) -> models.Clip:
        tokenizer = (self._clip or self._source).tokenizer
        return models.Clip(name or f"{self._source.key}+{self.name}", None, self.net, tokenizer)

    def finetuned_clip(self, name: str | None = None) -> models.Clip:
        """The trained copy as a :class:`~cliptune.models.Clip` (its key names the weights)."""
        return self.net_clip(name or f"{self._source.key}+{self.name}-{state_fingerprint(self.net)}")

    def image_features(self, batch: base.Batch) -> torch.Tensor:
        return F.normalize(self.net.encode_image(batch.pixels), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.net.logit_scale.exp().detach()

    def class_weights(self) -> torch.Tensor:
        """Zero-shot weights [C, D] of the copy's text tower for the attached classes; rebuilt
        whenever the copy may have changed (FLYP rebuilds its head from the fine-tuned tower)."""
        key = (self._version, self.classnames, self.templates, str(self.clip.device))
        if self._weights_cache is None or self._weights_cache[0] != key:
            w = base.zero_shot_weights(self.net_clip(), self.classnames, self.templates)
            self._weights_cache = (key, w)
        return self._weights_cache[1]

    # ------------------------------------------------------------------ state
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._version += 1
        return out

    def train(self, mode: bool = True):
        self._version += 1
        return super().train(mode)

    def zero_shot_state(self) -> dict:
        """The state this method has at step 0 (the zero-shot end of a WiSE-FT sweep)."""
        return self.fresh().state_dict()

    def fresh(self, state: dict | None = None) -> "FullModelMethod":
        """A new instance from the same source CLIP and config, attached like this one,
        optionally loaded with ``state`` (WiSE-FT builds its interpolated models with this)."""
        other = type(self)(self._source, self.config)
        self._prepare_fresh(other, zero_shot=state is None)
        if state is not None:
            other.load_state_dict(state)
        if self._clip is not None:
            other.attach(self._clip, self.classnames, self.templates)
        return other

    def _prepare_fresh(self, other, zero_shot: bool) -> None:
        """Give ``other`` what must exist before loading a state (FT: its head), or its
        zero-shot initial state."""


@dataclasses.dataclass
class FineTuneConfig:
    label_smoothing: float = 0.0  # WiSE-FT's --ls (0 by default)


class FineTune(FullModelMethod):
    """Standard fine-tuning: image encoder + zero-shot-initialised linear head, CE loss."""

    name = "ft"
    Config = FineTuneConfig

    def __init__(self, clip, config=None):
        super().__init__(clip, config)
        self.register_parameter("head_weight", None)  # created at the first attach
        self.register_parameter("head_bias", None)
        self.register_buffer("head_meta", None)  # the head's classes and templates (JSON bytes)

    def trains(self, param_name):
        return is_visual(param_name)  # the text tower and the temperature stay as they are

    # ------------------------------------------------------------------ the head
    @property
    def head_classes(self) -> tuple:
        if self.head_meta is None:
            return ()
        return tuple(json.loads(bytes(self.head_meta.tolist()).decode())["classes"])

    @property
    def head_templates(self) -> tuple:
        if self.head_meta is None:
            return ()
        return tuple(json.loads(bytes(self.head_meta.tolist()).decode())["templates"])

    def _make_head(self, n_classes: int, dim: int, meta_len: int, device) -> None:
        self.head_weight = nn.Parameter(torch.zeros(n_classes, dim, device=device))
        self.head_bias = nn.Parameter(torch.zeros(n_classes, device=device))
        self.head_meta = torch.zeros(meta_len, dtype=torch.uint8, device=device)

    def on_attach(self):
        if self.head_weight is None:  # first attach: the zero-shot head for these classes
            w = base.zero_shot_weights(self.net_clip(), self.classnames, self.templates)
            meta = json.dumps({"classes": list(self.classnames),
                               "templates": list(self.templates)}).encode()
            self._make_head(len(w), w.shape[1], len(meta), w.device)
            self.head_weight.data.copy_(self.logit_scale() * w)
            self.head_meta.copy_(torch.tensor(list(meta), dtype=torch.uint8))

    def uses_head(self) -> bool:
        return tuple(self.classnames) == self.head_classes

    def _prepare_fresh(self, other, zero_shot):
        if self.head_weight is None:
            return
        if zero_shot:  # the zero-shot head of the classes this head was trained on
            other.attach(self._clip or self._source, self.head_classes, self.head_templates)
        else:
            other._make_head(*self.head_weight.shape, len(self.head_meta), self.head_weight.device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if "head_weight" in state_dict:  # a saved head fixes its own shape (methods.load)
            shape, n_meta = state_dict["head_weight"].shape, len(state_dict["head_meta"])
            if self.head_weight is None or self.head_weight.shape != shape or \
                    len(self.head_meta) != n_meta:  # else copy in place: an optimiser holds it
                self._make_head(shape[0], shape[1], n_meta, next(self.net.parameters()).device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ training
    def head_logits(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.head_weight.T + self.head_bias

    def forward(self, batch):
        z = self.image_features(batch)
        if self.uses_head():
            return self.head_logits(z)
        if self.training:
            raise RuntimeError(f"{self.name} was attached to other classes than its head's; "
                               "attach it to the training classes before training")
        return self.logit_scale() * z @ self.class_weights().T

    def loss(self, batch, logits):
        ce = F.cross_entropy(logits, batch.labels, label_smoothing=self.config.label_smoothing)
        return ce, {"ce": ce.item()}


@dataclasses.dataclass
class LPFTConfig(FineTuneConfig):
    lp_solver: str = "lbfgs"  # stage 1: "lbfgs" (probe to convergence) or "sgd" (in-schedule)
    lp_C: float | None = None  # "lbfgs": inverse L2 strength; None = cross-validated
    lp_c_grid: tuple = (1e-2, 1e0, 1e2, 1e4)  # "lbfgs": the C grid (bisected around the best)
    lp_steps: int = 50  # "sgd": stage 1 length in optimisation steps
    lp_lr_scale: float = 100.0  # "sgd": stage-1 lr = base lr x this (a probe wants large steps)
    ft_lr_scale: float = 1 / 3  # stage-2 lr = base lr x this (VRF: 1e-5 against FT's 3e-5)


LP_SOLVERS = ("lbfgs", "sgd")
PRESETS = {"shared-schedule": {"lp_solver": "sgd"}}  # lp-ft's earlier variant


class LPFT(FineTune):
    """LP-FT: a linear probe on the frozen encoder, then full fine-tuning at a smaller lr.

    ``lp_solver="lbfgs"`` (default, Kumar et al.'s recipe): stage 1 is L2-regularised logistic
    regression on the clean features of the training images, solved to convergence by L-BFGS
    before the first step (C by cross-validation on the training images), and the whole
    schedule of ``train.fit`` is stage 2, as long as FT's. ``lp_solver="sgd"`` (preset
    ``shared-schedule``, the workbook's earlier variant): the first ``lp_steps`` steps of one
    shared schedule train the head only, so stage 2 gets only the tail of the schedule.
    """

    name = "lp-ft"
    Config = LPFTConfig

    def __init__(self, clip, config=None):
        super().__init__(clip, config)
        if self.config.lp_solver not in LP_SOLVERS:
            raise ValueError(f"lp_solver must be one of {LP_SOLVERS}, not "
                             f"{self.config.lp_solver!r}")
        self.probe_search = None

    def in_probe_stage(self, step: int) -> bool:
        return self.config.lp_solver == "sgd" and step < self.config.lp_steps

    def lr_multiplier(self, step: int) -> float:
        """Called by ``train.fit`` every step: the stage's lr factor."""
        return self.config.lp_lr_scale if self.in_probe_stage(step) else self.config.ft_lr_scale

    @torch.no_grad()
    def on_train_start(self, train_set) -> None:
        super().on_train_start(train_set)
        if self.config.lp_solver != "lbfgs":
            return
        from cliptune import features
        from cliptune.methods.linear_probe import cross_validated_c, fit_logistic
        if not self.uses_head():
            raise RuntimeError("attach lp-ft to the training classes before training")
        x = features.image_features(self.net_clip(), train_set)  # clean, frozen at init
        y = torch.as_tensor(train_set.labels, device=x.device)
        n = len(self.classnames)
        if self.config.lp_C is not None:
            self.probe_search = {"C": float(self.config.lp_C), "how": "fixed by config"}
        else:
            self.probe_search = cross_validated_c(x, y, n, self.config.lp_c_grid)
        w, b = fit_logistic(x, y, n, self.probe_search["C"])
        self.head_weight.data.copy_(w.to(self.head_weight.device))
        self.head_bias.data.copy_(b.to(self.head_bias.device))

    def image_features(self, batch):
        if self.training and self.in_probe_stage(batch.step):
            with torch.no_grad():  # stage 1: the encoder is frozen, gets no gradient
                return super().image_features(batch)
        return super().image_features(batch)

    def loss(self, batch, logits):
        ce, logs = super().loss(batch, logits)
        logs["stage"] = 1.0 if self.in_probe_stage(batch.step) else 2.0
        return ce, logs


def clip_loss(image_features, text_features, scale):
    """Symmetric InfoNCE over B matching pairs; equal rows elsewhere in the batch are negatives
    (FLYP's ``ClipLoss`` without ground labels)."""
    return models.clip_loss(image_features, text_features, scale)
