"""CLIP-Adapter (Gao et al., IJCV 2023): a small residual MLP on the frozen image features.

    A(f)  = ReLU(W2 ReLU(W1 f))              W1 in R^{D/4 x D}, W2 in R^{D x D/4}, no biases
    f'    = alpha A(f) + (1 - alpha) f       residual ratio alpha = 0.2
    logits = exp(t) normalize(f') g^T        g = frozen text features of the hand-made template

Introduced in notebook 03. The state is the visual adapter alone (``adapter.0``, ``adapter.2``:
W1 and W2). The class weights g are recomputed by :meth:`attach` from whichever model and class
list the adapter is attached to, with the dataset's single hand-made template (its first one),
as the official code uses CoOp's per-dataset template; ``ensemble=True`` averages all of them.
The official code recomputes g at every forward pass; here they are computed once per attach.

Unknown from the paper (the official repository has the model but not the training recipe):
the optimiser and schedule; notebook 03 uses the Dassl defaults of the TrainConfig (SGD).
W1 and W2 keep PyTorch's default Linear initialisation, as in the official code.
"""
from __future__ import annotations

import dataclasses

import torch.nn.functional as F
from torch import nn

from cliptune.methods import base


@dataclasses.dataclass
class ClipAdapterConfig:
    alpha: float = 0.2  # residual ratio: 0 = zero-shot CLIP, 1 = adapter output only
    reduction: int = 4  # bottleneck D -> D / reduction -> D
    ensemble: bool = False  # False: the dataset's first (hand-made) template, as in the paper
    init_seed: int = 0


class ClipAdapter(base.Method):
    name = "clip-adapter"
    Config = ClipAdapterConfig

    def __init__(self, clip, config=None):
        super().__init__(config)
        if not 0.0 <= self.config.alpha <= 1.0:
            raise ValueError(f"clip-adapter alpha is a ratio in [0, 1], not {self.config.alpha}")
        dim = base.model_widths(clip.model)["embed dim"]
        hidden = max(1, dim // self.config.reduction)
        from cliptune import runtime
        gen = runtime.generator(self.config.init_seed, "clip-adapter")
        w1, w2 = nn.Linear(dim, hidden, bias=False), nn.Linear(hidden, dim, bias=False)
        # PyTorch's default init (kaiming-uniform, bound 1/sqrt(fan_in)), drawn from our generator
        for layer in (w1, w2):
            bound = 1.0 / layer.in_features ** 0.5
            layer.weight.data.uniform_(-bound, bound, generator=gen)
        self.adapter = nn.Sequential(w1, nn.ReLU(), w2, nn.ReLU())
        self.record_widths(clip, "embed dim")

    def on_attach(self):
        templates = self.templates if self.config.ensemble else self.templates[:1]
        self.register_buffer("text_features", base.zero_shot_weights(
            self.clip, self.classnames, templates), persistent=False)

    def adapted_features(self, f):
        """f' = alpha A(f) + (1 - alpha) f, normalised."""
        a = self.config.alpha
        return F.normalize(a * self.adapter(f) + (1 - a) * f, dim=-1)

    def forward(self, batch):
        f = self.image_features(batch)
        return self.logit_scale() * self.adapted_features(f) @ self.text_features.T
