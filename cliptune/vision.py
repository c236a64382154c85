"""The vision tower, opened up: encode images with prompt tokens inserted (VPT, IVLP, MaPLe).

Introduced in notebook 04. Only open_clip's ``VisionTransformer`` takes visual prompts; other
backbones (ResNets, timm towers) get a clear error. With no prompts it reproduces
``model.encode_image`` exactly (tests/test_vision.py).
"""
from __future__ import annotations

import torch


class VisualPromptsNeedViT(TypeError):
    pass


def vit(model):
    """The model's open_clip VisionTransformer, or an error that says why prompts cannot go in."""
    from open_clip.transformer import VisionTransformer
    visual = model.visual
    if not isinstance(visual, VisionTransformer):
        raise VisualPromptsNeedViT(
            f"visual prompts need an open_clip VisionTransformer, but this model's vision tower is "
            f"{type(visual).__name__}. Use a ViT model (e.g. ViT-B-16) or a text-only method "
            "(CoOp, KgCoOp, ContCoOp).")
    if visual.attn_pool is not None:
        raise VisualPromptsNeedViT("visual prompts are not supported on attention-pooled ViTs")
    return visual


def vision_width(model) -> int:
    return vit(model).conv1.out_channels


def encode_prompted(model, pixels: torch.Tensor, shallow: torch.Tensor | None = None,
                    deep_prompts=None, return_hidden: bool = False):
    """Encode images with ``shallow`` [n, width] prompt tokens appended after the patches.

    MaPLe's placement: the tokens join the sequence after the positional embedding and before
    ``ln_pre``; item i of ``deep_prompts`` replaces the last n tokens of the input of block i+1.
    With ``return_hidden`` the CLS state after every block comes back too.
    """
    v = vit(model)
    x = v.conv1(pixels.to(v.conv1.weight.dtype))
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = v.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
    x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
    x = v.patch_dropout(x)
    n = 0
    if shallow is not None and shallow.shape[0] > 0:
        n = shallow.shape[0]
        x = torch.cat([x, shallow.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
    x = v.ln_pre(x)
    hidden = []
    for i, block in enumerate(v.transformer.resblocks):
        if deep_prompts is not None and 1 <= i <= len(deep_prompts) and n > 0:
            p = deep_prompts[i - 1].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :-n], p], dim=1)
        x = block(x)
        if return_hidden:
            hidden.append(x[:, 0])
    if n > 0:
        x = x[:, :-n]
    pooled, _ = v._pool(x)
    if v.proj is not None:
        pooled = pooled @ v.proj
    return (pooled, hidden) if return_hidden else pooled
