"""Diagnostics that show whether a reconstruction's mechanism is at work, beside its results.

Introduced with the reconstructions: ContCoOp in notebook 02 (and 07), RESTORE in notebook 04,
ARF in notebook 05. Each function takes a trained (attached) method and returns plain numbers:

- :func:`contcoop`: how much of the prompt comes through the attention path, how peaked the
  attention is, how much of it lands on the class name; :func:`contcoop_follow`: whether the
  prompts move when the attached model's class embeddings move (the paper's idea).
- :func:`arf`: how often the anchor captions name attributes their class prompt lacks, the
  retrieval precision (the retrieved scene shows the class), captions over the context.
- :func:`restore_shift`: both feature-shift measures (RESTORE's Gram-norm proxy and the
  hidden-state shift gap) of a method; :func:`restore_before_after` puts a fresh copy and the
  trained method side by side; :func:`loss_term` shows how a regulariser behaved during
  training (satisfied at once, idle, or blown up).
"""
from __future__ import annotations

import re

import numpy as np
import torch

from cliptune import world


# --------------------------------------------------------------------------- ContCoOp
@torch.no_grad()
def contcoop(method) -> dict:
    """Mechanism numbers of an attached ContCoOp.

    - ``attention_share``: mean over classes of ||A_c|| / (||P|| + ||A_c||), with A_c the
      attention path's part of the prompt (gamma Attn in the residual form) and P the free
      residual; 1.0 for the read-out form, which has no free part. Near 0: the method is CoOp.
    - ``entropy``: mean attention entropy over (class, slot) in nats; ``entropy_normalised``
      divides by log(number of keys), so 1 is a uniform read-out and 0 a one-hot one. A class
      with a single key (a one-token name, keys = class only) has no choice to make: its
      entropy is 0 by definition, not a measured one-hot read-out.
    - ``keys``: the number of keys each class attends over, averaged over classes; where it is
      1, ``entropy_normalised`` carries no information (report it as not applicable).
    - ``class_mass``: mean attention mass on the class name's keys (1.0 when only they are keys).
    - ``gamma``: the residual form's gate (NaN for the read-out).
    """
    from cliptune.methods.contcoop import ContCoOp
    if not isinstance(method, ContCoOp):
        raise TypeError(f"diagnostics.contcoop needs a ContCoOp, not {type(method).__name__}")
    _, weights, path, is_class = method.attention()
    pad = method.class_pad
    if method.config.prompt_form == "readout":
        share = 1.0
        gamma = float("nan")
    else:
        free = method.ctx.norm()
        part = path.flatten(1).norm(dim=1)
        share = float((part / (free + part).clamp_min(1e-12)).mean())
        gamma = float(method.gamma)
    if method.config.kv == "prompt+class" and method.config.prompt_form == "residual":
        pad = torch.cat([torch.zeros(len(pad), method.n_slots, dtype=torch.bool,
                                     device=pad.device), pad], dim=1)
    valid = (~pad).unsqueeze(1)  # [C, 1, K]
    w = weights.clamp_min(1e-30)
    entropy = -(weights * w.log() * valid).sum(-1)  # [C, M]
    n_keys = valid.sum(-1).clamp_min(1).float()
    norm = torch.where(n_keys > 1, entropy / n_keys.log().clamp_min(1e-12),
                       torch.zeros_like(entropy))
    mass = (weights * is_class.to(weights.dtype)).sum(-1)
    return {"form": method.config.prompt_form, "attention_share": share,
            "entropy": float(entropy.mean()), "entropy_normalised": float(norm.mean()),
            "keys": float(n_keys.mean()), "class_mass": float(mass.mean()), "gamma": gamma}


@torch.no_grad()
def contcoop_follow(method, clip_a, clip_b, classnames, templates=("a photo of a {}.",)) -> dict:
    """Relative move of the class embeddings E_c and of the prompts P_c between two models.

    ``embedding_move`` = ||E_c(b) - E_c(a)|| / ||E_c(a)|| and ``prompt_move`` likewise for the
    prompts, both averaged over classes. A prompt that follows its model moves about as much
    as the embeddings; CoOp's (and a gate-closed ContCoOp's) prompts do not move at all. The
    method ends attached to ``clip_b``.
    """
    def state(clip):
        method.attach(clip, classnames, templates)
        return method.class_emb.clone(), method.class_context().clone()

    e_a, p_a = state(clip_a)
    e_b, p_b = state(clip_b)
    if e_a.shape != e_b.shape:
        raise ValueError(f"{clip_a.key} and {clip_b.key} tokenize the classes differently; "
                         "compare models that share a tokenizer")

    def move(x, y):
        return float(((y - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
                      .clamp_min(1e-12)).mean())
    return {"embedding_move": move(e_a, e_b), "prompt_move": move(p_a, p_b)}


# --------------------------------------------------------------------------- ARF
ATTRIBUTE_WORDS = frozenset(
    list(world.COLOURS) + list(world.PATTERNS) + list(world.SIZES) + list(world.COUNTS)
    + list(world.BACKGROUNDS) + list(world.SHAPES) + [s + "s" for s in world.SHAPES])


def attribute_words(caption: str) -> set:
    """The tiny world's attribute words (colour, texture, size, count, background, shape) in
    ``caption``."""
    return set(re.findall(r"[a-z]+", caption.lower())) & ATTRIBUTE_WORDS


def novel_attribute_rate(captions, prompts) -> float:
    """Fraction of ``captions`` that name an attribute their paired class prompt lacks."""
    if len(captions) != len(prompts):
        raise ValueError(f"{len(captions)} captions but {len(prompts)} class prompts")
    if not len(captions):
        return float("nan")
    return float(np.mean([bool(attribute_words(c) - attribute_words(p))
                          for c, p in zip(captions, prompts)]))


def shows_class(task: str, scene, classname: str) -> bool:
    """Whether a tiny-world scene has the label attribute ``classname`` of ``task``."""
    value = {"shapes": scene.shape, "colours": scene.colour, "textures": scene.texture,
             "objects": f"{scene.colour} {scene.shape}",
             "counts": world.COUNTS[scene.count - 1]}
    if task not in value:
        raise KeyError(f"unknown tiny-world task {task!r}; known: {sorted(value)}")
    return value[task] == classname


def arf_per_class(method) -> tuple[dict, list]:
    """Which retrieved pairs belong to which class, and whether they show it.

    Retrieval keeps the top ``k`` pairs of every class and pools them; a pair can be in the
    lists of several classes, and ``Anchors.best_class`` (what the mechanism numbers read) is
    only the class that scores it highest. Returns ``(per_class, retrieved_for)``:
    ``per_class[classname]`` = {``retrieved``: pairs in the class's own top ``k``,
    ``shared``: of those, pairs also in another class's list, ``scored highest``: pairs whose
    ``best_class`` it is, ``show it``: of its own list, pairs whose scene shows the class,
    ``show it, any list``: pooled pairs whose scene shows it (tiny world; NaN otherwise)};
    ``retrieved_for[j]``: the classes (indices) in whose list pair ``j`` is. The lists are the
    retrieval's own (``Anchors.ranked``)."""
    anchors, names = method.anchors, method.classnames
    lists = [set(int(j) for j in row) for row in anchors.ranked]
    retrieved_for = [tuple(c for c in range(len(names)) if j in lists[c])
                     for j in range(len(anchors))]
    task = method._train_set.name.split("/")[0]
    scenes = anchors.scenes if anchors.scenes is not None and task in world.TASKS else None

    def show(j, c):
        return shows_class(task, scenes[j], names[c])

    per_class = {}
    for c, name in enumerate(names):
        own = sorted(lists[c])
        per_class[name] = {
            "retrieved": len(own),
            "shared": sum(len(retrieved_for[j]) > 1 for j in own),
            "scored highest": int(np.sum(anchors.best_class == c)),
            "show it": sum(show(j, c) for j in own) if scenes else float("nan"),
            "show it, any list": (sum(show(j, c) for j in range(len(anchors))) if scenes
                                  else float("nan"))}
    return per_class, retrieved_for


def arf(method) -> dict:
    """Mechanism numbers of an ARF method after ``on_train_start`` (anchors built).

    - ``ita_novel_attributes``: fraction of retrieved pairs whose caption names an attribute
      that the hand-made prompt of the class they were retrieved for lacks (0: the second anchor
      repeats the class prompt); ``tca_novel_attributes`` the same for the fine-tuning captions.
    - ``retrieval_precision``: fraction of retrieved pairs whose scene shows that class
      (tiny world only; NaN otherwise).
    - ``tca_over_context`` / ``ita_over_context``: (before, after) caption fitting, as fractions.
    - ``per_class`` and ``retrieved_for``: :func:`arf_per_class` (anchors per class, and how
      many of them show their class).
    """
    cfg = method.config
    template = method.templates[0]
    out = {"retrieval": cfg.retrieval, "fit_captions": cfg.fit_captions}
    anchors = method.anchors
    if anchors is not None:
        prompts = [template.format(method.classnames[c]) for c in anchors.best_class]
        out["anchors"] = len(anchors)
        out["ita_novel_attributes"] = novel_attribute_rate(anchors.captions, prompts)
        task = method._train_set.name.split("/")[0]
        if anchors.scenes is not None and task in world.TASKS:
            out["retrieval_precision"] = float(np.mean([
                shows_class(task, s, method.classnames[c])
                for s, c in zip(anchors.scenes, anchors.best_class)]))
        else:
            out["retrieval_precision"] = float("nan")
        out["per_class"], out["retrieved_for"] = arf_per_class(method)
    if method.train_captions is not None:
        labels = method._train_set.labels
        prompts = [template.format(method.classnames[y]) for y in labels]
        out["tca_novel_attributes"] = novel_attribute_rate(method.train_captions, prompts)
    for key, counts in getattr(method, "caption_fit", {}).items():
        n = max(counts["n"], 1)
        out[f"{key}_over_context"] = (counts["over_before"] / n, counts["over_after"] / n)
    return out


# --------------------------------------------------------------------------- RESTORE
def restore_shift(method, ds, n_images: int = 256) -> dict:
    """Both feature-shift measures of a deep-prompt method (MaPLe, RESTORE, IVLP) on ``ds``:
    ``gram_gap`` (RESTORE's code-level proxy, |mean s_t - mean s_v| of the relative Gram norms)
    and ``hidden_gap`` (|mean_l D_t^l - mean_l D_v^l| of the hidden-state shifts, the paper's
    definition), with ``hidden_gap_final`` on the final embeddings."""
    from cliptune import feature_shift
    gram = feature_shift.gram_shift(method)
    hidden = feature_shift.measure(method, ds, n_images)
    return {"gram_text": gram["text_mean"], "gram_vision": gram["vision_mean"],
            "gram_gap": gram["gap"], "hidden_text": float(np.mean(hidden["text"])),
            "hidden_vision": float(np.mean(hidden["vision"])),
            "hidden_gap": hidden["gap_layers"], "hidden_gap_final": hidden["gap_final"]}


def restore_before_after(method, ds, n_images: int = 256):
    """A pandas table (stage x measures) of :func:`restore_shift` for a fresh method of the
    same class and config (before training: the same seeded init) and for ``method``."""
    import pandas as pd
    fresh = type(method)(method.clip, method.config).attach(method.clip, method.classnames,
                                                            method.templates)
    rows = [{"stage": "before", **restore_shift(fresh, ds, n_images)},
            {"stage": "after", **restore_shift(method, ds, n_images)}]
    return pd.DataFrame(rows).set_index("stage")


def loss_term(history: dict, key: str = "fs") -> dict:
    """How one loss term of a training run behaved, from its history: its value at the first
    and last step, its largest finite value, and the first step where it stopped being finite
    (None if it never did). Shows at a glance whether a regulariser was satisfied at once
    (start high, end near 0), did little (near 0 throughout) or blew up (non-finite)."""
    values = np.asarray((history or {}).get(key, []), dtype=float)
    if values.size == 0:
        raise KeyError(f"the history has no {key!r} entries (keys: {sorted(history or {})}); "
                       "train the run with that loss term, or pass another key")
    finite = np.isfinite(values)
    bad = np.flatnonzero(~finite)
    return {"steps": int(values.size), "first": float(values[0]),
            "max_finite": float(values[finite].max()) if finite.any() else float("nan"),
            "last": float(values[-1]),
            "first_nonfinite_step": int(bad[0]) if bad.size else None}
