"""Deep prompts on both towers: IVLP (independent) and MaPLe (coupled), Khattak et al. CVPR 2023.

Introduced in notebook 04. Both methods change what the image tower computes, so they train
on pixels (``frozen_image_encoder = False``) and run the vision tower at every step.

**IVLP** (independent vision-language prompting). Text: learned context P_t^0 [n, d_t] after
[SOS]; in blocks 2..J_t the n prompt-token outputs of the previous block are *replaced* by
fresh learned tokens P_t^i. Vision (VPT-deep): learned tokens P_v^0 [n, d_v] appended after
the patches; in blocks 2..J_v the last n tokens are replaced by P_v^i. Nothing ties the two
branches together, so the same class gives

- ``text_prompts=True,  vision_prompts=False``: deep language-only prompting,
- ``text_prompts=False, vision_prompts=True``: VPT-deep (vision-only); the text side is the
  frozen hand-made prompt ``templates[0]``,
- both: IVLP.

**MaPLe** (multi-modal prompt learning) couples the branches: every vision prompt is a linear
function of the text prompt of the same depth,

    P_v^0 = F_0(P_t^0),   P_v^i = F_i(P_t^i)   (i = 1..J-1),   F_i = Linear(d_t -> d_v)

so the only free tensors are text prompts and the couplings. P_t^0 is initialised from the
token embeddings of the first n tokens of ``ctx_init`` ("a photo of a"); deep text prompts
from N(0, 0.02^2). Logits: exp(t) * cos(f(x; P_v), g(t_c; P_t)), loss CE.

Placement of the text context. The official MaPLe tokenises "a photo of a {class}." and
overwrites positions 1..n, so with n = 2 the model reads ``[SOS][ctx ctx] of a {class}.``
with the context initialised from "a photo": the words left over from ``ctx_init`` stay in the
prompt. MaPLe's default is this official prompt (``keep_init_words=True``);
``keep_init_words=False`` gives the clean CoOp-style ``[SOS][ctx ctx] {class}.`` ("X X {class}."
tokenised, X overwritten). IVLP keeps the clean placement by default (it has no official
recipe here).

Depth J (``depth``): MaPLe's official recipe is J = 9 of ViT-B/16's 12 blocks, the default
here, clamped to the model's blocks: the tiny zoo's towers have 3 text blocks, so there J = 3
and *every* block is prompted (coupled prompts use the shallower tower's count). ``None``
means every block.

Coupling layers (``clone_couplings``): the official code builds one ``Linear(d_t, d_v)`` and
deep-copies it J - 1 times, so every deep coupling F_1..F_{J-1} starts as the same layer
(F_0 is initialised on its own). ``clone_couplings=False`` draws each one independently.

The workbook's earlier MaPLe (clean placement, every block, independent couplings) is the
preset ``PRESETS["workbook-v1"]``.

State (model-agnostic): the prompts and couplings; the init Gram norms of the deep prompts
(``gram_ref_*``, used by RESTORE's consistency loss and by cliptune.feature_shift). Class-name
token embeddings are buffers recomputed at attach time.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from cliptune import runtime, text, vision
from cliptune.methods import base


# --------------------------------------------------------------------------- shared pieces
def tower_depths(model) -> tuple[int, int | None]:
    """(text blocks, vision blocks or None for a non-ViT tower)."""
    n_text = len(text.text_tower(model).transformer.resblocks)
    try:
        n_vision = len(vision.vit(model).transformer.resblocks)
    except vision.VisualPromptsNeedViT:
        n_vision = None
    return n_text, n_vision


def resolve_depth(depth: int | None, layers: int) -> int:
    """J: None -> every block; larger than the tower -> clamped to its blocks."""
    if depth is None:
        return layers
    if depth < 1:
        raise ValueError(f"depth must be >= 1 (the first block takes the shallow prompt), not "
                         f"{depth}; use depth=1 for shallow prompts only")
    return min(depth, layers)


def init_ctx(clip, n_ctx: int, ctx_init: str | None, gen: torch.Generator) -> torch.Tensor:
    """[n_ctx, d_t]: the token embeddings of ``ctx_init``'s first n_ctx tokens, or N(0, 0.02^2)."""
    if n_ctx < 0:
        raise ValueError(f"n_ctx must be >= 0, not {n_ctx}")
    width = text.text_tower(clip.model).width
    if n_ctx == 0:
        return torch.zeros(0, width)
    if not ctx_init:
        return torch.randn(n_ctx, width, generator=gen) * 0.02
    tokens = clip.tokenize([ctx_init.replace("_", " ")])
    n_words = int(tokens[0].argmax()) - 1  # tokens between SOS and EOT
    if n_ctx > n_words:
        raise ValueError(f"n_ctx={n_ctx} exceeds the {n_words} tokens of ctx_init={ctx_init!r}; "
                         "use a longer ctx_init, a smaller n_ctx, or ctx_init=None (random init)")
    with torch.no_grad():
        return text.embed_tokens(clip.model, tokens)[0, 1:1 + n_ctx].float().cpu().clone()


def gaussian(n: int, width: int, gen: torch.Generator) -> nn.Parameter:
    return nn.Parameter(torch.randn(n, width, generator=gen) * 0.02)


def seeded_linear(d_in: int, d_out: int, gen: torch.Generator) -> nn.Linear:
    """nn.Linear with PyTorch's default init U(-1/sqrt(d_in), 1/sqrt(d_in)), drawn from ``gen``
    rather than the global generator (so a rebuilt method is bit-identical)."""
    layer = nn.Linear(d_in, d_out)
    bound = 1.0 / math.sqrt(d_in)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(d_out, d_in, generator=gen) * 2 * bound - bound)
        layer.bias.copy_(torch.rand(d_out, generator=gen) * 2 * bound - bound)
    return layer


def gram_norm(p: torch.Tensor) -> torch.Tensor:
    """||P^T P||_F of a prompt P [n, d] (computed as ||P P^T||_F: same singular values)."""
    return torch.linalg.matrix_norm(p @ p.T) if p.shape[0] else p.new_zeros(())


class ClassPrompts(nn.Module):
    """Frozen halves of the text prompts, [SOS] + n learned slots + the rest, per class.

    ``lead=None``: tokens of "X .. X {class}." (clean). ``lead="a photo of a"``: tokens of
    "a photo of a {class}." whose first n tokens get overwritten (MaPLe's quirk).
    """

    def __init__(self, clip, classnames, n_ctx: int, lead: str | None = None):
        super().__init__()
        if lead is None:
            strings = text.placeholder_prompts(classnames, n_ctx, "{}.")
        else:
            strings = [f"{lead} {c.replace('_', ' ')}." for c in classnames]
        tokens = clip.tokenize(strings)
        emb = text.embed_tokens(clip.model, tokens)
        self.n_ctx = n_ctx
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("prefix", emb[:, :1].detach(), persistent=False)
        self.register_buffer("suffix", emb[:, 1 + n_ctx:].detach(), persistent=False)

    def encode(self, model, ctx, deep=None, chunk_size: int = 256, return_hidden: bool = False):
        """Unnormalised features [C, D] (and per-block EOT states) of the prompted classes."""
        feats, hidden = [], []
        for i in range(0, len(self.tokens), chunk_size):
            sl = slice(i, i + chunk_size)
            n = len(self.tokens[sl])
            mid = ctx.to(self.prefix.dtype).unsqueeze(0).expand(n, -1, -1)
            x = torch.cat([self.prefix[sl], mid, self.suffix[sl]], dim=1)
            out = text.encode_embedded(model, x, self.tokens[sl], deep_prompts=deep,
                                       return_hidden=return_hidden, trim=True)
            if return_hidden:
                out, h = out
                hidden.append(h)
            feats.append(out)
        feats = torch.cat(feats)
        if not return_hidden:
            return feats
        return feats, [torch.cat(layer) for layer in zip(*hidden)]


@torch.no_grad()
def hand_made_states(clip, classnames, template: str, chunk_size: int = 256):
    """The frozen text features [C, D] (unnormalised) of ``template`` and their per-block EOT
    states: the reference the feature shift of a prompted text tower is measured against."""
    tokens = base.class_tokens(clip, classnames, template)
    feats, hidden = [], []
    for i in range(0, len(tokens), chunk_size):
        t = tokens[i:i + chunk_size]
        out, h = text.encode_embedded(clip.model, text.embed_tokens(clip.model, t), t,
                                      return_hidden=True, trim=True)
        feats.append(out)
        hidden.append(h)
    return torch.cat(feats), [torch.cat(layer) for layer in zip(*hidden)]


class DeepPromptMethod(base.Method):
    """What IVLP, MaPLe and RESTORE share: prompted towers, logits, Gram norms.

    Subclasses define ``text_prompt_tensors()`` -> (ctx or None, [deep...]) and
    ``vision_prompt_tensors()`` -> (shallow or None, [deep...]).
    """

    frozen_image_encoder = False
    uses_text_prompts = True
    uses_vision_prompts = True

    # ------------------------------------------------------------------ attach
    def check_widths(self, clip):
        if self.uses_vision_prompts:
            vision.vit(clip.model)  # a ResNet tower: VisualPromptsNeedViT, not a width error
        super().check_widths(clip)

    def on_attach(self):
        if self.uses_text_prompts:
            lead = self.config.ctx_init if self.config.keep_init_words and \
                self.config.ctx_init else None
            self.prompts = ClassPrompts(self.clip, self.classnames, self.n_ctx, lead)
        else:  # frozen hand-made prompt (VPT-deep): encoded once, here
            feats, _ = hand_made_states(self.clip, self.classnames, self.templates[0])
            self.register_buffer("fixed_text", feats, persistent=False)

    def _capture_gram_refs(self):
        """Init Gram norms of the deep prompts, kept as (persistent) state, so that the
        relative shift s_i = ||P_i^T P_i|| / ||P_i^T P_i||_init survives save and load."""
        with torch.no_grad():
            t, v = self.gram_norms()
        self.register_buffer("gram_ref_text", t.detach().clone())
        self.register_buffer("gram_ref_vision", v.detach().clone())

    # ------------------------------------------------------------------ encoders
    def text_prompt_tensors(self):
        return None, []

    def vision_prompt_tensors(self):
        return None, []

    def encode_text_states(self, return_hidden: bool = False):
        """Text features [C, D] before normalisation (and per-block EOT states)."""
        if not self.uses_text_prompts:
            if return_hidden:
                return hand_made_states(self.clip, self.classnames, self.templates[0])
            return self.fixed_text
        ctx, deep = self.text_prompt_tensors()
        return self.prompts.encode(self.clip.model, ctx, deep, return_hidden=return_hidden)

    def encode_image_states(self, pixels, return_hidden: bool = False):
        """Image features [B, D] before normalisation (and per-block CLS states)."""
        shallow, deep = self.vision_prompt_tensors() if self.uses_vision_prompts else (None, [])
        if shallow is None and not return_hidden:
            return self.clip.model.encode_image(pixels)
        return vision.encode_prompted(self.clip.model, pixels, shallow, deep,
                                      return_hidden=return_hidden)

    def calibrate(self, z: torch.Tensor, modality: str) -> torch.Tensor:
        """Hook on the final embeddings (RESTORE's surgery adapters); identity here."""
        return z

    def text_features(self) -> torch.Tensor:
        """Normalised class features [C, D] as used in the logits. (Not ``class_features``:
        these methods change the image tower too, so class weights alone do not classify.)"""
        return F.normalize(self.calibrate(self.encode_text_states(), "text"), dim=-1)

    def image_embeddings(self, pixels) -> torch.Tensor:
        return F.normalize(self.calibrate(self.encode_image_states(pixels), "vision"), dim=-1)

    def forward(self, batch):
        txt = self.text_features()
        if batch.pixels is None:  # language-only prompting: the loop hands cached features
            img = batch.features
        else:
            img = self.image_embeddings(batch.pixels)
        return self.logit_scale() * img @ txt.T

    # ------------------------------------------------------------------ shift proxy
    def deep_text_prompts(self) -> list:
        return list(self.text_prompt_tensors()[1]) if self.uses_text_prompts else []

    def deep_vision_prompts(self) -> list:
        return list(self.vision_prompt_tensors()[1]) if self.uses_vision_prompts else []

    def gram_norms(self):
        """Raw ||P_i^T P_i||_F of every deep prompt: ([J_t - 1], [J_v - 1]) tensors."""
        def stack(ps):
            return torch.stack([gram_norm(p) for p in ps]) if ps else torch.zeros(0)
        return stack(self.deep_text_prompts()), stack(self.deep_vision_prompts())

    def relative_gram(self):
        """RESTORE's code-level shift proxy s_i = ||P_i^T P_i||_F / its init value."""
        t, v = self.gram_norms()
        return (t / self.gram_ref_text.clamp_min(1e-12),
                v / self.gram_ref_vision.clamp_min(1e-12))


# --------------------------------------------------------------------------- IVLP
@dataclasses.dataclass
class IVLPConfig:
    n_ctx: int = 2
    depth: int | None = None  # J per tower; None = every block; clamped to the tower's blocks
    text_prompts: bool = True
    vision_prompts: bool = True
    ctx_init: str | None = "a photo of a"  # shallow text context init; None = N(0, 0.02^2)
    keep_init_words: bool = False  # MaPLe repo's quirk: "[ctx] of a {class}." (see docstring)
    init_seed: int = 0


class IVLP(DeepPromptMethod):
    name = "ivlp"
    Config = IVLPConfig

    def __init__(self, clip, config=None):
        super().__init__(config)
        cfg = self.config
        if not (cfg.text_prompts or cfg.vision_prompts):
            raise ValueError("IVLP with text_prompts=False and vision_prompts=False learns "
                             "nothing; switch one of them on (or use the zero-shot method)")
        self.uses_text_prompts, self.uses_vision_prompts = cfg.text_prompts, cfg.vision_prompts
        self.n_ctx = cfg.n_ctx
        gen = runtime.generator(cfg.init_seed, "ivlp")
        n_text, n_vision = tower_depths(clip.model)
        keys = []
        if cfg.text_prompts:
            self.depth_text = resolve_depth(cfg.depth, n_text)
            width = text.text_tower(clip.model).width
            self.ctx = nn.Parameter(init_ctx(clip, cfg.n_ctx, cfg.ctx_init, gen))
            self.deep_text = nn.ParameterList([gaussian(cfg.n_ctx, width, gen)
                                               for _ in range(self.depth_text - 1)])
            keys.append("text width")
        if cfg.vision_prompts:
            width = vision.vision_width(clip.model)  # raises VisualPromptsNeedViT on a ResNet
            self.depth_vision = resolve_depth(cfg.depth, n_vision)
            self.vpt = gaussian(cfg.n_ctx, width, gen)
            self.deep_vision = nn.ParameterList([gaussian(cfg.n_ctx, width, gen)
                                                 for _ in range(self.depth_vision - 1)])
            keys.append("vision width")
        # language-only prompting leaves the image tower frozen: the loop may cache features
        self.frozen_image_encoder = not cfg.vision_prompts
        self.record_widths(clip, *keys)
        self._capture_gram_refs()

    def text_prompt_tensors(self):
        return self.ctx, list(self.deep_text)

    def vision_prompt_tensors(self):
        return self.vpt, list(self.deep_vision)


# --------------------------------------------------------------------------- MaPLe
@dataclasses.dataclass
class MaPLeConfig:
    n_ctx: int = 2
    depth: int | None = 9  # J (official: 9 of 12); clamped to the shallower tower; None = all
    ctx_init: str | None = "a photo of a"
    keep_init_words: bool = True  # the official "[ctx ctx] of a {class}." (False: clean)
    clone_couplings: bool = True  # F_1..F_{J-1} start as copies of one layer (official)
    init_seed: int = 0


PRESETS = {"official": {},
           "workbook-v1": {"depth": None, "keep_init_words": False, "clone_couplings": False}}


class MaPLe(DeepPromptMethod):
    name = "maple"
    Config = MaPLeConfig

    def __init__(self, clip, config=None):
        super().__init__(config)
        cfg = self.config
        self.n_ctx = cfg.n_ctx
        gen = runtime.generator(cfg.init_seed, "maple")
        n_text, n_vision = tower_depths(clip.model)
        d_v = vision.vision_width(clip.model)  # raises VisualPromptsNeedViT on a ResNet
        d_t = text.text_tower(clip.model).width
        self.depth = resolve_depth(cfg.depth, min(n_text, n_vision))
        self.ctx = nn.Parameter(init_ctx(clip, cfg.n_ctx, cfg.ctx_init, gen))   # P_t^0
        self.proj = seeded_linear(d_t, d_v, gen)                                # F_0
        self.deep_text = nn.ParameterList([gaussian(cfg.n_ctx, d_t, gen)       # P_t^1..J-1
                                           for _ in range(self.depth - 1)])
        if cfg.clone_couplings:  # one layer, deep-copied: the deep couplings start identical
            single = seeded_linear(d_t, d_v, gen)
            couplings = [copy.deepcopy(single) for _ in range(self.depth - 1)]
        else:
            couplings = [seeded_linear(d_t, d_v, gen) for _ in range(self.depth - 1)]
        self.deep_proj = nn.ModuleList(couplings)                                # F_1..J-1
        self.record_widths(clip, "text width", "vision width")
        self._capture_gram_refs()

    def text_prompt_tensors(self):
        return self.ctx, list(self.deep_text)

    def vision_prompt_tensors(self):
        # the coupling: every vision prompt is a function of the text prompt of its depth
        return self.proj(self.ctx), [f(p) for f, p in zip(self.deep_proj, self.deep_text)]
