"""The text tower, opened up: encode text from token embeddings so prompts can be injected.

Introduced in notebook 01 (zero-shot, chunked class encoding) and notebook 02 (prompt learning).

open_clip's ``encode_text`` looks tokens up, adds positions, runs the transformer with a causal
mask, applies the final norm, pools the end-of-text token and projects. :func:`encode_embedded`
does the same from embeddings that a method may have edited, with the causal mask passed
explicitly (open_clip's blocks apply no mask by default). With nothing injected it reproduces
``model.encode_text`` exactly; tests/test_text.py checks that.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class TextTower:
    token_embedding: nn.Embedding
    positional_embedding: torch.Tensor
    transformer: nn.Module
    attn_mask: torch.Tensor | None
    ln_final: nn.Module
    projection: object  # a [width, dim] Parameter, an nn.Linear, or None
    pool_type: str
    eos_id: int | None

    @property
    def width(self) -> int:
        return self.token_embedding.weight.shape[1]


def text_tower(model) -> TextTower:
    """The text tower's parts for open_clip's ``CLIP`` and ``CustomTextCLIP`` alike."""
    if hasattr(model, "text") and hasattr(model.text, "token_embedding"):  # CustomTextCLIP
        t = model.text
        if getattr(t, "cls_emb", None) is not None or getattr(t, "use_pad_mask", False):
            raise NotImplementedError(f"{type(t).__name__} with a CLS token or pad mask (CoCa-"
                                      "style text towers) takes no injected prompts")
        return TextTower(t.token_embedding, t.positional_embedding, t.transformer, t.attn_mask,
                         t.ln_final, t.text_projection, t.pool_type, getattr(t, "eos_id", None))
    if hasattr(model, "token_embedding"):
        return TextTower(model.token_embedding, model.positional_embedding, model.transformer,
                         model.attn_mask, model.ln_final, model.text_projection,
                         model.text_pool_type, getattr(model, "text_eos_id", None))
    raise TypeError(f"{type(model).__name__} has no CLIP text tower that cliptune knows")


def embed_tokens(model, tokens: torch.Tensor) -> torch.Tensor:
    """Token ids [N, L] -> token embeddings [N, L, width] (no positions yet)."""
    tower = text_tower(model)
    return tower.token_embedding(tokens).to(tower.transformer.get_cast_dtype())


def _pool_and_project(tower: TextTower, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    x = tower.ln_final(x)
    if tower.pool_type == "argmax":
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    elif tower.pool_type == "eos":
        x = x[torch.arange(x.shape[0], device=x.device), (tokens == tower.eos_id).int().argmax(-1)]
    elif tower.pool_type == "first":
        x = x[:, 0]
    elif tower.pool_type == "last":
        x = x[:, -1]
    if tower.projection is None:
        return x
    if isinstance(tower.projection, nn.Linear):
        return tower.projection(x)
    return x @ tower.projection


def encode_embedded(model, embeddings: torch.Tensor, tokens: torch.Tensor,
                    deep_prompts=None, prompt_start: int = 1, return_hidden: bool = False,
                    trim: bool = False):
    """Encode token embeddings [N, L, width] whose token ids are ``tokens`` [N, L].

    ``deep_prompts`` (MaPLe / IVLP style): a list whose item i, a [n, width] or [N, n, width]
    tensor, replaces positions ``prompt_start:prompt_start+n`` of the input of block i+1. With
    ``return_hidden`` the end-of-text state after every block comes back too (feature shift).
    ``trim``: encode only up to the last end-of-text token (:func:`trimmed_length`): exact in
    the maths, several times faster for short prompts, equal up to float summation order.
    """
    tower = text_tower(model)
    if trim:
        n = trimmed_length(model, tokens)
        embeddings, tokens = embeddings[:, :n], tokens[:, :n]
    n = embeddings.shape[1]
    x = embeddings + tower.positional_embedding[:n].to(embeddings.dtype)
    mask = tower.attn_mask[:n, :n] if tower.attn_mask is not None else None
    blocks = tower.transformer.resblocks
    hidden = []
    eot = tokens.argmax(dim=-1)
    for i, block in enumerate(blocks):
        if deep_prompts is not None and 1 <= i <= len(deep_prompts):
            p = deep_prompts[i - 1]
            p = p.expand(x.shape[0], -1, -1) if p.dim() == 2 else p
            x = torch.cat([x[:, :prompt_start], p.to(x.dtype), x[:, prompt_start + p.shape[1]:]],
                          dim=1)
        x = block(x, attn_mask=mask)
        if return_hidden:
            hidden.append(x[torch.arange(x.shape[0], device=x.device), eot])
    out = _pool_and_project(tower, x, tokens)
    return (out, hidden) if return_hidden else out


def trimmed_length(model, tokens: torch.Tensor) -> int:
    """How many leading positions of ``tokens`` [N, L] decide the pooled text features.

    With a causal mask and end-of-text pooling (CLIP), nothing after the last end-of-text
    token can reach the pooled state, so encoding ``[:, :trimmed_length]`` is exact and several
    times faster for short prompts in a long context (prompt learners encode C or B x C
    prompts per step). Other towers get the full length L.
    """
    tower = text_tower(model)
    if tower.attn_mask is None or tower.pool_type not in ("argmax", "eos") or not len(tokens):
        return tokens.shape[1]
    eot = tokens.argmax(dim=-1) if tower.pool_type == "argmax" else \
        (tokens == tower.eos_id).int().argmax(-1)
    return int(eot.max()) + 1


def encode_text(model, tokens: torch.Tensor, chunk_size: int = 256, normalize: bool = False):
    """``model.encode_text`` through :func:`encode_embedded`, in chunks over the rows.

    Chunking keeps memory flat for 1000-class datasets (CoOp issue #12).
    """
    out = []
    for i in range(0, len(tokens), chunk_size):
        t = tokens[i:i + chunk_size]
        out.append(encode_embedded(model, embed_tokens(model, t), t))
    feats = torch.cat(out)
    return F.normalize(feats, dim=-1) if normalize else feats


def placeholder_prompts(classnames, n_ctx: int, template: str = "{}.") -> list[str]:
    """CoOp's tokenisation trick: ``"X X X X {class}."``; the X embeddings get overwritten.

    The end-of-text position stays right because the context replaces embeddings, not ids.
    """
    prefix = " ".join(["X"] * n_ctx)
    return [(prefix + " " + template.format(c.replace("_", " "))).strip() for c in classnames]
