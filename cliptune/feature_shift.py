"""Feature shift: how far learned prompts move each tower's features away from frozen CLIP.

Introduced in notebook 04 (RESTORE's explanatory tool, spec section 4.8). For block l of a
tower and the same inputs run through the prompted and the frozen model,

    D^l = mean_i ||h_i^l(prompted) - h_i^l(frozen)|| / mean_i ||h_i^l(frozen)||

with h the end-of-text state (text; the frozen reference is the hand-made prompt
``templates[0]`` of the attached classes) or the CLS state (images; the frozen reference is the
plain tower). The final-embedding shift is mean ||z - z_0|| on L2-normalised embeddings (after
RESTORE's surgery adapters, since those are what the logits see). The cross-modal gap is
|D_text - D_vision|.

Works for IVLP, MaPLe and RESTORE (both towers), for CoOp-style methods that hold ``ctx`` and
``prompts`` (text only: their image shift is zero by construction) and for zero-shot CLIP.
:func:`gram_shift` gives RESTORE's code-level proxy (relative Gram norms of the deep prompts).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cliptune import features, text, vision


def relative_shift(h: torch.Tensor, h0: torch.Tensor) -> float:
    """mean ||h - h0|| / mean ||h0|| over the rows of two [N, width] tensors."""
    if h.shape != h0.shape:
        raise ValueError(f"prompted states {tuple(h.shape)} and frozen states {tuple(h0.shape)}"
                         " must have the same shape (same inputs, same tower)")
    return float((h - h0).norm(dim=-1).mean() / h0.norm(dim=-1).mean().clamp_min(1e-12))


@torch.no_grad()
def frozen_text_states(clip, classnames, template: str):
    """Normalised hand-made class features [C, D] and per-block EOT states of frozen CLIP."""
    from cliptune.methods.maple import hand_made_states
    z, hidden = hand_made_states(clip, classnames, template)
    return F.normalize(z, dim=-1), hidden


@torch.no_grad()
def frozen_image_states(clip, pixels):
    z, hidden = vision.encode_prompted(clip.model, pixels, return_hidden=True)
    return F.normalize(z, dim=-1), hidden


@torch.no_grad()
def text_states(method):
    """Normalised class features [C, D] as the method's logits see them, and per-block EOT
    states (None when the method does not expose them)."""
    if hasattr(method, "encode_text_states"):  # IVLP, MaPLe, RESTORE
        z, hidden = method.encode_text_states(return_hidden=True)
        return F.normalize(method.calibrate(z, "text"), dim=-1), hidden
    from cliptune.methods.cocoop import CoCoOp
    from cliptune.methods.coop import CoOp
    from cliptune.methods.kgcoop import KgCoOp
    if isinstance(method, CoCoOp):
        raise TypeError("CoCoOp's prompts differ per image, so it has no single text shift; "
                        "measure CoOp, KgCoOp, ContCoOp or the multimodal methods instead")
    if type(method) in (CoOp, KgCoOp):  # shared context: [SOS][ctx][class .]
        prompts = method.prompts
        x = prompts.assemble(method.ctx)
        z, hidden = text.encode_embedded(method.clip.model, x, prompts.tokens, return_hidden=True)
        return F.normalize(z, dim=-1), hidden
    if hasattr(method, "class_features"):  # e.g. ContCoOp: class-conditioned, final layer only
        return method.class_features(), None
    return frozen_text_states(method.clip, method.classnames, method.templates[0])


@torch.no_grad()
def image_states(method, pixels):
    """Normalised image embeddings [B, D] and per-block CLS states under ``method``."""
    if hasattr(method, "encode_image_states") and method.uses_vision_prompts:
        z, hidden = method.encode_image_states(pixels, return_hidden=True)
        return F.normalize(method.calibrate(z, "vision"), dim=-1), hidden
    z, hidden = frozen_image_states(method.clip, pixels)
    if hasattr(method, "calibrate"):  # RESTORE-like adapters on a frozen tower
        z = F.normalize(method.calibrate(z, "vision"), dim=-1)
    return z, hidden


@torch.no_grad()
def measure(method, ds, n_images: int = 256, batch_size: int = 256) -> dict:
    """Feature shift of ``method`` (attached to a model and ``ds``'s classes) on ``ds``.

    Returns ``{"text": [D_t^l], "vision": [D_v^l], "text_final", "vision_final",
    "gap_final", "gap_layers"}``; ``gap_layers`` = |mean_l D_t^l - mean_l D_v^l|. Images: the
    first ``n_images`` of ``ds`` (evenly spaced, so every class is represented).
    """
    if tuple(method.classnames) != tuple(ds.classnames):
        raise ValueError(f"{method.name} is attached to other classes than {ds.name}'s; call "
                         "method.attach(clip, ds.classnames, ds.templates) first")
    was_training = method.training
    method.eval()
    clip = method.clip
    z_t, h_t = text_states(method)
    z_t0, h_t0 = frozen_text_states(clip, method.classnames, method.templates[0])
    idx = np.linspace(0, len(ds) - 1, min(n_images, len(ds))).round().astype(int).tolist()
    z_v, z_v0, h_v, h_v0 = [], [], [], []
    for i in range(0, len(idx), batch_size):
        px = features.pixels(clip, ds, idx[i:i + batch_size])
        a, ha = image_states(method, px)
        b, hb = frozen_image_states(clip, px)
        z_v.append(a), z_v0.append(b), h_v.append(ha), h_v0.append(hb)
    cat = lambda hs: [torch.cat(layer) for layer in zip(*hs)]  # noqa: E731
    h_v, h_v0 = cat(h_v), cat(h_v0)
    out = {
        "text": [relative_shift(a, b) for a, b in zip(h_t, h_t0)] if h_t is not None else [],
        "vision": [relative_shift(a, b) for a, b in zip(h_v, h_v0)],
        "text_final": relative_shift(z_t, z_t0),
        "vision_final": relative_shift(torch.cat(z_v), torch.cat(z_v0)),
    }
    out["gap_final"] = abs(out["text_final"] - out["vision_final"])
    mean_t = float(np.mean(out["text"])) if out["text"] else out["text_final"]
    out["gap_layers"] = abs(mean_t - float(np.mean(out["vision"])))
    method.train(was_training)
    return out


def rows(shift: dict, **labels) -> list[dict]:
    """Tidy rows (modality, layer, shift) of a :func:`measure` result, plus ``labels``."""
    out = []
    for modality in ("text", "vision"):
        for layer, value in enumerate(shift[modality], start=1):
            out.append({**labels, "modality": modality, "layer": layer, "shift": value})
        out.append({**labels, "modality": modality, "layer": "final",
                    "shift": shift[f"{modality}_final"]})
    return out


@torch.no_grad()
def gram_shift(method) -> dict:
    """RESTORE's proxy: s^i = ||P^i^T P^i||_F / its init value, per deep layer and modality
    (empty for methods without deep prompts), with the mean of each and their gap."""
    if not hasattr(method, "relative_gram"):
        return {"text": [], "vision": [], "text_mean": float("nan"),
                "vision_mean": float("nan"), "gap": float("nan")}
    t, v = method.relative_gram()
    t, v = t.tolist(), v.tolist()
    tm = float(np.mean(t)) if t else float("nan")
    vm = float(np.mean(v)) if v else float("nan")
    return {"text": t, "vision": v, "text_mean": tm, "vision_mean": vm, "gap": abs(tm - vm)}
