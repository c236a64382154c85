# %% [markdown]
# # 03 · Adapters and caches: linear probe, CLIP-Adapter, Tip-Adapter
#
# **What you will learn.** Three ways to adapt CLIP to a few labelled images while keeping
# both encoders frozen, all working on cached image features:
#
# - a **linear probe** (a classifier head on the image features),
# - **CLIP-Adapter** (a small residual MLP that bends the image features towards the task),
# - **Tip-Adapter** (a training-free key-value cache of the few shots) and **Tip-Adapter-F**
#   (the same cache with trainable keys),
#
# compared with zero-shot CLIP and with CoOp (notebook 02) as the prompt-learning reference:
# accuracy against the number of shots per class on two tiny-world tasks, and what the
# photo-trained modules keep on shifted domains (sketch, cartoon, painting, clutter).
#
# **Run time.** Printed at the end of the notebook (`benchmarks/` breaks it down); a rerun loads the trained modules from `data/checkpoints`. Writes
# `figures/03_*.png` and `results/03_adapters_and_caches/`.

# %% tags=["parameters"]
from cliptune import params

FAST_DEV_RUN = None  # None: CLIPTUNE_FAST_DEV_RUN decides; True or False: this run decides
MODEL_OLD = "tiny-v1"
TASKS = ("objects", "shapes")  # few-shot curves on both; domain shift on the first
SHOTS = (1, 2, 4, 8, 16)
SEEDS = (1, 2, 3)
DOMAIN_SHOTS = 16
SHIFTED_DOMAINS = ("sketch", "cartoon", "painting", "clutter")
METHODS = ("linear-probe", "clip-adapter", "tip-adapter",
           "tip-adapter-f", "coop")
params.declare(globals())  # the next cell checks every value above

# %%
import dataclasses
import time

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cliptune import (claims, compare, convergence, data, features, methods, models, plots,
                      protocols, results, runtime, train)
from cliptune.methods.tip_adapter import train_and_search, validation_split

FAST_DEV_RUN = params.setup(globals())  # checks the parameters, prints the mode and outputs
if FAST_DEV_RUN:  # checks the pipeline only: one seed, two shot counts, a few steps per run
    TASKS, SHOTS, SEEDS, DOMAIN_SHOTS = TASKS[-1:], (1, 4), (1,), 4  # the smaller task
    SHIFTED_DOMAINS = SHIFTED_DOMAINS[:2]
T_START = time.time()
plots.style()
# one colour per method in every figure of this notebook (greys: the zero-shot references)
PALETTE = {**{m: mcolors.to_hex(f"C{i}") for i, m in enumerate(
    ("linear-probe", "clip-adapter", "tip-adapter", "tip-adapter-f", "coop"))},
    "zero-shot": "0.45", "zero-shot (ensemble)": "0.7"}
clip = models.load_clip(MODEL_OLD)
EXPERIMENT = "03_adapters_and_caches"
print(f"{MODEL_OLD}: embed dim {methods.model_widths(clip.model)['embed dim']}, "
      f"temperature exp(t) = {float(clip.model.logit_scale.exp()):.1f}")

# %% [markdown]
# ## The methods, as equations
#
# With $f$ the normalised (frozen) image feature, $w_c$ the zero-shot class weights of the
# hand-made template(s) and $e^t$ CLIP's temperature:
#
# | method | logits | learned state |
# |---|---|---|
# | zero-shot | $e^t f W^\top$ | none |
# | linear probe | $f W^\top + b$: logistic regression, L2 strength $1/C$ with $C$ chosen on validation | $W$ [C, D], $b$ |
# | CLIP-Adapter | $e^t\,\mathrm{norm}(\alpha A(f) + (1-\alpha) f) W^\top$, $A$ = ReLU-MLP D→D/4→D, $\alpha=0.2$ | $A$ |
# | Tip-Adapter | $e^t f W^\top + \alpha \exp(-\beta(1 - f K^\top)) L$ | keys $K$ (the shots' features), one-hot values $L$, searched $\alpha, \beta$ |
# | Tip-Adapter-F | the same, $K$ trained | $K$, $L$, $\alpha$, $\beta$ |
# | CoOp | $e^t f\, g([v_1..v_4][\text{class}])^\top$ | context vectors $v$ |
#
# Choices and deviations (details in each file under `cliptune/methods/`):
#
# - `linear-probe` is the classic probe as CLIP and CoOp run it: an L2-regularised logistic
#   regression on the frozen image features, solved exactly (L-BFGS), with the inverse
#   strength $C$ chosen on the same validation split as Tip-Adapter's search ($\min(K, 4)$
#   shots per class from the training images not among the shots, CoOp's protocol); with
#   one shot per class the split is what makes the choice possible. The well-known weakness
#   of linear probes with one or two shots belongs to this version.
# - `linear-probe-zs`, the workbook's earlier probe (the head starts at the zero-shot
#   weights, WiSE-FT's convention, and is trained by SGD with weight decay $w$), stays in the
#   package as a named variant but is not run here, because it cannot be both converged and
#   different from the classic probe. SGD with weight decay minimises the mean cross-entropy
#   plus $\frac{w}{2}\lVert W \rVert^2$, a convex problem whose optimum does not depend on the
#   start: trained to that optimum it is the classic probe at the fixed $C = 1/(N w)$ for $N$
#   training images (bias penalised too), the zero-shot start forgotten. Stopped before the
#   optimum, the probe differs from the classic one by how far its budget let it move from
#   zero-shot, a comparison of budgets. Its schedules tried on the training objective alone
#   (`tools/schedule_sweep.py --shots`) plateaued on some shot counts and not on others.
# - Tip-Adapter uses the model's own temperature $e^t$ instead of the paper's hard-coded 100
#   (the tiny CLIP learned $e^t$ well below 100), and keeps $\alpha$ **on the paper's scale**
#   (`alpha_scale="paper"`): the cache weight applied is $\alpha\,e^t/100$, so a given
#   $\alpha$ weighs the cache against the CLIP logits as much as it does in the paper, the
#   initial $\alpha$ is the paper's ImageNet value and the search grid is the paper's, scaled
#   the same way. $\alpha, \beta$ are searched on a validation split of $\min(K, 4)$
#   shots per class drawn from the training images *not* among the shots (CoOp's protocol);
#   Tip-Adapter-F is searched after training, on the same split, never on the test set (the
#   official code picks its best epoch on test).
# - Tip's cache keys are old-model image features. By default (`rebuild_keys_on_attach=False`)
#   they travel unchanged when the module is attached to another CLIP: that pure plug-in is
#   the variant notebook 07's compatibility analysis measures.
# - **Recipes: each paper's own, unscaled** (`train.recipe`, printed below; notebooks 02 and 07
#   build the same configs, so their 16-shot runs share these checkpoints): CoOp's 50 to 200
#   epochs by shots, CLIP-Adapter's 10 epochs at batch 4 (its official recipe is missing: the
#   one public config), Tip-Adapter-F's 20 epochs of AdamW at batch 256.

# %%
def recipe(method: str, shots: int = max(SHOTS)) -> train.TrainConfig:
    """The method's recipe for ``shots`` shots per class (``train.recipe``: notebooks 02 and
    07 use the same, so checkpoints are shared); a bare config for one that trains nothing."""
    cap = 3 if FAST_DEV_RUN else None
    return train.recipe(method, shots, cap) or train.TrainConfig(max_steps=cap)


def registered(label: str) -> tuple[str, dict]:
    """A row label -> (registered method name, its settings)."""
    return label, {}


# 16 shots (CoOp's epochs fall with the shots: 50 / 100 / 100 / 200 / 200 for 1-16); the
# classic probe is solved and Tip-Adapter's cache is built, neither is trained
_ = train.recipe_table({m: recipe(registered(m)[0]) for m in METHODS
                        if m not in ("tip-adapter", "linear-probe")})

# %% [markdown]
# ## Few-shot accuracy against shots
#
# For each task, shot count $K$ and seed: draw $K$ training images per class (CoOp's seeded
# sampler), a disjoint validation set of $\min(K, 4)$ per class for Tip-Adapter's search, train
# every method (or load its checkpoint) and test on the full test split. Zero-shot is measured
# with the task's single hand-made template (what CLIP-Adapter, Tip-Adapter and CoOp's
# initialisation start from) and with the ensemble of the task's templates (the stronger
# training-free reference). The classic linear probe starts from no text weights at all: it
# is fit on the image features from scratch.

# %%
def row(**kw):
    return {"train_model": MODEL_OLD, "eval_model": MODEL_OLD, "split": "test",
            "metric": "top1", **kw}


HISTORIES = {}  # (task, method, shots, seed) -> training history, for the convergence table


def run_method(label, train_set, val_set, seed, key=None):
    """Train (or load) one method; returns the attached module and what the search chose."""
    name, cfg = registered(label)
    if name.startswith("tip-adapter"):
        module, found = train_and_search(name, clip, train_set, val_set, seed,
                                         recipe(name, len(train_set) // len(train_set.classnames)), **cfg)
        # Tip-Adapter-F's training history (read from beside its checkpoint when loaded); the
        # training-free cache has none
        if key is not None and found.get("history"):
            HISTORIES[key] = found["history"]
        return module, {"alpha": found["alpha"], "beta": found["beta"]}
    if name == "linear-probe":  # the classic probe: C chosen on the validation split (CoOp)
        module = methods.create(name, clip, **cfg)
        module.attach(clip, train_set.classnames, train_set.templates)
        module.use_validation_set(val_set)
        module.on_train_start(train_set)
        grid = module.config.c_grid  # a C at the grid's edge may want a value beyond it
        edge = ("lower" if module.search["C"] <= min(grid) else
                "upper" if module.search["C"] >= max(grid) else "")
        return module, {"C": module.search["C"], "C_edge": edge}
    module, history = protocols.train_method(name, clip, train_set, seed,
                                             recipe(name, len(train_set) // len(train_set.classnames)), **cfg)
    if key is not None:
        HISTORIES[key] = history
    losses = history.get("loss", [])
    tail = losses[-10:]
    return module, ({"loss_first": losses[0], "loss_last": sum(tail) / len(tail)}
                    if losses else {})


modules, searched, fs_rows, timings = {}, [], [], {}
for task in TASKS:
    full_train, test = data.tiny(task, "train"), data.tiny(task, "test")
    for ensemble, label in ((False, "zero-shot"), (True, "zero-shot (ensemble)")):
        zs = methods.create("zero-shot", clip, ensemble=ensemble)
        fs_rows.append(row(method=label, dataset=task, shots=0, seed=0, domain="photo",
                           **protocols.score(zs, clip, test)))
    for shots in SHOTS:
        for seed in SEEDS:
            train_set = data.few_shot(full_train, shots, seed)
            val_set = validation_split(full_train, train_set, min(shots, 4), seed)
            for label in METHODS:
                t0 = time.time()
                module, chosen = run_method(label, train_set, val_set, seed,
                                            key=(task, label, shots, seed))
                scored = protocols.score(module, clip, test)  # accuracy and per-image vector
                timings[label] = timings.get(label, 0.0) + time.time() - t0
                fs_rows.append(row(method=label, dataset=task, shots=shots, seed=seed,
                                   domain="photo", **scored))
                if chosen:
                    searched.append({"method": label, "task": task, "shots": shots,
                                     "seed": seed, **chosen})
                if task == TASKS[0] and shots == DOMAIN_SHOTS:
                    modules[(label, seed)] = module
RUN_CONFIG = {"experiment": "few-shot", "model": MODEL_OLD, "tasks": TASKS, "shots": SHOTS,
              "seeds": SEEDS, "methods": METHODS, "fast": FAST_DEV_RUN,
              "recipes": {m: dataclasses.asdict(recipe(registered(m)[0])) for m in METHODS}}
results.record(EXPERIMENT, RUN_CONFIG, fs_rows)
pd.Series(timings).round(1).to_frame(
    "this run's seconds, all runs (loaded runs cost only evaluation)")

# %%
fs_convergence = convergence.report(HISTORIES, title="few-shot training")

# %% [markdown]
# ### Mean and standard deviation over seeds, from the results store

# %%
df = results.load(EXPERIMENT)
fs = df[df.config_hash == results.config_hash(RUN_CONFIG)]
summary = (fs[fs.shots > 0].groupby(["dataset", "method", "shots"]).value
           .agg(["mean", "std"]).reset_index())
summary["std"] = summary["std"].fillna(0.0)
summary["accuracy"] = [f"{m:.1f} ± {s:.1f}" for m, s in zip(summary["mean"], summary["std"])]
zero_shot = fs[fs.shots == 0].set_index(["dataset", "method"]).value
display_table = summary.pivot_table(index=["dataset", "method"], columns="shots",
                                    values="accuracy", aggfunc="first")
print(zero_shot.round(1).to_string())
display_table

# %%
# top row: the whole range; bottom row: the same curves in a stated ten-point window around
# zero-shot, where most methods lie on top of each other at full range
DETAIL = 10
fig, axes = plt.subplots(2, len(TASKS), figsize=(5.2 * len(TASKS), 6.4), squeeze=False,
                         sharex=True)
for j, task in enumerate(TASKS):
    refs = {"zero-shot (1 template)": zero_shot[(task, "zero-shot")],
            "zero-shot (ensemble)": zero_shot[(task, "zero-shot (ensemble)")]}
    for i, ax in enumerate(axes[:, j]):
        ax.set_prop_cycle(color=[PALETTE.get(m, "k") for m in METHODS])  # the fixed palette
        plots.shot_curves(ax, fs[(fs.dataset == task) & (fs.shots > 0)], references=refs,
                          order=METHODS, legend="outside" if (i, j) == (0, len(TASKS) - 1)
                          else None)
        ax.set_ylabel("test accuracy (%)")
    axes[0, j].set_title(f"{task} ({len(data.tiny(task, 'test').classnames)} classes), "
                         f"{MODEL_OLD}")
    axes[0, j].set_xlabel("")
    mid = sum(refs.values()) / len(refs)
    axes[1, j].set_ylim(mid - DETAIL / 2, mid + DETAIL / 2)
    axes[1, j].set_title(f"detail: the {DETAIL} points around zero-shot", fontsize=9)
fig.tight_layout()
plots.save(fig, "03_few_shot_curves")
plt.show()

# %% [markdown]
# ### Reading the curves
#
# The sentences below are printed from the numbers above, so they stay true when you change
# the parameters. A difference is judged by its paired 95 per cent interval over seeds and
# test images (`cliptune.compare`), never by the spread of the seeds.

# %%
def mean_at(task, label, shots):
    m = summary[(summary.dataset == task) & (summary.method == label) & (summary.shots == shots)]
    return float(m["mean"].iloc[0]), float(m["std"].iloc[0])


def points(x: float) -> str:
    """A signed difference in points, one decimal; no sign where it rounds to zero."""
    text = f"{x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


# per-image vectors of every run, for the paired comparisons
fs_v = results.load(EXPERIMENT, hashes=[results.config_hash(RUN_CONFIG)], correct=True)
# one comparison over the tasks, read per task below: the same interval as the claims table's
tipf_vs_tip = compare.compare_methods(fs_v, "tip-adapter-f", "tip-adapter", shots=max(SHOTS))
for task in TASKS:
    lo, hi = min(SHOTS), max(SHOTS)
    zs1 = zero_shot[(task, "zero-shot")]
    best_lo = max(METHODS, key=lambda m: mean_at(task, m, lo)[0])
    best_hi = max(METHODS, key=lambda m: mean_at(task, m, hi)[0])
    print(f"[{task}] zero-shot {zs1:.1f}% (1 template), "
          f"{zero_shot[(task, 'zero-shot (ensemble)')]:.1f}% (ensemble).")
    print(f"  best at {lo} shot(s): {best_lo} {mean_at(task, best_lo, lo)[0]:.1f}%; "
          f"best at {hi} shots: {best_hi} {mean_at(task, best_hi, hi)[0]:.1f}%.")
    tip, tipf = mean_at(task, "tip-adapter", lo), mean_at(task, "tip-adapter-f", hi)
    print(f"  training-free Tip-Adapter at {lo} shot(s): {tip[0]:.1f} ± {tip[1]:.1f}% "
          f"({points(tip[0] - zs1)} points over zero-shot with the same template).")
    tip_hi = mean_at(task, "tip-adapter", hi)
    d, low, high = tipf_vs_tip.per_task.get(task, (tipf_vs_tip.difference, tipf_vs_tip.low,
                                                     tipf_vs_tip.high))
    print(f"  at {hi} shots Tip-Adapter-F {tipf[0]:.1f}% vs Tip-Adapter {tip_hi[0]:.1f}% "
          f"({d:+.1f} [{low:+.1f}, {high:+.1f}] points, paired 95% interval): training the keys "
          + {compare.BETTER: "helps.", compare.WORSE: "hurts."}.get(
              compare.verdict(low, high), "makes no detectable difference."))
    lpz = mean_at(task, "linear-probe", lo)
    print(f"  classic linear probe at {lo} shot(s): {lpz[0]:.1f}%; "
          f"the classic probe is {'below' if lpz[0] < zs1 else 'not below'} zero-shot.")
    lpz_hi = mean_at(task, "linear-probe", hi)
    print(f"  at {hi} shots the classic probe reaches {lpz_hi[0]:.1f}% "
          f"({'still below' if lpz_hi[0] < zs1 else 'above'} zero-shot): "
          + ("a head learned from the images alone does not catch up with the text weights."
             if lpz_hi[0] < zs1 else "the images alone beat the text weights."))
    gains = {m: mean_at(task, m, hi)[0] - zs1 for m in METHODS}
    print(f"  gains over zero-shot at {hi} shots: "
          + ", ".join(f"{m} {points(g)}" for m, g in gains.items()) + " points.")
    ca, coop = mean_at(task, "clip-adapter", lo), mean_at(task, "coop", lo)
    print(f"  CLIP-Adapter vs CoOp at {lo} shot(s): {ca[0]:.1f}% vs {coop[0]:.1f}%; "
          f"at {hi} shots: {mean_at(task, 'clip-adapter', hi)[0]:.1f}% vs "
          f"{mean_at(task, 'coop', hi)[0]:.1f}%.")

# A pooled gain can rest on one task: where a method does not move from zero-shot on a task
# at any shot count (paired 95% interval over seeds and test images), say so
for task in TASKS:
    for m in METHODS:
        same = [compare.compare_methods(fs_v, m, "zero-shot", tasks=[task], a_where={"shots": k},
                                        b_where={"shots": 0}) for k in SHOTS]
        if all(c.verdict == compare.NO_DIFFERENCE for c in same):
            means = [mean_at(task, m, k)[0] for k in SHOTS]
            print(f"[{task}] {m} does not move from zero-shot at any shot count: its mean stays "
                  f"within {min(means):.1f}-{max(means):.1f}% against zero-shot "
                  f"{zero_shot[(task, 'zero-shot')]:.1f}%, and no paired 95% interval is clear "
                  f"of 0 (at {max(SHOTS)} shots {same[-1].interval()} points)"
                  + (": a gain pooled over the tasks comes from the others." if len(TASKS) > 1
                     else "."))

# Why the cache helps as much as it does: how well the few shots alone classify the test set
# (the cache term by itself, Tip's beta), against zero-shot.
test0 = data.tiny(TASKS[0], "test")
y0 = np.asarray(test0.labels)
cache_only = []
for (label, seed), module in modules.items():
    if label == "tip-adapter":
        module.attach(clip, test0.classnames, test0.templates)
        f0 = features.image_features(clip, test0)
        cache_only.append(100 * float((module.cache_logits(f0).argmax(-1).numpy() == y0).mean()))
if cache_only:
    print(f"[{TASKS[0]}] the {DOMAIN_SHOTS}-shot cache alone (no text) classifies "
          f"{np.mean(cache_only):.1f}% of the test images, zero-shot "
          f"{zero_shot[(TASKS[0], 'zero-shot')]:.1f}%: the tiny encoder's image-image "
          "similarities carry " + ("less" if np.mean(cache_only) < zero_shot[(TASKS[0], "zero-shot")]
                                   else "more") + " class evidence than its text weights.")

searched_df = pd.DataFrame(searched)
# How far training moved the trained heads: cross-entropy on the training batches, first step
# and mean of the last ten, at the largest shot count.
fit = searched_df[searched_df.shots == max(SHOTS)].dropna(subset=["loss_first"])
fit = fit.groupby(["task", "method"])[["loss_first", "loss_last"]].mean()
for (task_, label), r in fit.iterrows():
    print(f"[{task_}] {label} at {max(SHOTS)} shots: training CE {r.loss_first:.2f} -> "
          f"{r.loss_last:.2f}")
C_GRID = methods.create("linear-probe", clip).config.c_grid


def c_text(t, k, g):
    """The median C of one task and shot count, flagged where seeds sit at a grid edge (the
    validation split would have liked a C beyond the searched range)."""
    edges = g.C_edge[g.C_edge != ""]
    flag = "; ".join(f"{(edges == e).sum()} of {len(g)} seeds at the {e} grid edge "
                     f"{min(C_GRID) if e == 'lower' else max(C_GRID):g}"
                     for e in sorted(set(edges)))
    return f"{t} {k}-shot {g.C.median():.3g}" + (f" ({flag})" if flag else "")


if "C" in searched_df:
    probe_c = searched_df.dropna(subset=["C"])
    print("\nclassic linear probe: C chosen on the validation split (median over seeds): "
          + ", ".join(c_text(t, k, g) for (t, k), g in probe_c.groupby(["task", "shots"])))
print("\nTip-Adapter's searched alpha (on the paper's scale: cache weight alpha * exp(t) / 100)"
      " / beta (median over runs):")
searched_df.dropna(subset=["alpha"]).groupby(["method", "task"])[["alpha", "beta"]].median().round(2)

# %% [markdown]
# ## Domain shift: trained on photos, tested on sketches, cartoons, paintings and clutter
#
# The `DOMAIN_SHOTS`-shot modules of the first task (trained on photos above) are attached to
# the test sets of the shifted domains, which have the same classes. Zero-shot is the
# reference: a module that fits the photo distribution may gain there and lose elsewhere.

# %%
task = TASKS[0]
dom_rows = []
for domain in ("photo",) + tuple(SHIFTED_DOMAINS):
    test = data.tiny(task, "test", domain)
    for ensemble, label in ((False, "zero-shot"), (True, "zero-shot (ensemble)")):
        zs = methods.create("zero-shot", clip, ensemble=ensemble)
        dom_rows.append(row(method=label, dataset=task, shots=0, seed=0, domain=domain,
                            **protocols.score(zs, clip, test)))
    for (label, seed), module in modules.items():
        dom_rows.append(row(method=label, dataset=task, shots=DOMAIN_SHOTS, seed=seed,
                            domain=domain, **protocols.score(module, clip, test)))
DOMAIN_CONFIG = {**RUN_CONFIG, "experiment": "domain-shift", "task": task,
                 "domain_shots": DOMAIN_SHOTS, "domains": SHIFTED_DOMAINS}
results.record(EXPERIMENT, DOMAIN_CONFIG, dom_rows)

df = results.load(EXPERIMENT)
dom = df[df.config_hash == results.config_hash(DOMAIN_CONFIG)]
dom_mean = dom.groupby(["method", "domain"]).value.mean().unstack("domain")
dom_mean = dom_mean[["photo"] + list(SHIFTED_DOMAINS)]
dom_mean["shifted mean"] = dom_mean[list(SHIFTED_DOMAINS)].mean(axis=1)
dom_mean.round(1)

# %%
order = ["zero-shot", "zero-shot (ensemble)"] + list(METHODS)
fig, ax = plt.subplots(figsize=(10, 3.8))
domains = ["photo"] + list(SHIFTED_DOMAINS)
width = 0.8 / len(order)
for i, label in enumerate(order):
    vals = dom[dom.method == label].groupby("domain").value
    means, stds = vals.mean().reindex(domains), vals.std().reindex(domains).fillna(0.0)
    ax.bar(np.arange(len(domains)) + (i - len(order) / 2 + 0.5) * width, means, width,
           yerr=stds, capsize=2, label=label, color=PALETTE.get(label))
ax.set_xticks(range(len(domains)), domains)
ax.set_ylabel("test accuracy (%)")
ax.set_title(f"{task}: modules trained on {DOMAIN_SHOTS}-shot photos, tested on each domain")
ax.legend(fontsize=7, ncol=2, loc="upper right", title="bars: ±1 sd over seeds",
          title_fontsize=7)
fig.tight_layout()
plots.save(fig, "03_domain_shift")
plt.show()

# %%
gain = dom_mean.sub(dom_mean.loc["zero-shot"], axis=1)  # points over 1-template zero-shot
print("Gain over zero-shot (1 template), in points:")
print(gain.drop(index=["zero-shot"]).round(1).to_string())
trained = [m for m in METHODS if m in gain.index]
# paired comparisons with zero-shot (1 template): on photos, and pooled over the shifted
# domains of this one task (the mean of the per-domain differences, as in the table)
dom_v = results.load(EXPERIMENT, hashes=[results.config_hash(DOMAIN_CONFIG)], correct=True)


def domain_gain(m, domains):
    return compare.paired_difference(
        compare.vectors(dom_v, m, tasks=domains, task_column="domain"),
        compare.vectors(dom_v, "zero-shot", tasks=domains, task_column="domain"),
        names=(m, "zero-shot"), unit="domain")


def share_words(share: float) -> str:
    """Graded words for the share of the photo gain kept under shift."""
    return ("little" if share < 0.2 else "some, under half," if share < 0.4 else
            "about half" if share < 0.6 else "most" if share < 0.9 else "nearly all")


kept = {}
print("\nPaired with zero-shot (1 template), 95% intervals over seeds and test images; the "
      "shifted value pools the shifted domains:")
for m in trained:
    photo, shifted = domain_gain(m, ["photo"]), domain_gain(m, list(SHIFTED_DOMAINS))
    head = f"  {m}: photos {photo.interval()}, shifted domains {shifted.interval()}: "
    if photo.verdict != compare.BETTER:
        print(head + f"no gain on photos ({photo.verdict}), so no share of it to keep; under "
              f"shift: {shifted.verdict}.")
    elif shifted.verdict == compare.WORSE:
        print(head + "gains on photos but falls below zero-shot under shift.")
    elif shifted.verdict == compare.NO_DIFFERENCE:
        print(head + "gains on photos, no detectable gain under shift.")
    else:
        kept[m] = shifted.difference / photo.difference
        print(head + f"keeps {share_words(kept[m])} of its photo gain under shift "
              f"({100 * kept[m]:.0f}% of it, a ratio of the two means).")
if kept:
    print("Share of the photo gain kept under shift, among the methods whose photo gain and "
          "shifted gain are clear of 0 (a ratio of means, no interval): "
          + ", ".join(f"{m} {100 * k:.0f}%" for m, k in sorted(kept.items(), key=lambda x: -x[1]))
          + ".")
print(f"\nNotebook run time: {time.time() - T_START:.0f} s "
      f"({'fast' if FAST_DEV_RUN else 'full'} mode).")

# %% [markdown]
# ## An honest reading
#
# - The printed lines above are the result; read them with the error bars. Test sets are
#   small and seeds move the few-shot draws: the claims table at the end says which
#   differences survive a paired comparison over seeds and test images.
# - The classic probe (the papers' baseline, C chosen on validation) shows whether the
#   papers' observation (linear probes need many shots to catch up with zero-shot) holds in
#   the tiny world. A head that starts from zero-shot and is trained with weight decay
#   (`linear-probe-zs`, not run here) keeps its text prior only as long as its budget is
#   short: weight decay pulls it towards zero, not towards zero-shot, and at its optimum the
#   prior is gone.
# - Tip-Adapter's cache can only be as good as the tiny image encoder's features: where
#   image features of the same class are not closer to each other than to other classes'
#   (fine pairs such as red/orange/pink), the affinities add little. The printed accuracy of
#   the cache alone measures this, and the searched alpha/beta show how much weight the
#   validation split gave the cache.
# - Where the printed gains over zero-shot are within a point or two, the tiny world does
#   not show the papers' few-shot gains (several to twenty points for ViT-B/16 on the CoOp
#   datasets). The diagnostic to read then is printed above: every method here reads the
#   same frozen image features, and the accuracy of the few shots' features alone (the cache
#   by itself, no training involved) beside zero-shot's text weights says how much an
#   image-side module has to add. The classic probe is solved to convergence for
#   the C its validation split chose, so it is not undertrained; the trained modules follow
#   their papers' recipes (shared with notebook 07 so that checkpoints are reused), and the
#   convergence table says which of them also plateaued.
# - These are tiny CLIPs (their widths are printed at the top) on small procedural images; the paper-scale
#   ordering (Tip-Adapter-F ≥ CLIP-Adapter ≥ CoOp ≥ linear probe at low shots) is a claim
#   about ViT-B/16 on ImageNet-like data. Where the printed ordering differs, the tiny world
#   does not show that claim; the measured reasons are the gaps to zero-shot printed above.
# - The modules are attached to the *same* model here. What happens when they are attached to
#   an updated CLIP is notebook 07.

# %% [markdown]
# ## Claims table
#
# The papers' few-shot claims (`cliptune/paper_claims.json`) against paired comparisons of
# this notebook's stored results: a minus b in points, pooled over the tasks, with a 0.95-level
# bootstrap interval over seeds and test images. Zero-shot has no seed and is paired with
# every seed of the other method.

# %%
fs_v = results.load(EXPERIMENT, hashes=[results.config_hash(RUN_CONFIG)], correct=True)
lo, hi = min(SHOTS), max(SHOTS)
at = lambda k: {"shots": k}  # noqa: E731
zs_where = {"shots": 0}
def why_train(name):
    return convergence.summary_of(fs_convergence, name)


why_cache = (f"the {DOMAIN_SHOTS}-shot cache alone classifies {np.mean(cache_only):.1f} per cent "
             f"of the test images, zero-shot {zero_shot[(TASKS[0], 'zero-shot')]:.1f}"
             if cache_only else "cache-only accuracy not measured in this run")
entries = [
    ("linear_probe_1shot", compare.compare_methods(fs_v, "linear-probe", "zero-shot",
                                                   a_where=at(lo), b_where=zs_where),
     why_train("linear-probe")),
    ("clip_adapter_gain", compare.compare_methods(fs_v, "clip-adapter", "zero-shot",
                                                  a_where=at(hi), b_where=zs_where),
     f"{why_train('clip-adapter')}; {why_cache}"),
    ("tip_adapter_gain", compare.compare_methods(fs_v, "tip-adapter", "zero-shot",
                                                 a_where=at(hi), b_where=zs_where), why_cache),
    ("tipf_vs_tip", compare.compare_methods(fs_v, "tip-adapter-f", "tip-adapter", shots=hi),
     f"{why_train('tip-adapter-f')}; {why_cache}"),
]
claims_03 = claims.table(entries, notebook="03")
claims.show(claims_03)
# a pooled verdict can rest on one task: name the tasks where the difference is not detectable
for cid, c, _ in entries:
    quiet = c.differing()
    if c.verdict != compare.NO_DIFFERENCE and quiet:
        loud = [t for t in c.per_task if t not in quiet]
        print(f"\n{cid}: the pooled verdict ({c.verdict}) rests on {', '.join(loud)}; "
              + "; ".join(f"on {t} {c.a} vs {c.b} is {c.per_task[t][0]:+.1f} "
                          f"[{c.per_task[t][1]:+.1f}, {c.per_task[t][2]:+.1f}], {v}"
                          for t, v in quiet.items())
              + ".")

# %% [markdown]
# ## Where this run wrote

# %%
runtime.report_outputs("03_adapters_and_caches")
