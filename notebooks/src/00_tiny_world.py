# %% [markdown]
# # 00 · The tiny world and its CLIP generations
#
# **What you will learn.** What the procedural world of this workbook looks like (scenes,
# captions, five visual domains, five labelled tasks, two corpora), how four small CLIP
# generations (a first model, two updates of it and a third update kept for choosing designs)
# were pretrained on it with open_clip's own model classes, and how good they are before
# anyone fine-tunes them: the calibration that every later notebook builds on.
#
# **Run time.** No pretraining when the zoo weights are in `data/zoo` (they are committed):
# the run encodes the test splits and fits the frozen-feature ceilings, far quicker with a
# filled feature cache (the README lists measured times). Pretraining a generation again
# (`RETRAIN = True`) takes far longer (the manifest table below gives each model's measured
# time). Writes `figures/00_*.png` and `results/00_tiny_world/`.

# %% tags=["parameters"]
from cliptune import params

FAST_DEV_RUN = None  # None: CLIPTUNE_FAST_DEV_RUN decides; True or False: this run decides
RETRAIN = False  # pretrain the zoo again even if data/zoo has the weights (times: manifest table)
GENERATIONS = ("tiny-v1", "tiny-v2-continued", "tiny-v2-retrained", "tiny-v2-validation")
SAMPLE_SEED = 0
params.declare(globals())  # the next cell checks every value above

# %%
import dataclasses
import inspect
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display

from cliptune import (compare, data, evaluate, methods, models, plots, preconditions, protocols,
                      results, runtime, world)

FAST_DEV_RUN = params.setup(globals())  # checks the parameters, prints the mode and outputs
plots.style()
TASKS = ("objects", "shapes") if FAST_DEV_RUN else tuple(world.TASKS)
DOMAINS = ("photo", "sketch") if FAST_DEV_RUN else world.DOMAINS
MEASURED = GENERATIONS[:1] if FAST_DEV_RUN else GENERATIONS  # models in the preconditions table

# %% [markdown]
# ## Scenes and domains
#
# A scene is one to four copies of an object with a **shape** (10), a **colour** (8), a
# **texture** (6) and a **size**, on a **background**, rendered at 32×32 pixels in one of five
# domains: `photo` (shading and noise), `sketch` (coloured outlines on paper: the colour, which
# is the label of some tasks, survives the shift), `cartoon` (flat colours, black outline),
# `painting` (blotchy colour noise, blur) and `clutter` (occluders). They play the roles of
# ImageNet and its Sketch/Rendition/-A variants.

# %%
rng = np.random.default_rng(SAMPLE_SEED)
grid, titles = [], []
for domain in world.DOMAINS:
    for i, shape in enumerate(world.SHAPES):
        scene = world.Scene(shape, tuple(world.COLOURS)[i % 8], world.TEXTURES[i % 5],
                            "large", 1 if i < 7 else i - 5, tuple(world.BACKGROUNDS)[i % 4], domain)
        grid.append(world.render(scene, int(rng.integers(1 << 30))))
        titles.append(f"{domain}\n{scene.colour} {shape}")
fig = plots.image_grid(grid, titles, ncols=10)
plots.save(fig, "00_domains")
plt.show()

# %% [markdown]
# ## Captions: the pretraining text and the world's captioner
#
# Pretraining captions describe a scene in varied words and name only some of its
# attributes. They deliberately include the phrasings people prompt with ("a photo of a red
# object."), because a prototype of this world showed that a template the captions never
# use makes zero-shot prompts far from their best and hides every other effect. The
# *captioner* (used by ARF in notebook 05) names every attribute.

# %%
imgs, caps, scenes = world.corpus("pretrain-v1", 8, seed=SAMPLE_SEED)
with pd.option_context("display.max_colwidth", None):  # whole captions, not cut with "..."
    display(pd.DataFrame({"pretraining caption": caps,
                          "captioner (rich)": [world.captioner(s) for s in scenes]}))

# %% [markdown]
# ## Tasks
#
# Five labelled datasets over the same world. `objects` (colour × shape, 80 classes) is the
# main one and holds the fine-grained pairs (red/orange/pink, blue/cyan/purple;
# circle/ring/hexagon, square/diamond). Each has class names and hand-made templates; the
# first template is the task's single prompt.

# %%
pd.DataFrame([{"task": t.name, "classes": len(t.classnames),
               "examples": ", ".join(t.classnames[:4]) + ", ...",
               "template": t.templates[0], "templates": len(t.templates),
               "train/class": t.train_per_class, "test/class": t.test_per_class}
              for t in world.TASKS.values()])

# %% [markdown]
# ## Corpora with realistic coverage gaps
#
# The pretraining corpora are mostly photos, with few sketches, cartoons and paintings and
# almost no clutter, as web data is. The updates' corpus covers the shifted domains a little
# better (the eighth round of trials, below, tried them on `tiny-v1`'s mix). A separate
# retrieval corpus (for ARF's image-text anchors) shares no scene with pretraining or with any
# test split.

# %%
mix = pd.DataFrame([{"corpus": r.corpus, "domain": d, "share": p}
                    for r in models.ZOO.values() for d, p in r.domain_mix])
mix = mix.drop_duplicates(["corpus", "domain"])
fig, ax = plt.subplots(figsize=(6, 2.6))
sns.barplot(data=mix, x="domain", y="share", hue="corpus", ax=ax)
ax.set_title("domain mix of the pretraining corpora")
plots.save(fig, "00_corpus_mix")
plt.show()

# %% [markdown]
# ## World choices, and why
#
# Every choice that shapes how hard the world is was made once, before any method ran, to meet
# the preconditions below; none was changed after a method comparison. The list lives in the
# package (`cliptune.world.CHOICES`), next to the knobs it names; its counts, class lists and
# knob values are read from the code's constants, its reasons are prose.

# %%
pd.DataFrame(world.CHOICES).style.hide(axis="index")

# %% [markdown]
# ## The CLIP zoo
#
# Four generations, all built from open_clip's own `CLIP` class with a registered small config
# (`cliptune/configs/tiny-clip.json`: a ViT of 4 layers and width 128 behind a small
# convolutional stem that gives the same 4 × 4 token grid as patch 8; a text transformer of 3
# layers, width 64, context 32; joint dimension 64) and open_clip's real BPE tokenizer:
#
# - `tiny-v1`: the "old" model.
# - `tiny-v2-continued`: an EVA-CLIP-style update: its **text tower starts from v1's**, its
#   vision tower is new, and it sees more data with a wider domain mix.
# - `tiny-v2-retrained`: an OpenAI → LAION-style update: everything trained from scratch on
#   other data, with the same widths.
# - `tiny-v2-validation`: a third update, retrained from scratch on its own seed and corpus.
#   It is used **only** to choose the designs and hyper-parameters of the reconstructions
#   (ContCoOp, ARF) and is never reported, so the two updates above stay untouched test
#   conditions.
#
# The weights are loaded from `data/zoo` when present (checked against the sha256 in
# `manifest.json`) and pretrained from their recipe when missing.

# %%
# text_from names the model whose text tower a generation starts from ("-": none)
(pd.DataFrame([{k: v for k, v in vars(r).items() if k != "domain_mix"} for r in models.ZOO.values()])
 .fillna({"text_from": "-"}))

# %%
if RETRAIN and not FAST_DEV_RUN:
    for name in GENERATIONS:
        models.pretrain(name)
print("sha256 matches manifest:", models.verify_zoo())
zoo = {name: models.load_clip(name) for name in GENERATIONS}
n_params = sum(p.numel() for p in zoo["tiny-v1"].model.parameters())
n_visual = sum(p.numel() for p in zoo["tiny-v1"].model.visual.parameters())
n_embed = zoo["tiny-v1"].model.token_embedding.weight.numel()
print(f"{n_params / 1e6:.2f} M parameters per model: {n_visual / 1e6:.2f} M in the image tower, "
      f"{n_embed / 1e6:.2f} M in the BPE token embedding")
zoo_mb = sum((models.ZOO_DIR / f"{n}.safetensors").stat().st_size for n in GENERATIONS) / 2**20
print(f"the zoo on disk: {zoo_mb:.0f} MiB of safetensors for {len(GENERATIONS)} models")

# %% [markdown]
# ### Pretraining: loss, and what the image tower learns
#
# The recipe (a conv stem, batch 128, a corpus large enough that scenes rarely repeat) was
# picked from the learning curves of short trial runs; every generation logs the same curve
# while it trains: zero-shot accuracy and a linear probe on frozen features (small held-out
# splits of three tasks) against steps. A probe far above zero-shot is the room the later
# notebooks need. A curve's zero-shot uses each task's prompt as it stood when the model
# trained; the current zoo was trained after the textures task changed its prompt (the
# preconditions section shows why), so its curves use today's prompts.

# %%
manifest = json.loads((models.ZOO_DIR / "manifest.json").read_text())
hists = {n: json.loads((models.ZOO_DIR / f"{n}.history.json").read_text()) for n in GENERATIONS}
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
# three generations share a recipe, so their loss curves lie on top of each other: distinct
# line styles and staggered markers keep every one visible
plots.distinct_lines(axes[0], {n: (h["step"], pd.Series(h["loss"]).rolling(50, min_periods=1)
                                   .mean()) for n, h in hists.items()})
axes[0].set(title="contrastive loss (50-step mean)", xlabel="step", ylabel="loss")
curve = pd.DataFrame([{"model": n, **c} for n, h in hists.items() for c in h.get("curve", [])])
if len(curve):
    long = curve.melt(id_vars=["model", "step", "seconds"], var_name="what", value_name="top1")
    long["task"] = long.what.str.split("_").str[0]
    long["measure"] = long.what.str.split("_", n=1).str[1].str.replace("_", "-")
    sns.lineplot(data=long[long.model == "tiny-v1"], x="step", y="top1", hue="task",
                 style="measure", markers=True, ax=axes[1])
    axes[1].set(title="tiny-v1 while it trains: zero-shot vs linear probe", ylim=(0, 100),
                ylabel="top-1 on a held-out split (%)")
    # beside the panel: inside it, the legend covered a curve
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
plots.save(fig, "00_pretraining_curves")
plt.show()
pd.DataFrame({n: {"steps": m["recipe"]["steps"], "minutes": round(m["seconds"] / 60, 1),
                  "trained on": m.get("trained_on", "?"), "final loss": m["final_loss"]}
              for n, m in manifest.items() if n in GENERATIONS}).T

# %% [markdown]
# ### How the caption knobs were chosen
#
# The caption knobs (`world.caption_knobs()`: how often a caption tells the fine shape or
# colour apart, and how often it then uses the class name rather than a description) were
# chosen from trial runs of the `tiny-v1` recipe (`tools/zoo_trial.py`), by the gap between
# the linear probe and zero-shot on the learning-curve splits, before any method ran. Trial A
# became the second zoo's `tiny-v1` (the first zoo named every fine attribute it mentioned;
# its `tiny-v1` is trial `Z1`); the current zoo comes from the seventh round below.
#
# Two later trials, `SSL 1.0` and `SSL 0.3`, keep trial A's captions and add a SLIP-style
# self-supervised term to pretraining (`Recipe.ssl_weight`: a SimCLR loss between two
# augmented views of each image). They ask whether an image tower that sees more than the
# captions teach opens the room between probe and zero-shot. The table under the figure gives
# each trial's last logged zero-shot and probe accuracy, not only their difference: read there
# whether zero-shot followed the probe up.
#
# The third round (`N1`-`N6`) keeps the self-supervised term and works on what the captions
# teach and on the cartoon domain (the knobs each trial changed from its round's defaults are printed under the figure below):
#
# - `N1 rarer names`: shape and texture names in a fifth of A's share of the captions that
#   tell them apart, and fewer cartoons in pretraining;
# - `N2` (stopped half way): names twice as common as N1's;
# - `N3 look-alike names`: N1, and a share of the captions that use a shape or texture name use
#   a look-alike's name instead (a diamond called a square, dots called checks), as alt-text
#   misnames (`world.NAME_NOISE_P`);
# - `N4` (stopped early, not shown, to give N5 the CPU): N1, and most such captions call an
#   object by its family's everyday name (a ring a circle, a cross a star), never the reverse
#   (`world.NAME_NOISE_TO`);
# - `N5 hand-drawn cartoons` (stopped early for N6): N3, with cartoons drawn as clipart is, a
#   hand-drawn outline and a thick ink line (`world.CARTOON_WOBBLE`), because the flat cartoon
#   keeps every cue of a photo but its shading;
# - `N6 rare fine shapes`: N5, with captions that tell the fine shape apart far less often
#   (`world.FINE_SHAPE_P`; a second, lower value was stopped early). With the self-supervised
#   term the image tower no longer needs those captions to see shapes, so they only decide how
#   well the text side knows the fine shapes.
#
# N6's preconditions (below) failed on `textures` for a reason in the task, not in the model:
# on thin shapes (ring, crescent, star, cross, triangle) a 32-pixel pattern is a few pixels
# wide, so zero-shot told dots from the rest and confused the other patterns. The fourth round
# therefore changes the task before the captions:
#
# - the textures task draws its patterns on large filled shapes (`world.TEXTURE_TASK_SHAPES`;
#   only the task's splits change, never a corpus), and shapes' base classes take every other
#   member of each look-alike family (`world.SHAPES_BASE`, compared with CoOp's first half
#   below);
# - `N8 textures named`: N6 with texture names as common as in trial A's captions
#   (`world.TEXTURE_NAME_P`), because N6 had made them five times rarer and its textures
#   zero-shot sat near chance; `N7`, with half that share, was stopped early to free the CPU
#   for the updates.
#
# The earlier trials' curves and preconditions were measured with the textures task and the
# shapes split of their time. Measured with the textures task's earlier prompt ("a photo of a
# {} pattern."), N8 never predicted "plain" on textures: the prompt, not the model, was at
# fault, and the task now prompts as the colours task does (the per-class table under the
# preconditions shows both prompts). N8 is therefore listed with its curve only. The zoo that
# followed was pretrained with N8's knobs; its `tiny-v1` is listed among the trials below as
# `Z8` (its curve is N8's, drawn once), measured as the zoo is.
#
# That zoo failed base ~ new on textures: its new classes (checkered, wavy) sat at chance
# zero-shot, because its towers could not tell the two apart, neither by image (a probe on
# frozen photo features) nor by name (their text features coincided). The fifth round works
# on the textures task alone:
#
# - `N9`: texture names misnamed as a look-alike far less often (`world.TEXTURE_NOISE_P`);
# - `N10`: N9 with texture names three times as common (`world.TEXTURE_NAME_P`);
# - `N11`: N10 with finer checks (`world.CHECKER_FREQ`), so that a check is a two-dimensional
#   pattern at 32 pixels rather than three broad blocks;
# - `N12`: finer checks alone; `N13`: N12 with deeper waves (`world.WAVE_AMPLITUDE`).
#
# Finer checks lift textures' ceiling, but only N11's text tower also names the textures apart.
# Its remaining confusion is checkered vs wavy, the whole of CoOp's new half, so the textures
# split now keeps plain, striped and checkered as base classes (`world.TEXTURES_BASE`; each
# look-alike family still has a member in each half). The trials' tables below use the split
# of their time; the other split was measured afterwards on the same models (the table after
# them). The next zoo was pretrained with N11's knobs (its `tiny-v1` a fresh run of N11's
# recipe, not N11's own model).
#
# That zoo's `tiny-v1` still missed marks on objects and textures by a few points, and its
# updates failed base ~ new on textures: with five textures one half holds two classes, and
# a two-class half is either an easy pair or a coin flip. The sixth round works on that:
#
# - `N14`: texture names in fewer captions than N11's, to lower textures' zero-shot;
# - `N15`-`N18`: a sixth texture, `zigzag` (`world.use_textures`, `world.ZIGZAG_AMPLITUDE`), so
#   that both halves hold three classes; N16 and N17 draw steeper zigzags, N17 and N18 name
#   textures more often, N18 never misnames them. No text tower learned to name zigzags apart
#   from waves, so the new half stayed the harder one.
#
# Across these runs the shapes world never changed, yet shapes' base ~ new passed in some runs
# and failed in others: the tables after the zoo's preconditions look at that run by run and
# class by class. The seventh round asks whether rare names cause it:
#
# - `N19`, `N20`: shape names three and ten times as common as before (`world.SHAPE_NAME_P`),
#   and more often a look-alike's name (`world.NAME_NOISE_P`), so that every name is seen
#   often but still learnt imperfectly;
# - `N21`: N19's shape captions and a sixth texture, `hatched` (thin lines both ways: the
#   second lattice beside the checks, one token, unlike zigzag), so that each half of the
#   textures holds an unpatterned or dotted class, a line pattern and a lattice;
# - `N21r`, `N21c`, `N21v`: N21's world pretrained with the `tiny-v2-retrained`,
#   `tiny-v2-continued` (from N21's `tiny-v1`) and `tiny-v2-validation` recipes.
#
# N21, N21c, N21r and N21v are the four models of the zoo: they were pretrained as trials with
# the zoo's recipes and copied into `data/zoo` (its manifest records each recipe, sha256 and
# time), and N21's knobs are now the defaults of `cliptune.world`. The zoo's preconditions
# table below measures them again, as the notebooks use them.
#
# N21 passes every mark on the three main tasks; each of its updates narrowly misses one
# mark or two (the preconditions section below). Most of those misses are domain gaps: the updates'
# corpora hold more sketches, cartoons and paintings, so the updates read those domains
# almost as well as photos. The eighth round asked whether `tiny-v1`'s domain mix would let
# the updates pass, with the rule, written down before they trained, that they replace the
# zoo's updates only if every one passes every mark on every main task:
#
# - `N22c`, `N22r`, `N22v`: N21's world pretrained with the `tiny-v2-continued` (from N21),
#   `tiny-v2-retrained` and `tiny-v2-validation` recipes and `tiny-v1`'s domain mix.
#
# They did not pass (the trials' tables below, and the comparison printed under them), so the
# zoo keeps N21c, N21r and N21v. No further recipe or corpus was tried. One more run of each
# reported update's own recipe followed, under a rule that it measures and is never adopted:
#
# - `N23c`, `N23r`: the `tiny-v2-continued` (from N21) and `tiny-v2-retrained` recipes as the
#   zoo's, with another seed, to measure how far each mark moves from one pretraining run to
#   the next (the preconditions section below lines them up with the zoo's runs).

# %%
# trials.json names three earlier zoos as "previous": give each its own label (display only)
ZOO_LABELS = {"previous-zoo": "Z1 the first zoo's tiny-v1 (fine attributes always named when mentioned)",
              "previous zoo: tiny-v1 with N8 knobs": "Z8 tiny-v1 of the zoo with N8's knobs",
              "Z11-v1 previous zoo's tiny-v1": "Z11-v1 tiny-v1 of the zoo with N11's knobs",
              "Z11-c previous zoo's tiny-v2-continued": "Z11-c its tiny-v2-continued",
              "Z11-r previous zoo's tiny-v2-retrained": "Z11-r its tiny-v2-retrained",
              "Z11-v previous zoo's tiny-v2-validation": "Z11-v its tiny-v2-validation"}


def natural(label):
    """Sort key: N2 before N10, and the letters' trials (A, B) before the numbered ones."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", label)]


raw_trials = json.loads((models.ZOO_DIR / "trials.json").read_text())["trials"]
trials = {ZOO_LABELS.get(k, k): raw_trials[k]
          for k in sorted(raw_trials, key=lambda k: natural(ZOO_LABELS.get(k, k)))}
z8, n8 = trials["Z8 tiny-v1 of the zoo with N8's knobs"], trials["N8 textures named"]
same_run = z8.get("curve") == n8.get("curve")
print("Z8's logged curve is N8's, step for step: drawn once, as N8" if same_run
      else "Z8 and N8 logged different curves: both are drawn")
gaps = pd.DataFrame([{"trial": label, "step": c["step"], "task": task,
                      "probe minus zero-shot": c[f"{task}_probe"] - c[f"{task}_zero_shot"]}
                     for label, t in trials.items() for c in t.get("curve", [])
                     for task in ("shapes", "objects", "textures")
                     if not (same_run and label.startswith("Z8"))])
# the zoo and the trials the text turns on are drawn in colour; every other trial in grey
SHOWN = ("Z1", "A", "N8", "N11", "N19", "N21", "N21c", "N21r", "N21v", "N22c", "N22r", "N22v",
         "N23c", "N23r")
ZOO_TRIALS = ("N21", "N21c", "N21r", "N21v")  # the zoo's four models, drawn solid
shown = {label.split()[0]: label for label in trials if label.split()[0] in SHOWN}
# tab10 without its grey (the colour of the other trials): nine colours; an eighth-round trial
# takes the colour of the zoo update whose recipe it reran, dashed beside that update's solid
# line, and a replicate of that recipe (another seed) the same colour, dotted
colours = dict(zip(SHOWN[:9], [c for i, c in enumerate(sns.color_palette("tab10")) if i != 7]))
colours.update({f"N22{k}": colours[f"N21{k}"] for k in "crv"})
colours.update({f"N23{k}": colours[f"N21{k}"] for k in "cr"})
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
for ax, task in zip(axes, ("objects", "shapes", "textures")):
    g = gaps[gaps.task == task]
    for label in sorted(g.trial.unique(), key=natural):
        gg, key = g[g.trial == label], label.split()[0]
        if key in shown:
            zoo_model = key in ZOO_TRIALS
            ax.plot(gg.step, gg["probe minus zero-shot"], color=colours[key],
                    lw=2.2 if zoo_model else 1.5,
                    ls="-" if zoo_model else ":" if key.startswith("N23") else "--",
                    marker="os^D"[SHOWN.index(key) % 4], ms=4, zorder=3, label=label)
        else:
            ax.plot(gg.step, gg["probe minus zero-shot"], color="0.75", lw=0.9, zorder=1,
                    label="other trials (grey; knobs printed below)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(title=task, xlabel="pretraining step")
axes[0].set_ylabel("probe minus zero-shot (points)")
fig.suptitle("trial runs: the room between frozen features and zero-shot, while they train "
             "(solid: the zoo's four models)", fontsize=10)
fig.tight_layout()
# one legend for the three panels, below them, where it hides no point; one grey entry
handles, labels = axes[0].get_legend_handles_labels()
unique = dict(zip(labels, handles))
order = sorted(unique, key=lambda lab: (lab.startswith("other"), natural(lab)))
fig.legend([unique[lab] for lab in order], order, loc="upper center",
           bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8, title="trial", title_fontsize=8)
plots.save(fig, "00_caption_trials")
plt.show()
print("caption knobs of the zoo:", world.caption_knobs())
print("each trial's knobs (as tools/zoo_trial.py set them):")
for label, t in trials.items():
    if t.get("curve"):
        print(f"  {label}: {' '.join(t['knobs'])}")
last = pd.DataFrame([{"trial": label, "step": t["curve"][-1]["step"], "task": task,
                      "zero-shot": t["curve"][-1][f"{task}_zero_shot"],
                      "probe": t["curve"][-1][f"{task}_probe"]}
                     for label, t in trials.items() if t.get("curve")
                     for task in ("shapes", "objects", "textures")])
print("each trial at its last logged step (accuracy, %, learning-curve splits)")
(last.pivot_table(index=["trial", "step"], columns="task", values=["zero-shot", "probe"]).round(1)
 .reindex(sorted(last.trial.unique(), key=natural), level="trial"))  # N2 before N10

# %% [markdown]
# The finished trials of the third round on were also measured exactly as the zoo is
# measured below (`tools/zoo_trial.py --measure`: `preconditions.measure` on every task, under
# each trial's own world knobs, so a trial with hand-drawn cartoons is tested on hand-drawn
# cartoons), and checked against the same targets. A trial that passes every check on at least
# three main tasks is a candidate for the zoo; the two replicates (N23c, N23r) are not, by the
# rule they ran under.

# %%
trial_pre = pd.DataFrame([{"model": label, **row} for label, t in trials.items()
                          for row in t.get("preconditions", [])])
# each reported update's replicate (its recipe, another seed): measures only, never adopted
REPLICATES = {"tiny-v2-continued": "N23c", "tiny-v2-retrained": "N23r"}
if len(trial_pre):
    trial_checks, trial_enough = preconditions.verdicts(trial_pre, world.MAIN_TASKS)
    with pd.option_context("display.max_rows", 300):  # every trial's rows, none elided
        display(trial_pre[trial_pre.task.isin(world.MAIN_TASKS)].set_index(["model", "task"])[
            ["zs_photo", "zs_sketch", "zs_cartoon", "zs_painting", "zs_clutter", "ceiling",
             "zs_base", "zs_new"]].round(1))
        display(trial_checks[trial_checks["main task"]].drop(columns="main task")
                .set_index(["model", "task"]))
    for label, ok in trial_enough.items():
        replicate = label.split()[0] in REPLICATES.values()
        print(f"{label}: " + (("passes" if ok else "fails") + " the candidate test, as a "
                              "replicate that is never adopted" if replicate
                              else "a candidate" if ok else "not a candidate"))
    # the eighth round and the replicates against the zoo's updates: every mark each missed
    # on a main task
    marks = [c for c in trial_checks.columns if c not in ("model", "task", "main task", "all")]
    for round_name, keys in {"the zoo's updates (N21c, N21r, N21v)": ("N21c", "N21r", "N21v"),
                             "on tiny-v1's domain mix (N22c, N22r, N22v)": ("N22c", "N22r", "N22v"),
                             "the reported updates' recipes, another seed (N23c, N23r)":
                             tuple(REPLICATES.values())}.items():
        rows = trial_checks[trial_checks["main task"]
                            & trial_checks.model.str.split().str[0].isin(keys)]
        missed = [f"{r['model'].split()[0]} {r['task']} '{m}'" for _, r in rows.iterrows()
                  for m in marks if r[m] == "FAIL"]
        print(f"{round_name}: {len(missed)} missed marks on the main tasks"
              + (f" ({'; '.join(missed)})" if missed else ""))
other_split = pd.DataFrame([{"trial": label, "base classes": ", ".join(t["textures_other_split"]["base"]),
                             "zs_base": t["textures_other_split"]["zs_base"],
                             "zs_new": t["textures_other_split"]["zs_new"]}
                            for label, t in trials.items() if "textures_other_split" in t])
print("textures' zero-shot under the other split, measured afterwards on the same trial models")
with pd.option_context("display.max_colwidth", None):  # whole trial names
    display(other_split)

# %% [markdown]
# ### How far the continued update moved from v1
#
# The continued update starts its text tower from v1's, so its token embeddings begin equal
# to v1's. How far they moved during its own pretraining decides how much of v1's text side a
# prompt trained on v1 still finds there; the retrained update shares nothing by
# construction and serves as the reference.

# %%
tok = zoo["tiny-v1"].tokenizer
words = sorted({w for t in world.TASKS.values() for c in t.classnames for w in c.split()})
ids = [int(tok([w])[0, 1]) for w in words]  # first BPE token of each class word
e1 = zoo["tiny-v1"].model.token_embedding.weight[ids]
drift_rows = []
for name in GENERATIONS[1:]:
    e2 = zoo[name].model.token_embedding.weight[ids]
    cos = torch.nn.functional.cosine_similarity(e1, e2, dim=-1)
    drift_rows.append({"update": name, "mean cosine to v1 (class words)": float(cos.mean()),
                       "relative L2 change": float((e2 - e1).norm() / e1.norm())})
pd.DataFrame(drift_rows).round(3)

# %% [markdown]
# ## Preconditions: does the world leave room for the methods?
#
# For every task and model: zero-shot accuracy per domain (the task's hand-made template), a
# **frozen-feature ceiling** (logistic regression on frozen features with ample training
# images, the regularisation chosen on a validation split, scored once on the test split), and
# zero-shot on the **base** and **new** halves of the classes. The targets (docs/DESIGN.md, "World
# preconditions") copy the shape of real CLIP on CoOp's datasets; the pass marks are
# `cliptune.preconditions.Targets`. The comparisons of notebooks 02-07 use the **main tasks**;
# tasks at ceiling are sanity checks only and never enter a pooled mean.
#
# A mark is a fixed line and a measured gap is an estimate from a finite test set, so each
# missed domain or base/new mark is printed with the 95 per cent interval of its gap over test
# images (`preconditions.gap_interval`; the model is fixed, the images are the sample). A
# verdict stays as the table gives it; the interval says whether a miss is larger than
# what the test set can resolve.

# %%
targets = preconditions.Targets()
print("main tasks:", world.MAIN_TASKS, "| sanity-check tasks:", world.SANITY_TASKS)
print("targets:", targets)
rows = [preconditions.measure(zoo[name], task, DOMAINS) for name in MEASURED for task in TASKS]
pre = pd.DataFrame(rows)
results.record("00_tiny_world", {"experiment": "preconditions", "models": MEASURED,
                                 "tasks": TASKS, "domains": DOMAINS, "fast": FAST_DEV_RUN},
               [{"method": "zero-shot" if c.startswith("zs_") else "linear-probe-ceiling",
                 "dataset": r["task"], "train_model": r["model"], "eval_model": r["model"],
                 "split": "test", "domain": c[3:] if c.startswith("zs_") else "photo",
                 "metric": "top1" if c.startswith("zs_") or c == "ceiling" else c,
                 "value": r[c]}
                for r in rows for c in r
                if c.startswith("zs_") or c in ("ceiling", "ceiling_C", "ceiling_train")])
shown = (["model", "task"] + [f"zs_{d}" for d in DOMAINS]
         + ["ceiling", "ceiling_C", "ceiling_converged", "zs_base", "zs_new"])
# C spans decades: "g" keeps 0.01 from printing as 0.0. A C at an end of the probe's grid was
# not bracketed by the search (the grid stays as it is: the ceilings are measured with it)
C_GRID = inspect.signature(preconditions.probe_ceiling).parameters["cs"].default
table = pre[shown].round(1)
table["ceiling_C"] = pre.ceiling_C.map("{:g}".format)
table["C at grid edge"] = (pre.ceiling_C.map({min(C_GRID): "lowest", max(C_GRID): "highest"})
                          .fillna(""))
display(table)
edge = pre[pre.task.isin(world.MAIN_TASKS) & (pre.ceiling_C == max(C_GRID))]
print(f"probe grid C = {', '.join(f'{c:g}' for c in C_GRID)}; main tasks whose chosen C is the "
      "grid's highest (least regularised), so that a wider grid might fit a higher ceiling: "
      + ("; ".join(f"{t} on {', '.join(g.model)}" for t, g in edge.groupby("task")) or "none"))

# %%
checks, enough = preconditions.verdicts(pre, world.MAIN_TASKS, targets)
display(checks.set_index(["model", "task"]))
for name, ok in enough.items():
    n = int(((checks.model == name) & checks["main task"] & (checks["all"] == "PASS")).sum())
    print(f"{name}: {n} main task(s) pass every precondition -> "
          f"{'PASS' if ok else 'FAIL'} (at least {targets.min_main_tasks} needed)")
missed = preconditions.shortfalls(pre, world.MAIN_TASKS, targets)
print("\nwhere a main task misses a mark, and by how much:" if missed
      else "\nevery main task meets every mark on every model")
for line in missed:
    print(" ", line)

# a missed mark matters for a later claim only where that claim rests on it: which later
# notebooks evaluate each model and task on the images a mark is about
# (preconditions.LATER_USE, checked by the tests against every recorded result)
# every mark of every main task as data: its quantity, margin and test-set interval
marks_table = preconditions.margins(pre, world.MAIN_TASKS, targets)
fails = marks_table[(marks_table.model != "tiny-v1") & (marks_table.verdict == "FAIL")]
for _, r in fails.iterrows():
    what = preconditions.MARK_IMAGES[r.mark]
    where = preconditions.later_use(r.model, r.task, what)
    print(f"{r.model} / {r.task} misses '{r.mark}'"
          + (f", within its test-set interval (the mark lies inside the 95 per cent interval "
             f"of {r.quantity})" if r.inside else "")
          + "; evaluated later on " + what + ": "
          + (", ".join(where) if where else
             "by no later notebook" + (" (this update only scores candidate designs on "
             "validation draws, results/selection, and is never reported)"
             if r.model not in models.UPDATES else "")))

# %% [markdown]
# ### The same recipe, another seed: how far does a mark move?
#
# Whether an update passes a mark it nearly meets may be a property of its recipe, or of one
# pretraining run. To tell the two apart, each reported update's recipe was pretrained once
# more, unchanged except for its seed, which redraws the corpus sample, the initialisation
# and the batches (trials N23c and N23r, `tools/zoo_trial.py --recipe-set seed=...`). A rule
# written before either run existed fixed their use: they measure how far each mark moves
# between two runs of one recipe and are never adopted into the zoo, whatever they show,
# since keeping a run because it passes would be choosing a seed by its outcome.
#
# The table lines up every mark of every main task for the zoo's run and the replicate
# (`preconditions.run_to_run`): the quantity each mark checks in each run (for the domain
# mark, the smallest gap to photo, whichever domain it is), its change, and the half-width
# that test-set noise alone would give that change. A change larger than that half-width is
# run-to-run variation of pretraining, which no larger test set removes.

# %%
replicate_label = {k: label for label in trials for k in REPLICATES.values()
                   if label.split()[0] == k}
replicated = (set(REPLICATES) <= set(MEASURED)
              and set(replicate_label) == set(REPLICATES.values()))
SKIPPED = ("skipped: needs the updates measured (not in a fast run) and trials "
           + ", ".join(REPLICATES.values()) + " in data/zoo/trials.json")
if not replicated:
    print(SKIPPED)
else:
    replicate_marks = {name: preconditions.margins(
        trial_pre[trial_pre.model == replicate_label[k]], world.MAIN_TASKS, targets)
        for name, k in REPLICATES.items()}
    runs = pd.concat([preconditions.run_to_run(marks_table[marks_table.model == name],
                                               replicate_marks[name]).assign(update=name)
                      for name in REPLICATES]).reset_index(drop=True)
    with pd.option_context("display.max_rows", 100, "display.max_columns", None,
                           "display.width", 200):
        display(runs.set_index(["update", "task", "mark"]).round(1))
    noisy = runs.dropna(subset=["test noise"])
    beyond = noisy[noisy.change.abs() > noisy["test noise"]]
    largest = runs.loc[runs.change.abs().idxmax()]
    print(f"{int(runs.flips.sum())} of {len(runs)} marks change verdict between the zoo's run "
          f"and the replicate; the checked quantities moved by a median of "
          f"{runs.change.abs().median():.1f} points (largest: {largest.change:+.1f}, "
          f"{largest['update']} / {largest.task} '{largest.mark}')"
          + (f"; {len(beyond)} of {len(noisy)} moves with a test-set interval exceed the "
             f"half-width that test-set noise alone gives (median "
             f"{noisy['test noise'].median():.1f})" if len(noisy) else ""))
    zoo_misses = runs[runs["verdict 1"] == "FAIL"]
    for _, r in zoo_misses.iterrows():
        print(f"  the zoo's {r['update']} / {r.task} misses '{r.mark}' ({r['quantity 1']} "
              f"{r['value 1']:.1f}); the replicate "
              + ("passes it" if r["verdict 2"] == "PASS" else "misses it too")
              + f" ({r['quantity 2']} {r['value 2']:.1f})")
    for _, r in runs[(runs["verdict 1"] == "PASS") & runs.flips].iterrows():
        print(f"  the replicate's {r['update']} / {r.task} misses '{r.mark}' "
              f"({r['quantity 2']} {r['value 2']:.1f}), which the zoo's run passes "
              f"({r['quantity 1']} {r['value 1']:.1f})")

# %% [markdown]
# ### How likely is one run of each recipe to pass every mark?
#
# The replicates turn a verdict into a chance. Each pair (the zoo's run and its replicate)
# gives the spread of every checked quantity between two runs of one recipe; pooled over the
# two recipes and the three main tasks, that is a run-to-run sd per mark
# (`preconditions.run_spread`), printed with its 95 per cent interval, which is wide because six
# pairs give six degrees of freedom. The base/new gap enters with its sign, since a run can
# turn it around. `preconditions.pass_chance` then takes another run's quantity as normal
# around its recipe's mean, with that sd widened by sqrt(1 + 1/n) for a mean of n runs, and
# reads off the chance that the run passes each mark. `tiny-v1` and the validation update
# have one run each and borrow the pooled sd: an assumption, since their recipes differ. A
# recipe's chance of passing every mark multiplies its marks' chances, which treats them as
# independent (they share the photo zero-shot): a rough guide to how often, not a test.
#
# The last table turns the question around (`preconditions.clearance`): for one pretraining
# of the whole zoo to pass every mark of every main task together in nine runs out of ten,
# how far inside its line would each quantity have to sit? The base/new gap has a floor that
# no recipe removes: even a true gap of zero moves by the run-to-run sd, so it passes with a
# chance below one (`preconditions.base_new_best_case`), and only a smaller spread (more
# classes per half, or runs that vary less) lifts that.

# %%
if not replicated:
    print(SKIPPED)
else:
    stacked = pd.concat([marks_table.assign(recipe=marks_table.model)]
                        + [m.assign(recipe=name) for name, m in replicate_marks.items()],
                        ignore_index=True)
    spread = preconditions.run_spread(stacked)
    chance_marks, chance_recipes = preconditions.pass_chance(stacked, spread, targets)
    display(spread.set_index("mark").round(2))
    display(chance_recipes.set_index("recipe").round(3))
    ends = ["chance", "chance low", "chance high"]
    pct = lambda x: f"{100 * x:.2g}%"  # noqa: E731  (chances span orders of magnitude)
    zoo_all = chance_recipes[ends].prod()
    reported = chance_recipes[chance_recipes.recipe.isin(REPLICATES)][ends].prod()
    print(f"one pretraining of every zoo recipe passes every mark of every main task with "
          f"chance {pct(zoo_all['chance'])} ({pct(zoo_all['chance low'])} to "
          f"{pct(zoo_all['chance high'])} over the sds' intervals); the two reported updates "
          f"together {pct(reported['chance'])} ({pct(reported['chance low'])} to "
          f"{pct(reported['chance high'])}); tiny-v1 alone "
          f"{pct(chance_recipes.set_index('recipe').loc['tiny-v1', 'chance'])}")
    print("the marks least likely to pass in another run:")
    for _, r in chance_marks.nsmallest(6, "chance").iterrows():
        print(f"  {r.recipe} / {r.task} '{r.mark}': mean of {r.runs} run(s) {r['mean']:.1f}, "
              f"chance {r.chance:.2f}")
    n_bn = int((chance_marks.mark == "base ~ new").sum())
    best = preconditions.base_new_best_case(spread, targets)
    print(f"a recipe whose true base/new gap is zero passes that mark in one run with chance "
          f"{best:.3f}, so all {n_bn} base/new marks together with {best ** n_bn:.2f}")
    need = preconditions.clearance(spread, len(chance_marks), 0.9, targets)
    display(need.set_index("mark").round({"sd": 2, "chance each": 4, "z": 2, "at least": 1,
                                          "at most": 1}))
    clears = chance_marks.merge(need, on="mark")
    value = clears["mean"].where(clears.mark != "base ~ new", clears["mean"].abs())
    clears["clears"] = clears.reachable & ~(value < clears["at least"]) & ~(
        value > clears["at most"])  # a missing bound compares False: no bound to miss
    print(f"each of the {len(chance_marks)} marks must pass with chance "
          f"{need['chance each'].iloc[0]:.4f} for nine zoos in ten to pass them all; recipe "
          "means (over the zoo's recipes and main tasks) that clear what that asks, per mark: "
          + "; ".join(f"'{m}' {int(g.sum())} of {len(g)}"
                      for m, g in clears.groupby("mark", sort=False)["clears"]))
    for m in need[~need.reachable].mark:
        print(f"  '{m}' cannot be cleared that often by any recipe on these class splits: even "
              "a true gap of zero passes it with the smaller chance above")

# %%
v1 = pre[pre.model == "tiny-v1"].set_index("task")
for task in TASKS:
    r = v1.loc[task]
    shifted = {d: r[f"zs_{d}"] for d in DOMAINS if d != "photo"}
    hardest = min(shifted, key=shifted.get) if shifted else "none"
    print(f"{task:9s} photo zero-shot {r.zs_photo:5.1f}, ceiling {r.ceiling:5.1f} "
          f"(+{r.ceiling - r.zs_photo:.1f}), hardest shift: {hardest}"
          + (f" ({shifted[hardest]:.1f})" if shifted else "")
          + f", base {r.zs_base:.1f} vs new {r.zs_new:.1f}")

# %% [markdown]
# Shapes' base classes take every other member of each look-alike family (`world.SHAPES_BASE`)
# rather than CoOp's first half, which would put both pointed shapes (star, cross) among the
# new classes so that base training never sees what tells them apart. Textures' base classes
# are plain, striped and checkered (`world.TEXTURES_BASE`, chosen on trial N11 above). Both
# splits of both tasks, measured:

# %%
split_rows = []
for task in ("shapes", "textures"):
    used = data.tiny(task, "test")
    coop_halves = dataclasses.replace(used, base=None)  # CoOp: the first half is base
    for name in MEASURED:
        for split, ds in (("used", used), ("CoOp's first half", coop_halves)):
            b, n = data.base_new(ds)
            zb, zn = (preconditions.zero_shot_accuracy(zoo[name], x) for x in (b, n))
            split_rows.append({"task": task, "model": name, "split": split,
                               "base classes": ", ".join(b.classnames),
                               "zs base": zb, "zs new": zn, "gap": abs(zb - zn)})
pd.DataFrame(split_rows).set_index(["task", "model", "split"]).round(1)

# %% [markdown]
# How much of shapes' base-new gap belongs to the world and how much to one pretraining run? The
# fifth- and sixth-round trials changed texture knobs only, so their shapes rows are repeated
# pretraining runs of the same shapes world, as are the four models of the zoo with N11's knobs,
# the one before this zoo (rows `Z11`, measured after it was replaced). A shape name appears in
# few captions (`world.SHAPE_NAME_P`), so which names a text tower ties to their shapes, and
# hence the gap, may move from run to run. Class by class: every run's zero-shot accuracy on
# each shape, among the classes of its own half (`preconditions.per_class_zero_shot`; the trials
# were measured afterwards, in the world each was trained in, by `tools/trial_per_class.py`). A
# half's accuracy is the mean of its five classes, so a single class that one run did not learn
# by name moves its half by a fifth of that class's misses. The seventh- and eighth-round
# trials (shape names more common, more often misnamed; N21 to N21v are this zoo) are rows of
# their own, below a white line:

# %%
SAME_SHAPE_CAPTIONS = ("N9", "N10", "N11", "N12", "N13", "N14", "N15", "N16", "N17", "N18",
                       "Z11-v1", "Z11-c", "Z11-r", "Z11-v")  # the previous shapes world
per_class_runs = {label: t["per_class"]["shapes"] for label, t in trials.items()
                  if "per_class" in t}
shape_base = list(world.base_classes("shapes"))
shape_order = shape_base + [c for c in world.TASKS["shapes"].classnames if c not in shape_base]
old_names = [r for r in per_class_runs if r.split()[0] in SAME_SHAPE_CAPTIONS]
new_names = [r for r in per_class_runs if r not in old_names]
per_class = pd.DataFrame(per_class_runs).T.loc[old_names + new_names, shape_order]
fig, ax = plt.subplots(figsize=(9, 0.32 * len(per_class) + 1.4))
sns.heatmap(per_class, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
            cbar_kws={"label": "zero-shot among its half's classes (%)"})
ax.axvline(len(shape_base), color="white", lw=3)
ax.axhline(len(old_names), color="white", lw=3)
ax.set_yticklabels([r.split()[0] for r in per_class.index],
                   rotation=0, fontsize=8)
ax.set(title="shapes, every pretraining run: base classes | new classes", ylabel="")
plots.save(fig, "00_shapes_per_class")
plt.show()
by_run = preconditions.base_new_gaps(per_class, shape_base)
old_runs, old_gap = per_class.loc[old_names], by_run.loc[old_names, "gap"]
within_sd = by_run[["class sd within base", "class sd within new"]].mean(axis=1)
always = [c for c in shape_order if old_runs[c].min() >= 90]
print(f"{len(old_names)} runs of the shapes world with rare names: per-class sd over runs "
      f"{old_runs.std().min():.0f} to {old_runs.std().max():.0f} points; named by every run "
      f"(never below 90): {', '.join(always) or 'none'}; base minus new "
      f"{old_gap.mean():+.1f} on average, sd {old_gap.std():.1f}, within "
      f"{targets.base_new_gap:.0f} points in "
      f"{int((old_gap.abs() <= targets.base_new_gap).sum())} of {len(old_names)}")
if new_names:
    print(f"{len(new_names)} runs with shape names more common and more often misnamed: class "
          f"sd within a run {within_sd[new_names].mean():.0f} points vs "
          f"{within_sd[old_names].mean():.0f} before; base minus new "
          + ", ".join(f"{r.split()[0]} {by_run.loc[r, 'gap']:+.1f}" for r in new_names))
by_run.round(1)

# %% [markdown]
# The textures task prompts with "a photo of a {} object." (as the colours task does), not
# "a photo of a {} pattern.": the captions name a texture on an object ("a striped red
# square") and never say "striped pattern". Per class, on `tiny-v1` (each row: the images of
# one class, and how many of them each prompt sends to each class):

# %%
tex = data.tiny("textures", "test")
confusion = []
for template in ("a photo of a {} object.", "a photo of a {} pattern."):
    zs_t = methods.create("zero-shot", zoo["tiny-v1"], ensemble=False)
    zs_t.attach(zoo["tiny-v1"], tex.classnames, (template,))
    pred = evaluate.predict(zs_t, tex).argmax(-1).numpy()
    for c, name in enumerate(tex.classnames):
        counts = np.bincount(pred[tex.labels == c], minlength=len(tex.classnames))
        confusion.append({"prompt": template, "class": name,
                          "top-1": 100.0 * counts[c] / counts.sum(),
                          **{f"-> {n}": int(k) for n, k in zip(tex.classnames, counts)}})
pd.DataFrame(confusion).set_index(["prompt", "class"]).round(1)

# %%
heat = pre.set_index(["model", "task"])[[f"zs_{d}" for d in DOMAINS] + ["ceiling"]]
heat.columns = [c.replace("zs_", "") for c in heat.columns]
fig, ax = plt.subplots(figsize=(8, 0.32 * len(heat) + 1.2))
sns.heatmap(heat, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
            cbar_kws={"label": "top-1 (%)"})
ax.set_title("zero-shot per domain, and the frozen-feature ceiling (photo)")
ax.set_ylabel("")
plots.save(fig, "00_calibration")
plt.show()

# %%
if not FAST_DEV_RUN:
    # pooled over the main tasks only (the sanity tasks sit at ceiling), paired by test image
    MAIN = [t for t in TASKS if t in world.MAIN_TASKS]

    def photo_hits(name):
        return {t: {0: protocols.score(methods.create("zero-shot", zoo[name], ensemble=False),
                                       zoo[name], data.tiny(t, "test"))["correct"]} for t in MAIN}

    v1_hits = photo_hits("tiny-v1")
    for name in models.UPDATES:
        c = compare.paired_difference(photo_hits(name), v1_hits, names=(name, "tiny-v1"))
        print(f"{name}: mean photo zero-shot over the main tasks ({', '.join(MAIN)}) "
              f"{c.a_value:.1f} vs tiny-v1 {c.b_value:.1f}, difference {c.interval()} "
              f"(95 per cent interval, paired by test image) -> {c.verdict}")
        if c.split():
            print(f"  the tasks disagree: {c.per_task_text()}")

# %% [markdown]
# **Reading.** The tables above decide what the later notebooks may claim: a main task that
# passes leaves room for a method to gain (ceiling far above zero-shot), to lose robustness
# (shifted domains harder) and to overfit its base classes (new classes as hard as base ones).
# A model marked FAIL under the gate has fewer main tasks than needed passing every check;
# the lines printed under the gate say which marks it misses, whether each miss lies within
# what the test set can resolve, and which later notebooks evaluate that model on that task
# in the way the mark is about. A later claim rests on a missed mark only where one does.
# The replicate table says whether an update's verdict on a mark belongs to its recipe or to
# one pretraining run: a verdict that flips between two runs of the same recipe is the run's,
# and changing the recipe until it passes would be choosing runs by their outcome.
# A task at ceiling stays in the workbook as a sanity check of concepts the model already
# knows, but never enters a pooled mean.

# %% [markdown]
# ## Where this run wrote

# %%
runtime.report_outputs("00_tiny_world")
