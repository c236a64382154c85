"""Linear probe: a linear classifier on frozen, normalised CLIP image features.

    logits = f(x) W^T + b          f(x) = normalize(image_encoder(x)),  W in R^{C x D},  b in R^C
    loss   = CE(logits, y)  (+ lambda ||W||^2 through TrainConfig.weight_decay: L2-regularised
                             logistic regression, as in Kumar et al.'s LP and LP-FT's stage 1)

Introduced in notebook 03. The state is the head itself (``weight`` [C, D], ``bias`` [C]).

Initialisation (``init``):

- ``"zero-shot"`` (default): W = exp(t) [w_1 ... w_C], the zero-shot class weights of the model
  the probe is first attached to (every template of the dataset, normalised, averaged and
  normalised again), with CLIP's temperature folded in, and b = 0. This is the WiSE-FT /
  FLYP ``ClassificationHead`` convention. The default because it makes the probe start exactly
  at zero-shot (tests/test_adapters.py checks it), so few steps on one or two shots cannot do
  worse than a random head would, and weight decay then shrinks towards a head that already
  works instead of starting from nothing.
- ``"zeros"``: the classic probe from scratch (W = 0, b = 0: uniform predictions at step 0).

The head is class-specific: it has one row per training class, in the order of the class list
it was first attached to. That list is recorded in the config (so it is saved beside the
weights), and attaching to any other list raises :class:`ClassListMismatchError`. Attaching to
another model of the same embed dim is allowed on purpose: the head keeps its old-space rows
and meets the new model's features; that is the compatibility experiment of notebook 07.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from cliptune.methods import base


class ClassListMismatchError(ValueError):
    """A class-specific module (a probe head, a cache's one-hot values) met another class list."""


def check_class_list(method, have, want) -> None:
    """Raise a clear error if the class list ``want`` is not the list ``have`` the state is for."""
    have, want = tuple(have), tuple(want)
    if have == want:
        return
    if len(have) != len(want):
        what = f"{len(have)} classes, not the {len(want)} it is being attached to"
    else:
        diff = [(a, b) for a, b in zip(have, want) if a != b][:3]
        what = f"other classes (first differences, trained vs given: {diff})"
    raise ClassListMismatchError(
        f"{method.name} holds class-specific state for {what}. It can only be attached to the "
        f"class list it was trained on ({list(have)[:4]}{' ...' if len(have) > 4 else ''}); "
        "train a new one for these classes (or use a text-side method such as CoOp, which "
        "carries no per-class state).")


@dataclasses.dataclass
class LinearProbeConfig:
    init: str = "zero-shot"  # "zero-shot" (W = exp(t) * zero-shot weights, b = 0) or "zeros"
    bias: bool = True
    # Filled in by the first attach (and saved with the weights): the classes the rows stand
    # for and the templates of the zero-shot init. Leave empty when creating a probe.
    classnames: tuple = ()
    templates: tuple = ()


class LinearProbe(base.Method):
    name = "linear-probe"
    Config = LinearProbeConfig

    def __init__(self, clip, config=None):
        super().__init__(config)
        if self.config.init not in ("zero-shot", "zeros"):
            raise ValueError(f"linear-probe init must be 'zero-shot' or 'zeros', not "
                             f"{self.config.init!r}")
        dim = base.model_widths(clip.model)["embed dim"]
        n = len(self.config.classnames)
        # An empty head until the probe knows its classes (first attach, or a loaded config);
        # the Parameter objects stay the same when they are filled, only their data changes.
        self.weight = nn.Parameter(torch.zeros(n, dim))
        self.bias = nn.Parameter(torch.zeros(n), requires_grad=self.config.bias)
        self.record_widths(clip, "embed dim")
        self._filled = False  # True once the head holds an init or loaded weights

    def on_attach(self):
        if not self._filled:  # first attach: build the head for this class list and model
            if not self.config.classnames:
                self.config = dataclasses.replace(self.config, classnames=tuple(self.classnames),
                                                  templates=tuple(self.templates))
            check_class_list(self, self.config.classnames, self.classnames)
            self.initialise()
        check_class_list(self, self.config.classnames, self.classnames)

    @torch.no_grad()
    def initialise(self) -> None:
        """Fill the head for ``config.classnames`` from the attached model (see ``init``)."""
        names = self.config.classnames
        dim = self.weight.shape[1]
        dev = self.clip.device
        if self.config.init == "zero-shot":
            templates = tuple(self.config.templates) or tuple(self.templates)
            w = self.logit_scale() * base.zero_shot_weights(self.clip, names, templates)
        else:
            w = torch.zeros(len(names), dim, device=dev)
        self.weight.data = w.float().to(dev)
        self.bias.data = torch.zeros(len(names), device=dev)
        self._filled = True

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # A probe created before it knew its classes has an empty head: take the saved shape.
        for key in ("weight", "bias"):
            if key in state_dict and getattr(self, key).shape != state_dict[key].shape:
                getattr(self, key).data = torch.empty_like(state_dict[key]).to(self.weight.device)
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._filled = True
        return out

    def forward(self, batch):
        f = self.image_features(batch)
        logits = f @ self.weight.T
        return logits + self.bias if self.config.bias else logits
