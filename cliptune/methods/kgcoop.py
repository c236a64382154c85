"""KgCoOp (Yao et al., CVPR 2023): CoOp kept close to the hand-made prompt's class features.

    w_c      = g([SOS][v_1 ... v_M][CLASS_c .][EOS]) / ||.||     (CoOp's learned prompts)
    w^clip_c = g("a photo of a CLASS_c.") / ||.||                 (frozen, hand-made template)
    L        = CE + W * (1 - (1/C) sum_c cos(w_c, w^clip_c))      W = 8 (the authors' run.sh)

Introduced in notebook 02. The regulariser is written as the official code writes it; for unit
vectors ||a - b||^2 = 2 (1 - cos), so it is the paper's squared-L2 "knowledge-guided" loss up
to a factor of 2. The state is CoOp's ``ctx`` alone; ``w^clip`` is a buffer recomputed by
:meth:`attach` from the attached model with the dataset's first (hand-made) template.
"""
from __future__ import annotations

import dataclasses

import torch.nn.functional as F

from cliptune.methods import base
from cliptune.methods.coop import CoOp, CoOpConfig


@dataclasses.dataclass
class KgCoOpConfig(CoOpConfig):
    kg_weight: float = 8.0  # W; 0 gives CoOp


class KgCoOp(CoOp):
    name = "kgcoop"
    Config = KgCoOpConfig

    def on_attach(self):
        super().on_attach()
        self.register_buffer("clip_weights", base.zero_shot_weights(
            self.clip, self.classnames, self.templates[:1]), persistent=False)

    def forward(self, batch):
        self._text = self.class_features()  # kept for the loss: one text pass per step
        return self.logit_scale() * self.image_features(batch) @ self._text.T

    def loss(self, batch, logits):
        ce = F.cross_entropy(logits, batch.labels)
        w = getattr(self, "_text", None)
        if w is None:
            w = self.class_features()
        kg = 1.0 - (w * self.clip_weights).sum(-1).mean()
        self._text = None
        total = ce + self.config.kg_weight * kg
        return total, {"ce": ce.item(), "kg": kg.item()}
