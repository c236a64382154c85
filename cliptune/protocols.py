"""The evaluation protocols shared by notebooks 02-07: few-shot, base-to-new, domains.

Introduced in notebook 02. Trained modules are checkpointed under data/checkpoints with a name
that encodes everything that determines them, so notebook 07 reuses what notebooks 02-04
trained instead of training it again. The name's hash covers the model's weights (its sha256),
so a module trained on weights that have since changed is trained again, never reused.
"""
from __future__ import annotations

import dataclasses

from cliptune import data, evaluate, methods, results, runtime, train


def checkpoint_path(method: str, train_set, seed: int, clip, method_cfg: dict,
                    train_cfg: train.TrainConfig):
    h = results.config_hash({"method": method, "data": train_set.key, "seed": seed,
                             "model": clip.fingerprint, "method_cfg": method_cfg,
                             "train_cfg": dataclasses.asdict(train_cfg)})
    safe = train_set.name.replace("/", "_")
    return runtime.CHECKPOINT_DIR / f"{method}_{safe}_{clip.key.replace(':', '_')}_s{seed}_{h}.safetensors"


def train_method(name: str, clip, train_set, seed: int = 1, train_cfg=None, progress=True,
                 **method_cfg):
    """Create ``name`` on ``clip``, attach it to ``train_set``'s classes and train it (or load
    the checkpoint if an identical run already finished). Returns (method, history)."""
    train_cfg = dataclasses.replace(train_cfg or train.TrainConfig(), seed=seed)
    method = methods.create(name, clip, **method_cfg)
    method.attach(clip, train_set.classnames, train_set.templates)
    history = {}
    if any(p.requires_grad for p in method.parameters()):
        path = checkpoint_path(name, train_set, seed, clip, method_cfg, train_cfg)
        history = train.fit(method, train_set, train_cfg, checkpoint=path, progress=progress)
    else:  # zero-shot and training-free caches
        method.on_train_start(train_set)
    return method, history


def evaluate_on(method, clip, ds) -> float:
    """Attach ``method`` to ``clip`` and ``ds``'s classes, then measure top-1 accuracy."""
    method.attach(clip, ds.classnames, ds.templates)
    return evaluate.accuracy(method, ds)


def score(method, clip, ds) -> dict:
    """Attach ``method`` to ``clip`` and ``ds``'s classes; returns ``{"value": top-1 accuracy
    in percent, "correct": per-image bool vector}``, ready to be spread into a result row
    (``results.record`` stores the vector for ``cliptune.compare``)."""
    method.attach(clip, ds.classnames, ds.templates)
    hits = evaluate.correct(method, ds)
    return {"value": 100.0 * float(hits.mean()), "correct": hits}


def base_to_new(name: str, clip, task: str, shots: int = 16, seed: int = 1, train_cfg=None,
                domain: str = "photo", **method_cfg) -> dict:
    """CoOp's base-to-new protocol on a tiny-world task: train on base classes, test base
    accuracy on base classes and new accuracy on new classes. Returns base, new, hm, the
    trained method, and the per-image correctness vectors base_correct and new_correct."""
    base_train, _ = data.base_new(data.tiny(task, "train"))
    base_test, new_test = data.base_new(data.tiny(task, "test", domain))
    train_set = data.few_shot(base_train, shots, seed)
    method, history = train_method(name, clip, train_set, seed, train_cfg, **method_cfg)
    b, n = score(method, clip, base_test), score(method, clip, new_test)
    return {"base": b["value"], "new": n["value"],
            "hm": evaluate.harmonic_mean(b["value"], n["value"]), "method": method,
            "history": history, "base_correct": b["correct"], "new_correct": n["correct"]}
