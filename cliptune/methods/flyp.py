"""FLYP, "Finetune Like You Pretrain" (Goyal et al., CVPR 2023): fine-tune with CLIP's own loss.

Introduced in notebook 05. Both towers and the temperature are trained with the symmetric
contrastive loss of pretraining, on pairs of an image and a random template of its class:

    t_i = T_i(c_{y_i}),   T_i drawn uniformly from the task's templates   (batch.generator)
    L_cls = 1/2 [ CE(s F G^T, I) + CE(s G F^T, I) ],   F = [f(x_i)], G = [g(t_i)], s = exp(t)

Same-class rows of a batch are negatives of each other, as in FLYP's ``ClipLoss`` without
ground labels. There is no linear head: classification uses the zero-shot weights rebuilt from
the *fine-tuned* text tower (every template encoded, normalised, averaged, renormalised), as
FLYP does at every evaluation. The temperature is trained but capped at ``max_logit_scale``
(CLIP's cap, 100).

Efficiency: only the C x T distinct (class, template) prompts are encoded each step and the
batch's text features are gathered from them; the gradient is the same as encoding each of
the B captions separately.

Like FT this trains the weights of a copy of the CLIP it is created with; see
:mod:`cliptune.methods.finetune` for what attaching means for such methods.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from cliptune import text
from cliptune.methods import base, finetune


@dataclasses.dataclass
class FLYPConfig:
    max_logit_scale: float = 100.0  # CLIP clamps exp(t) at 100
    freeze_text: bool = False  # ablation: train the image tower (and temperature) only


class FLYP(finetune.FullModelMethod):
    name = "flyp"
    Config = FLYPConfig

    def trains(self, param_name):
        return not (self.config.freeze_text and finetune.is_text(param_name))

    def on_attach(self):
        prompts = [t.format(c.replace("_", " ")) for c in self.classnames for t in self.templates]
        tokens = self.clip.tokenize(prompts).view(len(self.classnames), len(self.templates), -1)
        self.register_buffer("prompt_tokens", tokens, persistent=False)

    def train_scale(self) -> torch.Tensor:
        """exp(t) with gradient, capped at ``max_logit_scale``."""
        return self.net.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()

    def logit_scale(self):
        return self.train_scale().detach()

    def encode_texts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text features of the copy, with gradient unless the tower is frozen."""
        if self.config.freeze_text:
            with torch.no_grad():
                return F.normalize(text.encode_text(self.net, tokens), dim=-1)
        return F.normalize(text.encode_text(self.net, tokens), dim=-1)

    def forward(self, batch):
        z = self.image_features(batch)
        if not self.training:
            return self.logit_scale() * z @ self.class_weights().T
        n_cls, n_tpl, length = self.prompt_tokens.shape
        feats = self.encode_texts(self.prompt_tokens.view(-1, length)).view(n_cls, n_tpl, -1)
        pick = torch.randint(0, n_tpl, (len(z),), generator=batch.generator).to(z.device)
        # kept for loss(): the fit loop hands loss() only the logits
        self._pairs = (z, feats[batch.labels, pick])
        self._version += 1
        w = F.normalize(feats.mean(1), dim=-1).detach()  # the current head, for the logits
        return self.logit_scale() * z.detach() @ w.T

    def class_loss(self, batch):
        z, g = self._pairs
        self._pairs = None  # do not keep the step's graph alive on the module
        return finetune.clip_loss(z, g, self.train_scale())

    def loss(self, batch, logits):
        if not self.training:
            return base.Method.loss(self, batch, logits)
        l_cls = self.class_loss(batch)
        acc = (logits.argmax(-1) == batch.labels).float().mean()
        return l_cls, {"clip": l_cls.item(), "train_acc": acc.item(),
                       "logit_scale": self.logit_scale().item()}
