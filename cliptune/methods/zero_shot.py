"""Zero-shot CLIP: logits = exp(t) * f(x) . w_c, with w_c from hand-made templates.

Introduced in notebook 01. Nothing is learned; attaching recomputes the class weights.
"""
from __future__ import annotations

import dataclasses

from cliptune.methods import base


@dataclasses.dataclass
class ZeroShotConfig:
    ensemble: bool = True  # average every template of the dataset, or use the first only


class ZeroShot(base.Method):
    name = "zero-shot"
    Config = ZeroShotConfig

    def on_attach(self):
        templates = self.templates if self.config.ensemble else self.templates[:1]
        self.register_buffer("weights", base.zero_shot_weights(self.clip, self.classnames,
                                                               templates), persistent=False)

    def forward(self, batch):
        return self.logit_scale() * self.image_features(batch) @ self.weights.T
