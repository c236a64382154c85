"""CoCoOp (Zhou et al., CVPR 2022): context vectors conditioned on each image.

    pi(x)    = W_2 ReLU(W_1 f(x))                      (Meta-Net: D -> D/16 -> d)
    v_m(x)   = v_m + pi(x)                             (one bias for every context token)
    t_c(x)   = [SOS][v_1(x) ... v_M(x)][CLASS_c .][EOS]
    p(y = c | x) = softmax_c( exp(t) * cos(f(x), g(t_c(x))) )

Introduced in notebook 02. The state is ``ctx`` [M, d] and the Meta-Net; the SOS and
class-name embeddings are recomputed by :meth:`attach` (as in CoOp). Every image has its own
prompts for every class, so a batch of B images needs B x C text-encoder passes. The
reference code runs them in a Python loop over the images; :meth:`CoCoOp.forward` runs them
as one batched call over all B*C prompts (in chunks of ``chunk_size`` prompts so memory stays
flat), and :meth:`CoCoOp.forward_loop` keeps the per-image loop as the reference that the
tests and ``benchmarks/bench_prompt_step.py`` compare against.

The Meta-Net takes the *normalised* image feature (the reference code normalises before it),
so the module moves only to models of the same embedding dim D and text width d.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from cliptune import runtime, text
from cliptune.methods import base
from cliptune.methods.coop import PromptedClasses, init_context


@dataclasses.dataclass
class CoCoOpConfig:
    n_ctx: int = 4
    ctx_init: str | None = "a photo of a"  # None: n_ctx random vectors, N(0, 0.02^2)
    init_seed: int = 0
    reduction: int = 16  # Meta-Net hidden width = D // reduction (the paper's 512 -> 32)
    chunk_size: int = 2048  # prompts per text-encoder call in the batched forward


def init_linear(layer: nn.Linear, gen: torch.Generator) -> nn.Linear:
    """PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from ``gen``
    (the default init draws from the global generator, which would break determinism)."""
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        nn.init.uniform_(layer.weight, -bound, bound, generator=gen)
        if layer.bias is not None:
            nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
    return layer


class CoCoOp(base.Method):
    name = "cocoop"
    Config = CoCoOpConfig

    def __init__(self, clip, config=None):
        super().__init__(config)
        cfg = self.config
        if cfg.chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, not {cfg.chunk_size}")
        self.ctx = nn.Parameter(init_context(clip, cfg.n_ctx, cfg.ctx_init, cfg.init_seed))
        widths = base.model_widths(clip.model)
        dim, width = widths["embed dim"], widths["text width"]
        hidden = max(1, dim // cfg.reduction)
        gen = runtime.generator(cfg.init_seed, "cocoop-meta-net")
        self.meta_net = nn.Sequential(init_linear(nn.Linear(dim, hidden), gen), nn.ReLU(),
                                      init_linear(nn.Linear(hidden, width), gen))
        self.record_widths(clip, "text width", "embed dim")

    def on_attach(self):
        self.prompts = PromptedClasses(self.clip, self.classnames, len(self.ctx))

    # ------------------------------------------------------------------ the prompts
    def image_context(self, image_features: torch.Tensor) -> torch.Tensor:
        """Per-image context ctx + pi(f(x)): [B, M, d]."""
        bias = self.meta_net(image_features.to(self.ctx.dtype))  # [B, d]
        return self.ctx.unsqueeze(0) + bias.unsqueeze(1)

    def class_features(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised class features for each image: [B, C, D].

        CoCoOp has no image-independent class weights; calling this without image features
        (as ``methods.class_weights`` does) is an error that says so.
        """
        if image_features is None:
            raise TypeError("CoCoOp's class features depend on the image (the Meta-Net shifts "
                            "the context per image), so there are no fixed class weights: pass "
                            "normalised image features, class_features(feats) -> [B, C, D], or "
                            "use method(batch) for logits")
        ctx = self.image_context(image_features)  # [B, M, d]
        n_img, n_cls = ctx.shape[0], len(self.prompts.tokens)
        p = self.prompts
        # all B*C prompts at once, image-major: row b*C + c is image b's prompt for class c
        prompts = torch.cat([
            p.prefix.unsqueeze(0).expand(n_img, -1, -1, -1),
            ctx.to(p.prefix.dtype).unsqueeze(1).expand(-1, n_cls, -1, -1),
            p.suffix.unsqueeze(0).expand(n_img, -1, -1, -1)], dim=2).flatten(0, 1)
        tokens = p.tokens.repeat(n_img, 1)
        step = self.config.chunk_size
        feats = torch.cat([text.encode_embedded(self.clip.model, prompts[i:i + step],
                                                tokens[i:i + step], trim=True)
                           for i in range(0, len(prompts), step)])
        return F.normalize(feats, dim=-1).view(n_img, n_cls, -1)

    # ------------------------------------------------------------------ logits
    def forward(self, batch):
        f = self.image_features(batch)
        t = self.class_features(f)
        return self.logit_scale() * torch.einsum("bd,bcd->bc", f.to(t.dtype), t)

    def forward_loop(self, batch):
        """The reference implementation's loop: one text-encoder call per image (slow)."""
        f = self.image_features(batch)
        ctx = self.image_context(f)
        rows = [f[b].to(ctx.dtype) @ self.prompts.encode(self.clip.model, ctx[b]).T
                for b in range(len(f))]
        return self.logit_scale() * torch.stack(rows)
