"""The one training loop every method uses: seeded, resumable, with cached frozen features.

Introduced in notebook 02.

Determinism: the batch order of epoch e and the augmentation of step s come from generators
seeded by (seed, e) and (seed, s), not from a stream consumed in order, so a run resumed
from a checkpoint draws exactly the batches the uninterrupted run would have drawn.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import time
import warnings

import torch

from cliptune import features, models, runtime
from cliptune.methods.base import Batch


class DivergedWarning(RuntimeWarning):
    """A training run whose loss stopped being finite (the run goes on and says so once)."""


@contextlib.contextmanager
def diverged_runs():
    """Where diverging is a measured outcome (a design search, an ablation): the runs that
    diverge inside the block are printed as one line each instead of warned about; yields the
    list of their messages. Other warnings pass through."""
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", DivergedWarning)
            yield caught
    finally:  # outside the recording block: a warning passed on is not recorded again
        for w in seen:
            if issubclass(w.category, DivergedWarning):
                caught.append(str(w.message))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        for message in caught:
            print("diverged:", message)


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    optimizer: str = "sgd"  # "sgd" (Dassl: momentum 0.9, wd 5e-4) or "adamw"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup: str = "constant"  # "constant": Dassl's first epoch at warmup_lr; "linear": ramp
    warmup_epochs: float = 1.0
    warmup_lr: float = 1e-5
    max_steps: int | None = None  # caps the run (the notebooks' fast mode)
    n_views: int = 4  # augmented views cached for a frozen image encoder; 0 = no augmentation
    augment: bool = True
    seed: int = 1
    grad_clip: float | None = None
    checkpoint_every: int = 0  # steps; 0 = only the final state
    # the paper recipe this config follows unchanged (set by paper_config; "" = the workbook's
    # own schedule, which must then be shown to plateau: cliptune.convergence)
    paper: str = ""


@dataclasses.dataclass(frozen=True)
class PaperRecipe:
    """A method's published few-shot training recipe (16 shots unless ``epochs_by_shots``)."""
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"  # Dassl's SGD: momentum 0.9, wd 5e-4, cosine, 1 warm-up epoch at 1e-5
    source: str = ""
    epochs_by_shots: tuple = ()  # ((shots, epochs), ...) where the epochs depend on the shots
    warmup_epochs: float = 1.0  # Dassl: one constant warm-up epoch at 1e-5; Tip-Adapter: none


PAPER_RECIPES = {  # docs/research, section "Hyper-parameter summary", and its sources
    "coop": PaperRecipe(200, 32, 2e-3, source="CoOp configs/trainers/CoOp (ep50/ep100/ep200)",
                        epochs_by_shots=((1, 50), (2, 100), (4, 100), (8, 200), (16, 200))),
    "cocoop": PaperRecipe(10, 1, 2e-3, source="CoCoOp vit_b16_c4_ep10_batch1_ctxv1"),
    "kgcoop": PaperRecipe(100, 128, 2e-3, source="KgCoOp vit_b16_ep100_ctxv1"),
    # ContCoOp's recipe is not published: the CoOp family's (research spec, section 2.9)
    "contcoop": PaperRecipe(200, 32, 2e-3, source="not published; CoOp's, as proposed"),
    "maple": PaperRecipe(5, 4, 3.5e-3, source="MaPLe vit_b16_c2_ep5_batch4_2ctx"),
    "ivlp": PaperRecipe(5, 4, 3.5e-3, source="MaPLe's recipe (IVLP is its ablation)"),
    "restore": PaperRecipe(10, 4, 3.5e-3, source="RESTORE MaPLe_FSA (MAX_EPOCH 10)"),
    # CLIP-Adapter's official recipe is missing; the one config found in public code
    "clip-adapter": PaperRecipe(10, 4, 2e-3, source="RESTORE_ CLIP_Adapter vit_b16_ep10"),
    "tip-adapter-f": PaperRecipe(20, 256, 1e-3, "adamw", source="Tip-Adapter configs",
                                 warmup_epochs=0.0),
}
# the workbook's own schedules, for methods without a published few-shot recipe; a run on one
# of them counts only where its convergence table shows a plateau (cliptune.convergence)
OWN_RECIPES = {
    # the SGD probe that starts from the zero-shot head (a variant of the classic probe, which
    # is solved, not trained): 200 epochs at a large lr, cheap on cached features
    "linear-probe-zs": PaperRecipe(200, 32, 1e-2, source="the workbook's SGD probe"),
}


def paper_config(method: str, cfg: TrainConfig | None = None, shots: int = 16) -> TrainConfig:
    """``cfg`` (its augmentation, seed, caps) with ``method``'s published epochs, batch,
    learning rate and optimiser, marked as following that recipe (``cfg.paper``)."""
    if method not in PAPER_RECIPES:
        raise KeyError(f"no published recipe for {method!r}; known: {', '.join(PAPER_RECIPES)}."
                       " Train it with a schedule shown to plateau (cliptune.convergence)")
    return _apply(PAPER_RECIPES[method], cfg, shots, paper=True)


def _apply(r: PaperRecipe, cfg: TrainConfig | None, shots: int, paper: bool) -> TrainConfig:
    epochs = dict(r.epochs_by_shots).get(shots, r.epochs)
    extra = {"weight_decay": 0.01} if r.optimizer == "adamw" else {}
    return dataclasses.replace(cfg or TrainConfig(), epochs=epochs, batch_size=r.batch_size,
                               lr=r.lr, optimizer=r.optimizer, warmup_epochs=r.warmup_epochs,
                               paper=r.source if paper else "", **extra)


def recipe(method: str, shots: int = 16, max_steps: int | None = None) -> TrainConfig | None:
    """The training recipe every notebook uses for ``method`` on ``shots`` shots per class:
    its paper's (:func:`paper_config`), else the workbook's own (``OWN_RECIPES``, which must
    be shown to plateau), else ``None`` for a method that trains nothing (zero-shot,
    Tip-Adapter, the classic probe solved by L-BFGS). One function, so that notebooks 02, 03
    and 07 build identical configs and share each other's checkpoints. ``max_steps`` caps
    the run (fast mode)."""
    base = TrainConfig(max_steps=max_steps)
    if method in PAPER_RECIPES:
        return paper_config(method, base, shots)
    if method in OWN_RECIPES:
        return _apply(OWN_RECIPES[method], base, shots, paper=False)
    return None


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)  # drop_last, as Dassl does when n >= batch_size


def finetune_config(n_train: int, steps: int, lr: float, batch_size: int = 64,
                    warmup_steps: int = 10, seed: int = 1) -> TrainConfig:
    """The step-counted schedule of full fine-tuning (notebook 05, tools/schedule_sweep.py):
    AdamW with weight decay 0.1 as WiSE-FT and FLYP fine-tune, a linear warm-up over
    ``warmup_steps``, cosine decay to ``steps``, gradients clipped at norm 1."""
    spe = steps_per_epoch(n_train, batch_size)
    return TrainConfig(epochs=10_000, batch_size=batch_size, lr=lr, optimizer="adamw",
                       weight_decay=0.1, warmup="linear", warmup_epochs=warmup_steps / spe,
                       max_steps=steps, grad_clip=1.0, seed=seed)


def learning_rate(step: int, total: int, spe: int, cfg: TrainConfig) -> float:
    warm = int(round(cfg.warmup_epochs * spe))
    warm = min(warm, max(0, total - 1))
    if step < warm:
        return cfg.warmup_lr if cfg.warmup == "constant" else cfg.lr * (step + 1) / warm
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def make_optimizer(params, cfg: TrainConfig):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}: use 'sgd' or 'adamw'")


def fit(method, train_set, cfg: TrainConfig | None = None, checkpoint=None,
        progress: bool = True, callback=None) -> dict:
    """Train ``method`` (already attached to a CLIP and the training classes) on ``train_set``.

    ``checkpoint``: a path. If the finished file exists, it is loaded and training is skipped
    (the "load if it exists, else train" pattern); partial progress is saved every
    ``cfg.checkpoint_every`` steps beside it and resumed from. ``callback(step, method)`` runs
    after every step; it may return a dict that is added to the history.
    """
    cfg = cfg or TrainConfig()
    clip = method.clip
    final = pathlib.Path(checkpoint) if checkpoint else None
    if final is not None and final.exists():
        method.load_state_dict(models.load_weights(final))
        return read_history(final.with_suffix(".history.json"))
    runtime.set_threads()
    params = [p for p in method.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{method.name} has nothing to train")
    opt = make_optimizer(params, cfg)
    spe = steps_per_epoch(len(train_set), cfg.batch_size)
    total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.epochs * spe, cfg.max_steps)
    labels = torch.as_tensor(train_set.labels)
    views = None
    method.on_train_start(train_set)
    if method.frozen_image_encoder:
        n_views = cfg.n_views if cfg.augment else 0
        views = torch.stack([features.image_features(clip, train_set, v, seed=cfg.seed)
                             for v in range(n_views + 1)])
    history, start = {"step": [], "loss": [], "lr": [], "seconds": 0.0}, 0
    if cfg.paper:
        history["paper_recipe"] = cfg.paper
    partial = final.with_suffix(".partial.pt") if final is not None else None
    if partial is not None and partial.exists():
        start, history = _resume(partial, method, opt)
    method.train()
    # the full-set objective before the first step, at the start of the last 10% of summed
    # learning rate and at the end: a noise-free measure of whether the run still improved
    # (cliptune.convergence)
    tail_start = objective_tail_start(total, spe, cfg)
    t0 = time.time()
    bar = runtime.progress(range(start, total), desc=f"{method.name} ({train_set.name})",
                           disable=not progress, initial=start, total=total, leave=False)
    # a run resumed exactly at an epoch boundary still owes the finished epoch its
    # on_epoch_end (e.g. RESTORE's ratio update): start "inside" that epoch
    epoch = max(start - 1, 0) // spe
    for step in bar:
        if step // spe != epoch:
            method.on_epoch_end(epoch, cfg.epochs)
            epoch = step // spe
        if step == 0 or (step == tail_start and tail_start > 0):
            _record_objective(history, step, objective(method, train_set, views, cfg, step))
        order = torch.randperm(len(train_set), generator=runtime.generator(cfg.seed, "epoch",
                                                                            epoch))
        pos = step % spe
        idx = order[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        gen = runtime.generator(cfg.seed, "step", step)
        batch = Batch(labels=labels[idx].to(clip.device), index=idx, step=step, generator=gen)
        if views is not None:
            v = torch.randint(0, len(views), (len(idx),), generator=gen)
            batch.features = views[v, idx]
        else:
            x = clip.prepare(train_set.raw(idx.numpy()))
            batch.pixels = models.augment(x.cpu(), gen).to(clip.device) if cfg.augment else x
        lr = learning_rate(step, total, spe, cfg)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        if hasattr(method, "lr_multiplier"):  # a method's own stages, e.g. LP-FT (finetune.py)
            for group in opt.param_groups:
                group["lr"] *= method.lr_multiplier(step)
        with runtime.autocast(clip.device):
            logits = method(batch)
            loss, logs = method.loss(batch, logits.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if not math.isfinite(loss.item()) and "diverged_at" not in history:
            # the run goes on (its accuracy then shows the divergence) but says so once
            history["diverged_at"] = step
            warnings.warn(f"{method.name} on {train_set.name}: the training loss is not finite "
                          f"from step {step} on; the run diverged (a smaller lr, or see the "
                          "method's diagnostics)", DivergedWarning, stacklevel=2)
        history["step"].append(step)
        history["loss"].append(loss.item())
        history["lr"].append(lr)
        for k, val in logs.items():
            history.setdefault(k, []).append(val)
        if callback is not None:
            extra = callback(step, method)
            for k, val in (extra or {}).items():
                history.setdefault(k, []).append(val)
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if partial is not None and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 \
                and step + 1 < total:
            history["seconds"] += time.time() - t0
            t0 = time.time()
            _checkpoint(partial, method, opt, step + 1, history)
    if total > start:
        method.on_epoch_end(epoch, cfg.epochs)
        _record_objective(history, total, objective(method, train_set, views, cfg, total - 1))
    method.eval()
    history["seconds"] += time.time() - t0
    if final is not None:
        method.save(final)
        write_history(final.with_suffix(".history.json"), history)
        partial.unlink(missing_ok=True)
    return history


def objective_tail_start(total: int, spe: int, cfg: TrainConfig, tail: float = 0.10) -> int:
    """The first step of the last ``tail`` of the summed learning rate of the schedule."""
    from cliptune import convergence
    lrs = [learning_rate(s, total, spe, cfg) for s in range(total)]
    if total == 0 or sum(lrs) <= 0:
        return max(total - 1, 0)
    return min(convergence.tail_start(lrs, tail), total - 1)


@torch.no_grad()
def objective(method, train_set, views, cfg: TrainConfig, step: int) -> float:
    """The training loss over the whole training set, un-augmented, with no update: unlike
    the loss of single augmented batches it has no batch noise, so two values of it show
    whether a run still improved. Batches follow the set's order; the mean is per image."""
    clip = method.clip
    labels = torch.as_tensor(train_set.labels)
    total, count = 0.0, 0
    for i in range(0, len(train_set), cfg.batch_size):
        idx = torch.arange(i, min(i + cfg.batch_size, len(train_set)))
        batch = Batch(labels=labels[idx].to(clip.device), index=idx, step=step,
                      generator=runtime.generator(cfg.seed, "objective", i))
        if views is not None:
            batch.features = views[0, idx]
        else:
            batch.pixels = clip.prepare(train_set.raw(idx.numpy()))
        with runtime.autocast(clip.device):
            logits = method(batch)
            loss, _ = method.loss(batch, logits.float())
        total += loss.item() * len(idx)
        count += len(idx)
    return total / max(count, 1)


def _record_objective(history: dict, step: int, value: float) -> None:
    history.setdefault("objective_step", []).append(int(step))
    history.setdefault("objective", []).append(float(value))


def write_history(path, history: dict) -> None:
    """Write a run's history atomically (a fresh temporary file renamed into place)."""
    import tempfile
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(history, fh)
        os.replace(tmp, path)
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)


def read_history(path) -> dict:
    """A finished run's history; an unreadable one is reported and replaced by {} (the
    trained weights beside it are intact, only the loss curve is lost)."""
    import warnings
    path = pathlib.Path(path)
    if not path.exists():
        return {}
    try:
        history = json.loads(path.read_text())
        if not isinstance(history, dict):
            raise ValueError(f"holds a {type(history).__name__}, not a dict")
        return history
    except (ValueError, UnicodeDecodeError) as err:
        warnings.warn(f"the training history {path.name} is damaged ({err}); the trained weights "
                      "beside it are used, without their loss curve. Delete both files to train "
                      "again and get the curve back.", stacklevel=3)
        return {}


def _checkpoint(path, method, opt, step, history):
    models.save_partial(path, {"method": method.state_dict(), "optimizer": opt.state_dict(),
                               "step": step, "history": history,
                               "method_extra": method_extra_state(method)})


def _resume(path, method, opt):
    state = models.load_partial(path)
    method.load_state_dict(state["method"])
    opt.load_state_dict(state["optimizer"])
    set_method_extra_state(method, state.get("method_extra", {}))
    return state["step"], state["history"]


def method_extra_state(method) -> dict:
    """Plain numbers a method keeps outside its tensors (e.g. RESTORE's blending ratios)."""
    return dict(getattr(method, "extra_state", lambda: {})())


def set_method_extra_state(method, state: dict) -> None:
    if state and hasattr(method, "set_extra_state_dict"):
        method.set_extra_state_dict(state)


def recipe_table(cfgs: dict, show: bool = True):
    """One row per method (``cfgs``: label -> TrainConfig): epochs, batch, lr, optimiser,
    warm-up and where the recipe comes from. Printed (``show``) and returned."""
    import pandas as pd
    rows = {label: {"epochs": c.epochs, "batch": c.batch_size, "lr": c.lr,
                    "optimizer": c.optimizer, "warm-up epochs": c.warmup_epochs,
                    "max_steps": c.max_steps if c.max_steps is not None else "-",
                    "recipe": c.paper or "the workbook's own (must plateau)"}
            for label, c in cfgs.items() if c is not None}
    df = pd.DataFrame(rows).T
    if show:
        with pd.option_context("display.width", 160, "display.max_colwidth", 60):
            print(df.to_string())
    return df
