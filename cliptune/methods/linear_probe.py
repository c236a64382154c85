"""Linear probe: a linear classifier on frozen, normalised CLIP image features.

    logits = f(x) W^T + b          f(x) = normalize(image_encoder(x)),  W in R^{C x D},  b in R^C

Introduced in notebook 03. The state is the head itself (``weight`` [C, D], ``bias`` [C]).

**``linear-probe``: the classic probe, as CLIP (Radford et al. 2021, sec. 3.2) and CoOp run it**
(``solver="lbfgs"``): multinomial logistic regression from scratch on the clean (un-augmented)
features of the training images,

    min_{W, b}  sum_i CE(f_i W^T + b, y_i) + 1 / (2 C) ||W||_F^2      (bias not penalised)

which is scikit-learn's ``LogisticRegression(C=C)`` objective (tests/test_adapters.py checks
that the two agree). It is convex, so full-batch L-BFGS in float64 finds the same optimum from
any start: deterministic, no learning rate, no epochs. C is chosen on validation data from a
log-spaced sweep over [1e-6, 1e6], as CoOp's linear probe does it: a coarse grid (every two
decades), then ``refine_steps`` bisections in log10 C around the best value (CLIP sweeps the
same range with 96 steps; bisection reaches a similar resolution with a tenth of the fits).
The validation data is, in order of preference:

- a validation set handed over with :meth:`LinearProbe.use_validation_set` (CoOp: a few-shot
  draw from the dataset's train/val split that shares no image with the training shots);
- else stratified ``cv_folds``-fold cross-validation on the training shots themselves;
- else (one shot per class: nothing to hold out) the fixed ``C_fallback`` (scikit-learn's 1.0),
  and :attr:`search` says so.

``C`` set to a number skips the search. :attr:`search` holds the table of (C, accuracy).
The probe has nothing for ``train.fit`` to train: ``protocols.train_method`` calls
:meth:`on_train_start`, which solves it (as it builds Tip-Adapter's cache). Each solve is kept
under the checkpoint folder (:meth:`LinearProbe.solve_path`: safetensors, the C search as JSON
metadata) and a rerun with the same model, config and data loads it instead of solving again.

**``linear-probe-zs``: the workbook's earlier probe, kept as a named variant** (``solver="sgd"``,
``init="zero-shot"``): W = exp(t) [w_1 ... w_C] (the zero-shot class weights of the model it is
first attached to, every template, with CLIP's temperature folded in), b = 0, then trained by
``train.fit`` with CE and weight decay (the WiSE-FT / FLYP ``ClassificationHead`` convention).
It starts exactly at zero-shot; it is *not* what CLIP and CoOp report as "linear probe".
``init="zeros"`` with ``solver="sgd"`` is the SGD probe from scratch.

The head is class-specific: it has one row per training class, in the order of the class list
it was first attached to. That list is recorded in the config (so it is saved beside the
weights), and attaching to any other list raises :class:`ClassListMismatchError`. Attaching to
another model of the same embed dim is allowed on purpose: the head keeps its old-space rows
and meets the new model's features; that is the compatibility experiment of notebook 07.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cliptune import features, models, results, runtime
from cliptune.methods import base


class ClassListMismatchError(ValueError):
    """A class-specific module (a probe head, a cache's one-hot values) met another class list."""


def check_class_list(method, have, want) -> None:
    """Raise a clear error if the class list ``want`` is not the list ``have`` the state is for."""
    have, want = tuple(have), tuple(want)
    if have == want:
        return
    if len(have) != len(want):
        what = f"{len(have)} classes, not the {len(want)} it is being attached to"
    else:
        diff = [(a, b) for a, b in zip(have, want) if a != b][:3]
        what = f"other classes (first differences, trained vs given: {diff})"
    raise ClassListMismatchError(
        f"{method.name} holds class-specific state for {what}. It can only be attached to the "
        f"class list it was trained on ({list(have)[:4]}{' ...' if len(have) > 4 else ''}); "
        "train a new one for these classes (or use a text-side method such as CoOp, which "
        "carries no per-class state).")


SOLVERS = ("lbfgs", "sgd")
INITS = ("zero-shot", "zeros")
C_GRID = (1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6)  # CoOp's coarse sweep, refined by bisection


@dataclasses.dataclass
class LinearProbeConfig:
    solver: str = "lbfgs"  # "lbfgs": logistic regression, C on validation; "sgd": train.fit
    init: str = "zeros"  # "zeros" or "zero-shot" (W = exp(t) * zero-shot weights, b = 0)
    bias: bool = True
    C: float | None = None  # inverse L2 strength; None = chosen from c_grid on validation
    c_grid: tuple = C_GRID
    refine_steps: int = 3  # bisections in log10 C around the best grid value (+-1, 0.5, 0.25)
    cv_folds: int = 4  # folds when no validation set is given (min with the shots per class)
    cv_seed: int = 0
    C_fallback: float = 1.0  # one shot per class and no validation set: nothing to hold out
    # L-BFGS iterations per fit, enough to reach the optimum: at 100, a large C stopped short
    # and the probe (and the C chosen) depended on where the solve started
    max_iter: int = 1000
    # Filled in by the first attach (and saved with the weights): the classes the rows stand
    # for and the templates of the zero-shot init. Leave empty when creating a probe.
    classnames: tuple = ()
    templates: tuple = ()


PRESETS = {"classic": {}, "zero-shot-sgd": {"solver": "sgd", "init": "zero-shot"}}


@dataclasses.dataclass
class LinearProbeZSConfig(LinearProbeConfig):
    solver: str = "sgd"
    init: str = "zero-shot"


def fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, C: float, bias: bool = True,
                 max_iter: int = 1000, start=None):
    """argmin_{W,b} sum_i CE(x_i W^T + b, y_i) + ||W||^2 / (2C), by full-batch L-BFGS (float64).

    ``start``: (W, b) to begin from (a warm start along a C grid; the optimum does not depend
    on it, the problem is strictly convex in W). Returns float32 (W [C, D], b [C]).
    """
    if C <= 0:
        raise ValueError(f"C (inverse regularisation strength) must be positive, not {C}")
    x = x.detach().double()
    y = torch.as_tensor(y, device=x.device).long()
    w0, b0 = start if start is not None else (None, None)
    w = (w0.detach().double().clone() if w0 is not None else
         x.new_zeros(n_classes, x.shape[1])).requires_grad_(True)
    b = (b0.detach().double().clone() if b0 is not None else
         x.new_zeros(n_classes)).requires_grad_(bias)
    opt = torch.optim.LBFGS([w, b] if bias else [w], lr=1.0, max_iter=max_iter,
                            tolerance_grad=1e-7, tolerance_change=1e-9, history_size=10,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y, reduction="sum") + (w * w).sum() / (2 * C)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach().float(), b.detach().float()


def stratified_folds(labels, k: int, seed: int) -> np.ndarray:
    """Fold id per sample: each class's members, in a seeded order, dealt round-robin."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = np.arange(len(members)) % k
    return fold


def search_c(x, y, n_classes: int, grid, val=None, folds: int = 4, seed: int = 0,
             bias: bool = True, max_iter: int = 1000, refine_steps: int = 3) -> dict:
    """Choose C by validation accuracy: every C of ``grid`` (ascending, warm-started), then
    ``refine_steps`` bisections: try best * 10^(+-h) for h = 1, 1/2, 1/4, ... and keep the best.
    The smaller C (stronger regularisation) wins ties. ``val``: (features, labels), else
    stratified ``folds``-fold cross-validation on (x, y). Returns {"C", "accuracy", "table",
    "how"}; ``table`` lists every (C, accuracy) tried, ``how`` which validation was used."""
    grid = sorted(float(c) for c in grid)
    if not grid:
        raise ValueError("the C grid is empty; give at least one value (or set C)")
    y = torch.as_tensor(y, device=x.device).long()
    if val is not None:
        splits = [(torch.ones(len(y), dtype=torch.bool, device=x.device), val)]
        how = f"validation set ({len(val[1])} images)"
    else:
        fold = torch.as_tensor(stratified_folds(y.cpu().numpy(), folds, seed), device=x.device)
        splits = [(fold != f, (x[fold == f], y[fold == f])) for f in range(folds)]
        how = f"{folds}-fold cross-validation on the training shots"

    def accuracy(cs) -> list:
        correct, total = np.zeros(len(cs)), 0
        for keep, (xv, yv) in splits:
            start = None
            yv = torch.as_tensor(yv, device=x.device).long()
            for j, c in enumerate(cs):  # ascending: each fit starts from the previous one
                start = fit_logistic(x[keep], y[keep], n_classes, c, bias, max_iter, start)
                correct[j] += float(((xv.float() @ start[0].T + start[1]).argmax(-1) == yv).sum())
            total += len(yv)
        return [float(v) for v in 100.0 * correct / total]

    table = dict(zip(grid, accuracy(grid)))
    best = max(table, key=lambda c: (table[c], -c))
    for step in range(refine_steps):
        h = 10.0 ** (2.0 ** -step)  # a factor of 10, then sqrt(10), ...
        new = sorted({c for c in (best / h, best * h) if grid[0] <= c <= grid[-1]} - set(table))
        table.update(zip(new, accuracy(new)))
        best = max(table, key=lambda c: (table[c], -c))
    return {"C": best, "accuracy": table[best], "table": sorted(table.items()), "how": how}


def cross_validated_c(x, y, n_classes: int, grid, folds: int = 4, fallback: float = 1.0,
                      seed: int = 0, bias: bool = True, max_iter: int = 1000,
                      refine_steps: int = 3) -> dict:
    """:func:`search_c` by stratified cross-validation on (x, y), with at most ``folds`` folds
    (no more than the rarest class has images); with one image per class, nothing can be
    held out and C is ``fallback``, which the returned ``how`` says."""
    folds = min(folds, int(np.bincount(np.asarray(y.cpu() if torch.is_tensor(y) else y),
                                       minlength=n_classes).min()))
    if folds >= 2:
        return search_c(x, y, n_classes, grid, None, folds, seed, bias, max_iter, refine_steps)
    return {"C": float(fallback), "accuracy": float("nan"), "table": [],
            "how": "fallback: one shot per class and no validation set"}


class LinearProbe(base.Method):
    name = "linear-probe"
    Config = LinearProbeConfig

    def __init__(self, clip, config=None):
        super().__init__(config)
        cfg = self.config
        if cfg.init not in INITS:
            raise ValueError(f"{self.name} init must be 'zero-shot' or 'zeros', not {cfg.init!r}")
        if cfg.solver not in SOLVERS:
            raise ValueError(f"{self.name} solver must be one of {SOLVERS}, not {cfg.solver!r}: "
                             "'lbfgs' solves the classic probe, 'sgd' leaves it to train.fit")
        dim = base.model_widths(clip.model)["embed dim"]
        n = len(cfg.classnames)
        trained_by_fit = cfg.solver == "sgd"  # L-BFGS solves it in on_train_start instead
        # An empty head until the probe knows its classes (first attach, or a loaded config);
        # the Parameter objects stay the same when they are filled, only their data changes.
        self.weight = nn.Parameter(torch.zeros(n, dim), requires_grad=trained_by_fit)
        self.bias = nn.Parameter(torch.zeros(n), requires_grad=trained_by_fit and cfg.bias)
        self.register_buffer("C_chosen", torch.tensor(float("nan")))  # saved with the head
        self.record_widths(clip, "embed dim")
        self._filled = False  # True once the head holds an init or loaded weights
        self._val_set = None
        self.search = None  # the C search of the last solve (see search_c)

    def on_attach(self):
        if not self._filled:  # first attach: build the head for this class list and model
            if not self.config.classnames:
                self.config = dataclasses.replace(self.config, classnames=tuple(self.classnames),
                                                  templates=tuple(self.templates))
            check_class_list(self, self.config.classnames, self.classnames)
            self.initialise()
        check_class_list(self, self.config.classnames, self.classnames)

    @torch.no_grad()
    def initialise(self) -> None:
        """Fill the head for ``config.classnames`` from the attached model (see ``init``)."""
        names = self.config.classnames
        dim = self.weight.shape[1]
        dev = self.clip.device
        if self.config.init == "zero-shot":
            templates = tuple(self.config.templates) or tuple(self.templates)
            w = self.logit_scale() * base.zero_shot_weights(self.clip, names, templates)
        else:
            w = torch.zeros(len(names), dim, device=dev)
        self.weight.data = w.float().to(dev)
        self.bias.data = torch.zeros(len(names), device=dev)
        self._filled = True

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # A probe created before it knew its classes has an empty head: take the saved shape.
        for key in ("weight", "bias"):
            if key in state_dict and getattr(self, key).shape != state_dict[key].shape:
                getattr(self, key).data = torch.empty_like(state_dict[key]).to(self.weight.device)
        if "C_chosen" not in state_dict:  # saved before the classic solve existed
            state_dict = {**state_dict, "C_chosen": torch.tensor(float("nan"))}
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._filled = True
        return out

    # ------------------------------------------------------------------ the classic solve
    def use_validation_set(self, val_set) -> None:
        """Choose C on ``val_set`` (disjoint from the training shots, e.g.
        ``tip_adapter.validation_split``) instead of cross-validating on the shots."""
        if self.config.classnames:
            check_class_list(self, self.config.classnames, val_set.classnames)
        self._val_set = val_set

    @torch.no_grad()
    def on_train_start(self, train_set) -> None:
        if self.config.solver != "lbfgs":
            return  # the SGD probe is trained by train.fit
        check_class_list(self, self.config.classnames or self.classnames, train_set.classnames)
        cfg = self.config
        path = self.solve_path(train_set)
        if path.exists():  # this exact solve ran before: a solve is deterministic, load it
            self.load_solve(path)
            return
        x = features.image_features(self.clip, train_set)  # view 0: the clean images
        y = torch.as_tensor(train_set.labels, device=x.device)
        n = len(self.classnames)
        if cfg.C is not None:
            self.search = {"C": float(cfg.C), "accuracy": float("nan"), "table": [],
                           "how": "fixed by config"}
        elif self._val_set is not None:
            val = (features.image_features(self.clip, self._val_set),
                   torch.as_tensor(self._val_set.labels, device=x.device))
            self.search = search_c(x, y, n, cfg.c_grid, val, bias=cfg.bias, max_iter=cfg.max_iter,
                                   refine_steps=cfg.refine_steps)
        else:
            self.search = cross_validated_c(x, y, n, cfg.c_grid, cfg.cv_folds, cfg.C_fallback,
                                            cfg.cv_seed, cfg.bias, cfg.max_iter,
                                            cfg.refine_steps)
            if self.search["how"].startswith("fallback"):
                self.search["how"] += " (use_validation_set gives one)"
        w, b = fit_logistic(x, y, n, self.search["C"], cfg.bias, cfg.max_iter)
        self.weight.data = w.to(self.weight.device)
        self.bias.data = (b if cfg.bias else torch.zeros_like(b)).to(self.weight.device)
        self.C_chosen.fill_(self.search["C"])
        self._filled = True
        models.save_weights({"weight": self.weight, "bias": self.bias, "C_chosen": self.C_chosen},
                            path, metadata={"search": json.dumps(self.search)})

    def solve_path(self, train_set):
        """Where the classic solve for ``train_set`` (and the validation set, if any) under the
        attached model is kept: the search takes seconds to minutes, and its result depends
        only on the features, the config and the data, so a rerun loads it (as
        ``protocols.train_method`` loads a trained module's checkpoint)."""
        val = self._val_set.key if self._val_set is not None else None
        h = results.config_hash({"method": self.name, "config": dataclasses.asdict(self.config),
                                 "model": self.clip.fingerprint, "data": train_set.key,
                                 "validation": val})
        safe = train_set.name.replace("/", "_")
        return runtime.CHECKPOINT_DIR / "probe-solves" / f"{self.name}_{safe}_{h}.safetensors"

    def load_solve(self, path) -> None:
        """Fill the head and :attr:`search` from a solve kept by :meth:`solve_path`."""
        state, meta = models.load_weights(path), models.load_metadata(path)
        if "search" not in meta or not {"weight", "bias", "C_chosen"} <= set(state):
            raise ValueError(f"{path} is not a probe solve written by this workbook (it lacks "
                             "the head or the C search): delete it and rerun to solve again.")
        search = json.loads(meta["search"])
        search["table"] = [tuple(r) for r in search["table"]]
        dev = self.weight.device
        self.weight.data, self.bias.data = state["weight"].to(dev), state["bias"].to(dev)
        self.C_chosen.fill_(float(state["C_chosen"]))
        self.search, self._filled = search, True

    def forward(self, batch):
        f = self.image_features(batch)
        logits = f @ self.weight.T
        return logits + self.bias if self.config.bias else logits


class LinearProbeZS(LinearProbe):
    """The zero-shot-initialised probe trained by SGD (``train.fit``): see the module docstring."""
    name = "linear-probe-zs"
    Config = LinearProbeZSConfig
