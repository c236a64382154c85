# %% [markdown]
# # 06 · Embedding drift across CLIP versions
#
# **What you will learn.** What changes in the embedding space when CLIP is updated: the same
# images and class prompts embedded by `tiny-v1` and by its two updates, the images laid out
# side by side in one shared map; drift measured with rotation-invariant numbers (linear CKA,
# orthogonal Procrustes residual, k-NN overlap) per class and per domain; and whether the
# classes that drift most are the ones where prompts trained on v1 stop working on the update.
#
# **Run time.** UMAP compiles with numba on first use, which dominates a first run; the
# `benchmarks/` folder breaks the rest down. Writes `figures/06_*.png` and `results/06_embedding_drift/`.

# %% tags=["parameters"]
from cliptune import params

FAST_DEV_RUN = None  # None: CLIPTUNE_FAST_DEV_RUN decides; True or False: this run decides
OLD = "tiny-v1"
UPDATES = ("tiny-v2-continued", "tiny-v2-retrained")
TASK = "objects"
N_CLASSES = 16  # classes shown in the UMAP (a stride of 13 through the 80 mixes colours and shapes)
DOMAINS = ("photo", "sketch")
N_NEIGHBORS = 15
UMAP_SEED = 0
K = 10  # neighbours for the k-NN overlap
SHOTS, SEEDS = 16, (1, 2, 3)  # the CoOp prompts whose per-class compatibility meets drift
params.declare(globals())  # the next cell checks every value above

# %%
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from scipy import stats
from sklearn.decomposition import PCA

from cliptune import (analysis, compare, data, evaluate, features, methods, models, plots,
                      protocols, results, runtime)

FAST_DEV_RUN = params.setup(globals())  # checks the parameters, prints the mode and outputs
if FAST_DEV_RUN:
    N_CLASSES, DOMAINS, SEEDS = 6, ("photo",), SEEDS[:1]
plots.style()
VERSIONS = (OLD,) + tuple(UPDATES)
zoo = {name: models.load_clip(name) for name in VERSIONS}

# %% [markdown]
# ## The points
#
# Test images of a subset of the classes in each domain, plus one class prompt
# ("a photo of a {class}.") per class. Row *i* is the same input in every version, which is
# what lets the figures below follow each input from one version to the next.

# %%
full = data.tiny(TASK, "test")
classes = tuple(dict.fromkeys(full.classnames[(13 * i) % len(full.classnames)]
                              for i in range(N_CLASSES)))
parts = [data.tiny(TASK, "test", d).select_classes(classes) for d in DOMAINS]
meta = pd.concat([pd.DataFrame({"class": [p.classnames[y] for y in p.labels], "domain": p.domain,
                                "kind": "image"}) for p in parts]
                 + [pd.DataFrame({"class": classes, "domain": "text", "kind": "class prompt"})],
                 ignore_index=True)


@torch.no_grad()
def embed(clip):
    images = torch.cat([clip.encode_images(p.raw(range(len(p)))) for p in parts])
    prompts = methods.base.zero_shot_weights(clip, classes, (full.templates[0],))
    return torch.cat([images, prompts]).cpu()


emb = {name: embed(clip) for name, clip in zoo.items()}
is_img = (meta.kind == "image").to_numpy().copy()  # writable: torch indexes with it
print({k: tuple(v.shape) for k, v in emb.items()})

# %% [markdown]
# ## How much did the space move?
#
# All three measures ignore rotations: two versions that differ only by a change of basis
# score CKA 1, Procrustes 0 and k-NN overlap 1. Images only (the prompts are few).

# %%
rows = []
for upd in UPDATES:
    x, y = emb[OLD][is_img], emb[upd][is_img]
    for metric, value in (("cka", analysis.linear_cka(x, y)),
                          ("procrustes", analysis.procrustes_residual(x, y)),
                          ("knn_overlap", analysis.knn_overlap(x, y, K))):
        rows.append({"method": "drift", "dataset": TASK, "train_model": OLD, "eval_model": upd,
                     "split": "test", "domain": "+".join(DOMAINS), "metric": metric,
                     "value": value})
    for by in ("class", "domain"):
        table = analysis.drift_table(x, y, meta[is_img][by].to_numpy(), k=K)
        for _, r in table.iterrows():
            for metric in ("cka", "procrustes", "knn_overlap"):
                rows.append({"method": f"drift per {by}", "dataset": TASK, "train_model": OLD,
                             "eval_model": upd, "split": r["group"],
                             "domain": r["group"] if by == "domain" else "+".join(DOMAINS),
                             "metric": metric, "value": r[metric]})
results.record("06_embedding_drift", {"experiment": "drift", "classes": classes,
                                      "domains": DOMAINS, "k": K}, rows)
drift = pd.DataFrame(rows)
print(f"images: the test images of {len(classes)} of the {len(full.classnames)} classes "
      f"(classes 13 i mod {len(full.classnames)}, i = 0, 1, ...) in {' and '.join(DOMAINS)}, {int(is_img.sum())} in all; k-NN overlap "
      f"with k = {K} among these images only")
drift[drift.method == "drift"].pivot_table(index="eval_model", columns="metric",
                                           values="value").round(3)

# %%
per_domain = drift[drift.method == "drift per domain"].pivot_table(
    index=["eval_model", "split"], columns="metric", values="value").round(3)
per_domain

# %% [markdown]
# ### Which side moved: images or text?
#
# An update can move the image side, the text side, or both. The continued update starts its
# text tower from v1's and trains a new vision tower; the retrained one starts both from
# scratch. Measuring the two sides apart (images: the test images; text: the class prompts of
# all classes of the task) explains the ordering of the totals above, whichever way it falls.

# %%
all_prompts = {name: methods.base.zero_shot_weights(clip, full.classnames, (full.templates[0],))
               .cpu() for name, clip in zoo.items()}
tok = zoo[OLD].tokenizer
ids = sorted({int(t) for c in full.classnames for t in tok([c])[0] if 0 < int(t) < 49406})
# not the same set as notebook 00's "mean cosine to v1", which takes the first BPE token of
# each class word of all five tasks
TOKEN_COS = f"token-embedding cosine to v1 (all {len(ids)} BPE tokens of {TASK}' class names)"
side_rows = []
for upd in UPDATES:
    x, y = emb[OLD][is_img], emb[upd][is_img]
    e_old = zoo[OLD].model.token_embedding.weight[ids]
    e_new = zoo[upd].model.token_embedding.weight[ids]
    side_rows.append({
        "update": upd,
        "image CKA": analysis.linear_cka(x, y),
        "image k-NN overlap": analysis.knn_overlap(x, y, K),
        "prompt CKA": analysis.linear_cka(all_prompts[OLD], all_prompts[upd]),
        "prompt k-NN overlap": analysis.knn_overlap(all_prompts[OLD], all_prompts[upd], K),
        TOKEN_COS: float(torch.nn.functional.cosine_similarity(
            e_old, e_new, dim=-1).mean())})
sides = pd.DataFrame(side_rows).set_index("update")
display(sides.round(3))
a, b = UPDATES
for side in ("image", "prompt"):
    more = a if sides.loc[a, f"{side} CKA"] < sides.loc[b, f"{side} CKA"] else b
    print(f"{side} side: {more} drifts more from {OLD} "
          f"(CKA {sides.loc[a, side + ' CKA']:.3f} for {a} vs {sides.loc[b, side + ' CKA']:.3f} "
          f"for {b}; lower = more drift)")
print(f"images: the {int(is_img.sum())} subset images above; prompts: one prompt per class "
      f"for all {len(full.classnames)} classes of {TASK}")
print(f"class-name token embeddings (every BPE token of {TASK}' class names): cosine to {OLD} "
      f"of {sides.loc[a, TOKEN_COS]:.3f} ({a}, which started from them) vs "
      f"{sides.loc[b, TOKEN_COS]:.3f} ({b}, which shares nothing but the tokenizer)")
closer = max(UPDATES, key=lambda u: sides.loc[u, "prompt CKA"])
print(f"The totals above are the image side alone. The text side stayed closer to {OLD}'s in {closer}: "
      "that is the side a learned prompt was tuned against; whether v1's prompts survive "
      "better there is measured below, class by class, and in notebook 07.")

# %% [markdown]
# ## One map of the three versions
#
# Two versions embed the same inputs in unrelated coordinates, so each update is first turned
# onto `tiny-v1` by the best rotation (orthogonal Procrustes, `analysis.procrustes_align`:
# no scaling, nothing else), then ONE UMAP is fitted to all three versions' points together
# (`analysis.shared_layout`). A point that did not move lands where its v1 copy is; a point
# whose neighbourhood changed lands elsewhere. One panel per version on the same axes; colour
# = class, marker = domain; v1's points are drawn in light grey under each update. (Aligned
# UMAP, which pulls the panels towards each other, hid this drift, so this map does not use
# it.) A fixed `random_state` makes the layout reproducible.
#
# The class prompts are left out of this map: CLIP's text features lie in a region of the
# shared space apart from every image (the modality gap), so a UMAP fitted to both draws all
# prompts in one clump away from the images and says nothing about them. The per-class figure
# below follows each prompt in a linear map instead.

# %%
img_meta = meta[is_img].reset_index(drop=True)  # images only: see the text above
layouts = analysis.shared_layout([emb[v][is_img].numpy() for v in VERSIONS],
                                 n_neighbors=N_NEIGHBORS, random_state=UMAP_SEED,
                                 n_epochs=60 if FAST_DEV_RUN else None)
long = pd.concat([img_meta.assign(x=lay[:, 0], y=lay[:, 1], version=v)
                  for v, lay in zip(VERSIONS, layouts)], ignore_index=True)
palette = dict(zip(classes, sns.color_palette("husl", len(classes))))
shapes = dict(zip(DOMAINS, "o^sD"))
fig, axes = plt.subplots(1, len(VERSIONS), figsize=(4.0 * len(VERSIONS), 4.2), sharex=True,
                         sharey=True)
for ax, v in zip(axes, VERSIONS):
    if v != OLD:  # v1's layout underneath, so that what moved stands out
        ax.scatter(layouts[0][:, 0], layouts[0][:, 1], s=6, color="0.85", lw=0, zorder=1)
    sub = long[long.version == v]
    for domain, part in sub.groupby("domain", sort=False):
        ax.scatter(part.x, part.y, c=[palette[c] for c in part["class"]], marker=shapes[domain],
                   s=8, edgecolor="none", alpha=0.6, zorder=2)
    ax.set_title(v)
    ax.set_xticks([])
    ax.set_yticks([])
handles = [plt.Line2D([], [], ls="", marker="o", color=palette[c], label=c) for c in classes]
handles += [plt.Line2D([], [], ls="", marker=shapes[d], color="0.4", mec="none", ms=5,
                       label=f"{d} image") for d in DOMAINS]
handles.append(plt.Line2D([], [], ls="", marker="o", color="0.85", label=f"{OLD} (under updates)"))
fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
           ncol=2 if len(handles) > 12 else 1, frameon=False)
fig.suptitle(f"one UMAP of the images in all three versions, each rotated onto {OLD} "
             "(Procrustes)", y=1.0)
fig.tight_layout()
plots.save(fig, "06_umap_drift")
plt.show()

# %% [markdown]
# ## Per-class drift
#
# UMAP bends distances, so the drift of each class is drawn in a linear map instead: the
# centroid of each class's images (and its class prompt) in v1 and in each update (rotated onto
# v1 as above), projected by one PCA fitted to all versions' image centroids. Each arrow runs
# from the class's place in v1 to its place in the update; a long arrow is a class that moved.

# %%
# class centroids in the full space, after rotating each update onto v1 (nothing but a change of
# basis is removed), projected by one PCA fitted to all versions' image centroids: a linear
# map, so an arrow's length is the real displacement seen from that plane
aligned = {OLD: analysis.procrustes_align(emb[OLD], emb[OLD])[0]}
aligned |= {u: analysis.procrustes_align(emb[OLD], emb[u])[1] for u in UPDATES}
cent = {v: pd.DataFrame(a).groupby([meta.kind.to_numpy(), meta["class"].to_numpy()]).mean()
        for v, a in aligned.items()}
pca = PCA(2).fit(np.vstack([c.loc["image"].to_numpy() for c in cent.values()]))
xy = {v: {k: pca.transform(c.loc[k].reindex(classes).to_numpy()) for k in ("image", "class prompt")}
      for v, c in cent.items()}
colours = [palette[c] for c in classes]
fig, axes = plt.subplots(1, len(UPDATES), figsize=(5.4 * len(UPDATES), 5.0), sharex=True,
                         sharey=True, squeeze=False)
for ax, upd in zip(axes[0], UPDATES):
    plots.drift_arrows(ax, xy[OLD]["image"], xy[upd]["image"], colours)
    plots.drift_arrows(ax, xy[OLD]["class prompt"], xy[upd]["class prompt"], colours, width=0.7)
    ax.scatter(*xy[OLD]["image"].T, s=14, c=colours, edgecolor="k", lw=0.4, zorder=5)
    ax.scatter(*xy[OLD]["class prompt"].T, marker="*", s=70, c=colours, edgecolor="k",
               lw=0.4, zorder=5)
    ax.set_title(f"{OLD} → {upd}")
    ax.set_xlabel(f"PC1 ({100 * pca.explained_variance_ratio_[0]:.0f}% of centroid variance)")
    plots.label_points(ax, *xy[upd]["image"].T, classes, fontsize=6, colours=colours)
axes[0][0].set_ylabel(f"PC2 ({100 * pca.explained_variance_ratio_[1]:.0f}%)")
fig.legend(handles=[
    plt.Line2D([], [], color="0.3", marker="o", mec="k", lw=1.2,
               label=f"class images: centroid from ● ({OLD}) to the arrow's head"),
    plt.Line2D([], [], color="0.3", marker="*", mec="k", ms=9, lw=0.7,
               label="class prompt: from ★ to the arrow's head")], fontsize=8, ncol=2,
    loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False)
fig.suptitle(f"per-class drift from {OLD} (each update rotated onto it, one PCA)", y=1.0)
fig.tight_layout()
plots.save(fig, "06_drift_segments")
plt.show()

# %% [markdown]
# ## Follow one class (interactive)
#
# Pick a class or a domain to highlight it in every version. The static figure above is what
# a papermill or nbval run keeps; the control needs a live kernel.

# %%
def highlight(selection):
    fig, axes = plt.subplots(1, len(VERSIONS), figsize=(3.2 * len(VERSIONS), 3), sharex=True,
                             sharey=True)
    chosen = ((img_meta["class"] == selection) | (img_meta["domain"] == selection)).to_numpy()
    for ax, v, lay in zip(axes, VERSIONS, layouts):
        ax.scatter(lay[:, 0], lay[:, 1], s=4, c="lightgrey")
        ax.scatter(lay[chosen, 0], lay[chosen, 1], s=12, c="crimson")
        ax.set_title(v)
    fig.suptitle(f"highlighted: {selection}")
    plt.show()


choice = widgets.Dropdown(options=list(classes) + list(DOMAINS), description="follow")
plots.interactive(highlight, "the class or domain to follow", selection=choice)

# %% [markdown]
# ## Does drift predict which classes lose their prompts?
#
# CoOp prompts trained on v1 (all classes of the task, 16 shots, one run per seed) are attached
# to each update without retraining. Per class, *compatibility gain* = accuracy of the update
# with v1's prompts minus the update's own zero-shot accuracy, averaged over the seeds
# (notebook 07 does this for every method).
# Per-class drift = mean k-NN overlap of that class's test images between v1 and the update
# (lower = more drift), measured on all classes.

# %%
from cliptune import train

# CoOp's paper recipe, the config notebooks 02 and 07 build: their checkpoints are loaded here
COMPAT_TRAIN = train.recipe("coop", SHOTS, 3 if FAST_DEV_RUN else None)
coops = {seed: protocols.train_method("coop", zoo[OLD],
                                      data.few_shot(data.tiny(TASK, "train"), SHOTS, seed),
                                      seed, COMPAT_TRAIN)[0] for seed in SEEDS}
photo = data.tiny(TASK, "test")
rows, per_class = [], []
for upd in UPDATES:
    clip = zoo[upd]
    zs = methods.create("zero-shot", clip, ensemble=False).attach(clip, photo.classnames,
                                                                  photo.templates)
    acc_zs = evaluate.per_class_accuracy(zs, photo)
    gains = []  # seeds x classes
    for seed, coop in coops.items():
        coop.attach(clip, photo.classnames, photo.templates)
        gains.append(evaluate.per_class_accuracy(coop, photo) - acc_zs)
        rows.append({"method": "coop", "dataset": TASK, "shots": SHOTS, "seed": seed,
                     "train_model": OLD, "eval_model": upd, "split": "test",
                     "metric": "mean compatibility gain", "value": float(gains[-1].mean())})
    gain = torch.stack(gains).mean(0)
    # the normalised features the evaluations above already cached
    x = features.image_features(zoo[OLD], photo).cpu()
    y = features.image_features(clip, photo).cpu()
    overlap = analysis.knn_overlap(x, y, K, per_point=True)
    for c, name in enumerate(photo.classnames):
        m = photo.labels == c
        per_class.append({"version": upd, "class": name, "gain": float(gain[c]),
                          "knn_overlap": float(overlap[m].mean())})
pc = pd.DataFrame(per_class)
corr = {u: stats.spearmanr(d.knn_overlap, d.gain) for u, d in pc.groupby("version")}
for u, r in corr.items():  # seed 0: of the gain averaged over the seeds (none of them is 0)
    rows.append({"method": "coop", "dataset": TASK, "shots": SHOTS, "seed": 0,
                 "train_model": OLD, "eval_model": u, "split": "per-class",
                 "metric": "spearman(knn_overlap, gain)", "value": float(r.statistic)})
results.record("06_embedding_drift", {"experiment": "drift-vs-gain", "task": TASK,
                                      "shots": SHOTS, "seeds": SEEDS, "fast": FAST_DEV_RUN}, rows)
fig, axes = plt.subplots(1, len(UPDATES), figsize=(5.0 * len(UPDATES), 4.2), sharex=True,
                         sharey=True, squeeze=False)
for ax, upd in zip(axes[0], UPDATES):
    d = pc[pc.version == upd]
    sns.regplot(data=d, x="knn_overlap", y="gain", ax=ax, scatter_kws=dict(s=12, alpha=0.7),
                line_kws=dict(color="black", lw=1), label="one class",
                seed=0)  # the band is a bootstrap: seeded, so the figure is the same each run
    ax.lines[-1].set_label("least-squares fit (band: 95% CI)")
    ax.axhline(0, color="0.5", lw=0.8, ls=":", label="no gain over zero-shot")
    ax.set_title(f"{upd}: Spearman r = {corr[upd].statistic:+.2f}", fontsize=10)
    ax.set_xlabel("")
    ax.set_ylabel("")
    # name only the classes that gained or lost most: every name would pile up
    ends = pd.concat([d.nsmallest(3, "gain"), d.nlargest(2, "gain")])
    plots.label_points(ax, ends.knn_overlap, ends.gain, ends["class"], fontsize=7)
axes[0][0].set_ylabel("compatibility gain (points)")
n_classes = pc.groupby("version").size().max()
fig.suptitle(f"v1's CoOp on each update: per-class gain against drift ({n_classes} classes, "
             f"photo test images; gain averaged over {len(SEEDS)} seed(s))", fontsize=10)
fig.supxlabel("per-class k-NN overlap of the images, v1 vs the update (higher = less drift)",
              fontsize=10, y=0.02)
fig.tight_layout()
# one legend under both panels, where it hides no point
fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=8, ncol=3, frameon=False,
           loc="upper center", bbox_to_anchor=(0.5, 0.0))
plots.save(fig, "06_drift_vs_gain")
plt.show()

# %%
kept = {}  # each update's mean per-class gain: where v1's prompts lose least
for u, r in corr.items():
    kept[u] = pc[pc.version == u].gain.mean()
    mean_overlap = pc[pc.version == u].knn_overlap.mean()
    print(f"{u}: mean per-class k-NN overlap {mean_overlap:.2f} (all {pc[pc.version == u].shape[0]} "
          f"classes, photo test images, k = {K} among them), mean CoOp compatibility gain "
          f"{kept[u]:+.1f} points, Spearman r(overlap, gain) = {r.statistic:+.2f} "
          f"(p = {r.pvalue:.2g}, {len(pc[pc.version == u])} classes)")
subset_knn = drift[(drift.method == "drift") & (drift.metric == "knn_overlap")].set_index(
    "eval_model").value
all_knn = pc.groupby("version").knn_overlap.mean()
if len(UPDATES) > 1 and max(UPDATES, key=subset_knn.get) != max(UPDATES, key=all_knn.get):
    print(f"On the {len(classes)}-class {' and '.join(DOMAINS)} subset of the drift table, "
          f"{max(UPDATES, key=subset_knn.get)} keeps more of v1's neighbours; on all the classes' "
          f"photos {max(UPDATES, key=all_knn.get)} does. A k-NN overlap depends on which images "
          "can be neighbours, so each ordering holds for its own set of images only.")
if len(kept) > 1:
    best_kept = max(kept, key=kept.get)
    print(f"v1's prompts lose least on {best_kept}; the text side stayed closest to {OLD}'s in "
          f"{closer} (prompt CKA above): "
          + ("the closer text side went with the smaller loss" if best_kept == closer else
             "a closer text side did NOT go with a smaller loss in this world: how close the "
             "update's text features stay does not, alone, tell how well a prompt survives"))

# %% [markdown]
# **Reading.** The continued update's text tower starts from v1's and is trained further, with
# a new vision tower; the retrained one shares nothing; the drift numbers above say how differently each one arranges
# the same images. The per-class correlation is printed with its p-value: a weak or
# non-significant correlation means that, in this world, how far a class's images move
# between versions says little about whether v1's prompts still work for it. The printed
# comparison under it says whether the text side's closeness does instead; notebook 07
# measures every method on both updates.

# %% [markdown]
# ## What v1's training wrote into the context, read by each update
#
# A CoOp prompt is four context vectors in v1's token-embedding space, started from the
# embeddings of "a photo of a". Plugged into an update, the vectors are read by that update's
# text tower. Two paired comparisons per update separate what the *starting* vectors cost from
# what v1's *training* of them does there: CoOp before any training (v1's "a photo of a"
# vectors) against the update's own zero-shot, and the trained CoOp against the untrained one.
# On `tiny-v1` itself the second comparison is CoOp's gain. An update that reads v1's vectors
# as v1 did keeps the gain; one that reads them as unrelated vectors changes little either way;
# one that reads them, but differently, can turn what training wrote into a loss.

# %%
untrained = methods.create("coop", zoo[OLD])  # the context CoOp starts from, never trained
context_rows = []
for name in VERSIONS:
    clip = zoo[name]
    zs_n = methods.create("zero-shot", clip, ensemble=False)
    runs = [("zero-shot", SEEDS[0], zs_n), ("coop-untrained", SEEDS[0], untrained)]
    runs += [("coop", seed, m) for seed, m in coops.items()]
    for label, seed, module in runs:
        context_rows.append({"method": label, "dataset": TASK, "shots": SHOTS, "seed": seed,
                             "train_model": OLD if label != "zero-shot" else name,
                             "eval_model": name, "split": "test", "domain": "photo",
                             "metric": "top1", **protocols.score(module, clip, photo)})
context_config = {"experiment": "context-reading", "task": TASK, "shots": SHOTS,
                  "seeds": SEEDS, "versions": VERSIONS, "fast": FAST_DEV_RUN}
results.record("06_embedding_drift", context_config, context_rows)
context_v = results.load("06_embedding_drift", hashes=[results.config_hash(context_config)],
                         correct=True)
reading = {}
for name in VERSIONS:
    start = compare.compare_methods(context_v, "coop-untrained", "zero-shot", eval_model=name)
    learnt = compare.compare_methods(context_v, "coop", "coop-untrained", eval_model=name)
    reading[name] = learnt
    print(f"{name}: v1's starting context vs the model's zero-shot {start.interval()} "
          f"({start.verdict}); v1's trained context vs its starting one {learnt.interval()} "
          f"({learnt.verdict})")
what = {compare.WORSE: "costs accuracy there: that tower reads the trained vectors, but not as "
        f"{OLD} did",
        compare.NO_DIFFERENCE: "makes no detectable difference there: that tower reads v1's "
        "vectors alike, trained or not",
        compare.BETTER: "still helps there: part of the gain carries over"}
for u in UPDATES:
    print(f"On {u}, what training on {OLD} wrote into the context ({reading[u].difference:+.1f}) "
          + what[reading[u].verdict] + ".")

# %% [markdown]
# ## Claims table
#
# ContCoOp's starting point (`cliptune/paper_claims.json`): prompts learned on the old CLIP
# lose their gain on an upgraded one. The paired comparison below plugs the CoOp prompts
# trained above into each update and compares them, image by image, with that update's own
# zero-shot, paired by seed and test image (0.95-level bootstrap interval over test images and
# seeds). The claim is about an update trained independently of the old model, so the table
# tests it on the retrained update; the continued update, which keeps v1's text tower, is
# printed under the table as the same comparison beyond the claim.

# %%
from cliptune import claims  # noqa: E402  (only the claims cell uses it)

claim_v = context_v  # the section above scored zero-shot and v1's CoOp on every version
RETRAINED = [u for u in UPDATES if models.ZOO[u].text_from is None]  # shares nothing with v1
entries, beyond = [], []
for upd in UPDATES:
    c = compare.compare_methods(claim_v, "coop", "zero-shot", eval_model=upd)
    ov = pc[pc.version == upd].knn_overlap.mean()
    why = (f"on {upd}: mean per-class k-NN overlap with v1 {ov:.2f}; "
           f"Spearman r(overlap, gain) {corr[upd].statistic:+.2f}")
    if upd in RETRAINED:
        entries.append(("coop_gain_lost_on_retrained", c, why))
    else:
        beyond.append(f"beyond the claim, on {upd} (text tower continued from v1): v1's CoOp "
                      f"vs the update's zero-shot {c.interval()}, {c.verdict}; {why}")
claims_06 = claims.table(entries, notebook="06")
claims.show(claims_06)
print("\n".join(beyond))

# %% [markdown]
# ## Where this run wrote

# %%
runtime.report_outputs("06_embedding_drift")
