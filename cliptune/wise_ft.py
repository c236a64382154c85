"""WiSE-FT weight-space ensembles and task vectors.

Introduced in notebook 05.

WiSE-FT (Wortsman et al., CVPR 2022) interpolates every weight of the zero-shot and the
fine-tuned model:

    theta_alpha = (1 - alpha) * theta_zs + alpha * theta_ft,     alpha in [0, 1]

over *all* state-dict keys (both towers, the temperature and, for FT, the head). ``torch.lerp``
is exact at the ends: alpha = 0 gives theta_zs and alpha = 1 gives theta_ft bit for bit
(tests/test_robust_ft.py checks it).

Task vectors (Ilharco et al., ICLR 2023): tau = theta_ft - theta_pre, applied to another model
as theta + scale * tau. Adding a fine-tuning delta to a *different* model only makes sense for
weights that share an ancestor with the model the delta was measured on; :func:`ancestry`
measures that key by key (notebook 05, "Beyond the papers").
"""
from __future__ import annotations

import copy

import torch

from cliptune import models


def _check_keys(a: dict, b: dict, what_a: str, what_b: str) -> None:
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if missing or extra:
        raise KeyError(f"{what_a} and {what_b} do not hold the same weights: only in {what_a}: "
                       f"{missing[:5]}{'...' if len(missing) > 5 else ''}; only in {what_b}: "
                       f"{extra[:5]}{'...' if len(extra) > 5 else ''}. Interpolate two states of "
                       "the same architecture (e.g. method.zero_shot_state() and "
                       "method.state_dict()).")
    for k in a:
        if a[k].shape != b[k].shape:
            raise ValueError(f"weight {k!r} has shape {tuple(a[k].shape)} in {what_a} but "
                             f"{tuple(b[k].shape)} in {what_b}")


def interpolate(zero_shot_state: dict, finetuned_state: dict, alpha: float) -> dict:
    """theta_alpha = (1 - alpha) theta_zs + alpha theta_ft for every key. Non-float tensors
    (integer buffers) must be equal in both and are copied."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (0 = zero-shot, 1 = fine-tuned), not {alpha}")
    _check_keys(zero_shot_state, finetuned_state, "the zero-shot state", "the fine-tuned state")
    out = {}
    for k, zs in zero_shot_state.items():
        ft = finetuned_state[k]
        if zs.is_floating_point():
            out[k] = torch.lerp(zs, ft.to(zs.device, zs.dtype), float(alpha))
        else:
            if not torch.equal(zs, ft.to(zs.device)):
                raise ValueError(f"non-float weight {k!r} differs between the two states; it "
                                 "cannot be interpolated")
            out[k] = ft.clone()
    return out


def interpolated_method(method, alpha: float, zero_shot_state: dict | None = None):
    """A new instance of a weight-training method (FT, LP-FT, FLYP, ARF) holding
    theta_alpha, attached like ``method``. Pass ``zero_shot_state`` when sweeping many alphas
    (computing it builds one more copy of the model)."""
    zs = zero_shot_state if zero_shot_state is not None else method.zero_shot_state()
    return method.fresh(interpolate(zs, method.state_dict(), alpha))


def interpolated_clip(zero_shot: models.Clip, finetuned: models.Clip, alpha: float,
                      name: str | None = None) -> models.Clip:
    """theta_alpha as a Clip (both towers and the temperature interpolated). For FT, whose
    head is not part of the Clip, use :func:`interpolated_method` to interpolate the head too."""
    model = copy.deepcopy(finetuned.model)
    model.load_state_dict(interpolate(zero_shot.model.state_dict(), finetuned.model.state_dict(),
                                      alpha))
    model.requires_grad_(False).eval()
    return models.Clip(name or f"{finetuned.key}@wise{float(alpha):.2f}", None, model,
                       finetuned.tokenizer, finetuned.preprocess)


def sweep(method, alphas, evaluate) -> list[dict]:
    """``evaluate(interpolated_method) -> dict`` for every alpha; returns one dict per alpha
    with the key ``alpha`` added. The zero-shot state is built once."""
    zs = method.zero_shot_state()
    out = []
    for a in alphas:
        out.append({"alpha": float(a), **evaluate(interpolated_method(method, a, zs))})
    return out


# --------------------------------------------------------------------------- task vectors
def task_vector(pretrained: dict, finetuned: dict) -> dict:
    """tau = theta_ft - theta_pre for every floating-point key."""
    _check_keys(pretrained, finetuned, "the pretrained state", "the fine-tuned state")
    return {k: finetuned[k] - pretrained[k].to(finetuned[k].device) for k in pretrained
            if pretrained[k].is_floating_point()}


def apply_task_vector(model_state: dict, tv: dict, scale: float = 1.0, keys=None) -> dict:
    """theta + scale * tau on the keys of ``tau`` (or only ``keys``); the others are copied."""
    keys = list(tv) if keys is None else list(keys)
    unknown = [k for k in keys if k not in model_state]
    if unknown:
        raise KeyError(f"the task vector changes weights the model does not have: {unknown[:5]}"
                       "; a task vector only applies to a model of the same architecture")
    out = {k: v.clone() for k, v in model_state.items()}
    for k in keys:
        if k not in tv:
            raise KeyError(f"{k!r} is not in the task vector")
        if tv[k].shape != model_state[k].shape:
            raise ValueError(f"task vector entry {k!r} has shape {tuple(tv[k].shape)}, the model "
                             f"{tuple(model_state[k].shape)}")
        out[k] = model_state[k] + scale * tv[k].to(model_state[k].device, model_state[k].dtype)
    return out


def ancestry(state_a: dict, state_b: dict) -> dict:
    """Per key, how related two models' weights are: the cosine between the flattened
    tensors and the relative distance |b - a| / |a|. Weights that share an ancestor (a tower
    initialised from the other model) have cosine near 1; independent initialisations near 0."""
    _check_keys(state_a, state_b, "the first model", "the second model")
    out = {}
    for k in state_a:
        a, b = state_a[k].float().flatten(), state_b[k].float().flatten().to(state_a[k].device)
        if not state_a[k].is_floating_point() or a.numel() == 0:
            continue
        na, nb = a.norm(), b.norm()
        cos = float(a @ b / (na * nb)) if na > 0 and nb > 0 else float(torch.equal(a, b))
        out[k] = {"cosine": cos, "relative_distance": float((b - a).norm() / na) if na > 0
                  else float((b - a).norm()), "numel": a.numel()}
    return out
