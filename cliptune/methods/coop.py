"""CoOp (Zhou et al., IJCV 2022): learn the context words of the prompt.

    t_c = [SOS][v_1 ... v_M][CLASS_c .][EOS]        (the v_m are learned, shared by all classes)
    p(y = c | x) = softmax_c( exp(t) * cos(f(x), g(t_c)) )

Introduced in notebook 02. The state is ``ctx`` [M, d] alone. The SOS and class-name token
embeddings are buffers recomputed by :meth:`attach` from whichever model the prompts are
attached to (CoOp deletes them from its checkpoints for the same reason).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from cliptune import runtime, text
from cliptune.methods import base


@dataclasses.dataclass
class CoOpConfig:
    n_ctx: int = 4
    ctx_init: str | None = "a photo of a"  # None: n_ctx random vectors, N(0, 0.02^2)
    init_seed: int = 0


def init_context(clip, n_ctx: int, ctx_init: str | None, seed: int) -> torch.Tensor:
    """Context vectors [M, d]: the embeddings of ``ctx_init``'s words, or N(0, 0.02^2)."""
    tower = text.text_tower(clip.model)
    if ctx_init:
        words = ctx_init.replace("_", " ")
        n_words = len(clip.tokenizer.encode(words)) if hasattr(clip.tokenizer, "encode") else \
            len(words.split())
        tokens = clip.tokenize([words])
        with torch.no_grad():
            return text.embed_tokens(clip.model, tokens)[0, 1:1 + n_words].float().cpu().clone()
    gen = runtime.generator(seed, "ctx-init")
    return torch.randn(n_ctx, tower.width, generator=gen) * 0.02


class PromptedClasses(nn.Module):
    """The frozen halves of CoOp-style prompts for one model and class list.

    ``prefix`` [C, 1, d] is the SOS embedding, ``suffix`` [C, L-1-M, d] the class-name tokens,
    the full stop, EOS and padding; ``tokens`` [C, L] keeps the ids (the EOS position).
    """

    def __init__(self, clip, classnames, n_ctx: int, template: str = "{}."):
        super().__init__()
        tokens = clip.tokenize(text.placeholder_prompts(classnames, n_ctx, template))
        emb = text.embed_tokens(clip.model, tokens)
        self.n_ctx = n_ctx
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("prefix", emb[:, :1].detach(), persistent=False)
        self.register_buffer("suffix", emb[:, 1 + n_ctx:].detach(), persistent=False)

    def assemble(self, ctx: torch.Tensor) -> torch.Tensor:
        """[M, d] (shared) or [C, M, d] (per class) context -> prompt embeddings [C, L, d]."""
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(len(self.prefix), -1, -1)
        return torch.cat([self.prefix, ctx.to(self.prefix.dtype), self.suffix], dim=1)

    def encode(self, model, ctx: torch.Tensor, chunk_size: int = 256) -> torch.Tensor:
        """Normalised class features [C, D] for these prompts, in chunks over classes."""
        out = []
        for i in range(0, len(self.tokens), chunk_size):
            sl = slice(i, i + chunk_size)
            part = ctx[sl] if ctx.dim() == 3 else ctx
            prompts = torch.cat([self.prefix[sl], self._expand(part, sl), self.suffix[sl]], dim=1)
            out.append(text.encode_embedded(model, prompts, self.tokens[sl], trim=True))
        return F.normalize(torch.cat(out), dim=-1)

    def _expand(self, ctx, sl):
        n = len(self.prefix[sl])
        return (ctx.unsqueeze(0).expand(n, -1, -1) if ctx.dim() == 2 else ctx).to(self.prefix.dtype)


class CoOp(base.Method):
    name = "coop"
    Config = CoOpConfig

    def __init__(self, clip, config=None):
        super().__init__(config)
        ctx = init_context(clip, self.config.n_ctx, self.config.ctx_init, self.config.init_seed)
        self.ctx = nn.Parameter(ctx)
        self.record_widths(clip, "text width")

    def on_attach(self):
        self.prompts = PromptedClasses(self.clip, self.classnames, len(self.ctx))

    def class_features(self) -> torch.Tensor:
        return self.prompts.encode(self.clip.model, self.ctx)

    def forward(self, batch):
        return self.logit_scale() * self.image_features(batch) @ self.class_features().T
