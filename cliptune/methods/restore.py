"""RESTORE (Yang et al., arXiv 2403.06136): MaPLe + feature-shift consistency + surgery adapters.

Introduced in notebook 04. Written from the released code (trainer ``MaPLe_FSA``); the spec is
docs/research/anchorft_and_restore.md section 4.

**Prompts.** Exactly :class:`~cliptune.methods.maple.MaPLe`: text prompts P_t^i and coupled
vision prompts P_v^i = F_i(P_t^i).

**Surgery adapters**, one per modality, on the final projected embedding z (before the L2
normalisation)::

    A(z)  = z + W_2 QuickGELU(W_1 LN(z) + b_1) + b_2        (hidden width 4 D)
    z'    = r A(z) + (1 - r) z                                (r_t for text, r_v for images)

The ratios r are **not learned**: they start at ``ratio_text`` / ``ratio_vision`` (0.1 / 0.1,
the argparse defaults of the released train.py) and are bumped once, after the epoch with index
``epochs // 3``, by the mean raw Gram norm of the current deep prompts::

    r_t += 0.02  * mean_i ||P_t^i^T P_t^i||_F        r_v += 0.005 * mean_i ||P_v^i^T P_v^i||_F

**Feature-shift consistency loss**, ``L = CE + lambda_fs * L_fs``, two definitions:

- ``fs_mode="prompt_gram"`` (default, what the released code computes): with
  s_m^i = ||P_m^i^T P_m^i||_F / (its value at init, captured at construction),
  L_fs = sum_{i=1}^{J-1} (s_t^i - s_v^i)^2 over the deep layers. It penalises text and vision
  prompts that grow at different relative rates; it never looks at a hidden state.
- ``fs_mode="hidden_state"`` (the paper's definition, a reconstruction): per block l,
  D_m^l = mean ||h_m^l(prompted) - h_m^l(frozen)|| / mean ||h_m^l(frozen)|| on the EOT state
  (text; the frozen reference is the hand-made prompt ``templates[0]``) and the CLS state
  (images, the same batch through the plain tower), and L_fs = sum_l (D_t^l - D_v^l)^2 over
  the blocks both towers have. It costs one extra frozen forward of the image batch.

Both forms are exactly zero when the two branches shift equally (equal relative Gram norms,
or equal hidden-state shifts in every block), and the selection table of notebook 04 decides
between them on tiny-v1 validation data (:mod:`cliptune.selection`); until it is run the
default stays the released code's. :func:`cliptune.diagnostics.restore_before_after` prints
both shift measures before and after training, whichever form was trained.

The ratios live in the state dict (as scalar buffers, so a saved module carries its updated
ratios) and in :meth:`extra_state` (so ``train.fit``'s partial checkpoints resume them).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from open_clip.transformer import QuickGELU

from cliptune import runtime, vision
from cliptune.methods import base
from cliptune.methods.maple import MaPLe, MaPLeConfig, hand_made_states, seeded_linear

FS_MODES = ("prompt_gram", "hidden_state")
# The paper gives no weight for its hidden-state form (the released code weights the Gram proxy
# by 1), and that term is small beside the cross-entropy (notebook 04 prints it per step), so
# validation also sees it ten times heavier.
PRESETS = {"prompt_gram": {}, "hidden_state": {"fs_mode": "hidden_state"},
           "hidden_state_x10": {"fs_mode": "hidden_state", "lambda_fs": 10.0},
           "no-fs": {"lambda_fs": 0.0}}


@dataclasses.dataclass
class RestoreConfig(MaPLeConfig):
    ratio_text: float = 0.1  # r_t at the start (released code's argparse default)
    ratio_vision: float = 0.1  # r_v at the start
    ratio_step_text: float = 0.02  # c_t in r_t += c_t * mean Gram norm
    ratio_step_vision: float = 0.005  # c_v
    lambda_fs: float = 1.0  # weight of the feature-shift consistency loss (FS_LOSS_R)
    fs_mode: str = "prompt_gram"  # or "hidden_state" (see the module docstring)
    adapter_mult: int = 4  # adapter hidden width = adapter_mult * embed dim


class SurgeryAdapter(nn.Module):
    """A(z) = z + W_2 QuickGELU(W_1 LN(z) + b_1) + b_2."""

    def __init__(self, dim: int, hidden: int, gen: torch.Generator):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.fc1 = seeded_linear(dim, hidden, gen)
        self.act = QuickGELU()
        self.fc2 = seeded_linear(hidden, dim, gen)

    def forward(self, z):
        return z + self.fc2(self.act(self.fc1(self.ln(z))))


def relative_shift(h: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """mean ||h - h0|| / mean ||h0|| over the rows."""
    return (h - h0).norm(dim=-1).mean() / h0.norm(dim=-1).mean().clamp_min(1e-12)


class Restore(MaPLe):
    name = "restore"
    Config = RestoreConfig

    def __init__(self, clip, config=None):
        super().__init__(clip, config)
        cfg = self.config
        if cfg.fs_mode not in FS_MODES:
            raise ValueError(f"fs_mode must be one of {FS_MODES}, not {cfg.fs_mode!r}")
        dim = base.model_widths(clip.model)["embed dim"]
        gen = runtime.generator(cfg.init_seed, "restore-adapters")
        self.adapter_text = SurgeryAdapter(dim, cfg.adapter_mult * dim, gen)
        self.adapter_vision = SurgeryAdapter(dim, cfg.adapter_mult * dim, gen)
        # not parameters: the optimiser never sees them; the schedule sets them
        self.register_buffer("ratio_text", torch.tensor(float(cfg.ratio_text)))
        self.register_buffer("ratio_vision", torch.tensor(float(cfg.ratio_vision)))
        self.register_buffer("ratios_updated", torch.tensor(0.0))
        self.record_widths(clip, "text width", "vision width", "embed dim")
        self._fs_states = None

    # ------------------------------------------------------------------ adapters
    def calibrate(self, z, modality):
        adapter, r = ((self.adapter_text, self.ratio_text) if modality == "text"
                      else (self.adapter_vision, self.ratio_vision))
        return r * adapter(z) + (1 - r) * z

    def on_attach(self):
        super().on_attach()
        if self.config.fs_mode == "hidden_state":  # the frozen text reference, per block
            _, hidden = hand_made_states(self.clip, self.classnames, self.templates[0])
            self.register_buffer("frozen_text_hidden", torch.stack(hidden), persistent=False)

    # ------------------------------------------------------------------ forward and loss
    def forward(self, batch):
        if not (self.training and self.config.fs_mode == "hidden_state"
                and self.config.lambda_fs != 0):
            self._fs_states = None
            return super().forward(batch)
        z_t, h_t = self.encode_text_states(return_hidden=True)
        z_v, h_v = self.encode_image_states(batch.pixels, return_hidden=True)
        with torch.no_grad():  # the frozen tower on the same batch: the reference
            _, h_v0 = vision.encode_prompted(self.clip.model, batch.pixels, return_hidden=True)
        self._fs_states = (h_t, h_v, h_v0)
        txt = F.normalize(self.calibrate(z_t, "text"), dim=-1)
        img = F.normalize(self.calibrate(z_v, "vision"), dim=-1)
        return self.logit_scale() * img @ txt.T

    def fs_loss(self) -> torch.Tensor:
        if self.config.fs_mode == "prompt_gram":
            s_t, s_v = self.relative_gram()
            return ((s_t - s_v) ** 2).sum()
        if self._fs_states is None:
            raise RuntimeError("fs_mode='hidden_state' needs the hidden states of a training "
                               "forward: call method(batch) in train mode before loss()")
        h_t, h_v, h_v0 = self._fs_states
        n = min(len(h_t), len(h_v))
        d_t = torch.stack([relative_shift(h_t[l], self.frozen_text_hidden[l]) for l in range(n)])
        d_v = torch.stack([relative_shift(h_v[l], h_v0[l]) for l in range(n)])
        return ((d_t - d_v) ** 2).sum()

    def loss(self, batch, logits):
        ce = F.cross_entropy(logits, batch.labels)
        if self.config.lambda_fs == 0:
            return ce, {"ce": ce.item(), "fs": 0.0}
        fs = self.fs_loss()
        return ce + self.config.lambda_fs * fs, {"ce": ce.item(), "fs": fs.item()}

    # ------------------------------------------------------------------ ratio schedule
    @torch.no_grad()
    def update_ratios(self) -> None:
        """r_m += c_m * mean_i ||P_m^i^T P_m^i||_F (raw Gram norms of the deep prompts)."""
        t, v = self.gram_norms()
        if len(t):
            self.ratio_text += self.config.ratio_step_text * t.mean()
            self.ratio_vision += self.config.ratio_step_vision * v.mean()
        self.ratios_updated.fill_(1.0)

    def on_epoch_end(self, epoch, epochs):
        if epoch == epochs // 3 and not bool(self.ratios_updated):
            self.update_ratios()

    def extra_state(self) -> dict:
        return {"ratio_text": float(self.ratio_text), "ratio_vision": float(self.ratio_vision),
                "ratios_updated": bool(self.ratios_updated)}

    def set_extra_state_dict(self, state: dict) -> None:
        self.ratio_text.fill_(float(state["ratio_text"]))
        self.ratio_vision.fill_(float(state["ratio_vision"]))
        self.ratios_updated.fill_(float(bool(state["ratios_updated"])))
