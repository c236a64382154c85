# %% [markdown]
# # 06 · Embedding drift across CLIP versions
#
# **What you will learn.** What changes in the embedding space when CLIP is updated: the same
# images and class prompts embedded by `tiny-v1` and by its two updates, laid out side by side
# with aligned UMAP; drift measured with rotation-invariant numbers (linear CKA, orthogonal
# Procrustes residual, k-NN overlap) per class and per domain; and whether the classes that
# drift most are the ones where prompts trained on v1 stop working on the update.
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
SHOTS, SEED = 16, 1  # the CoOp prompts whose per-class compatibility is compared with drift
params.declare(globals())  # the next cell checks every value above

# %%
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from scipy import stats

from cliptune import analysis, data, evaluate, methods, models, plots, protocols, results, runtime

FAST_DEV_RUN = params.setup(globals())  # checks the parameters, prints the mode and outputs
if FAST_DEV_RUN:
    N_CLASSES, DOMAINS = 6, ("photo",)
plots.style()
VERSIONS = (OLD,) + tuple(UPDATES)
zoo = {name: models.load_clip(name) for name in VERSIONS}

# %% [markdown]
# ## The points
#
# Test images of a subset of the classes in each domain, plus one class prompt
# ("a photo of a {class}.") per class. Row *i* is the same input in every version, which is
# what lets aligned UMAP tie the layouts together (identity relations).

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
        "class-token cosine to v1": float(torch.nn.functional.cosine_similarity(
            e_old, e_new, dim=-1).mean())})
sides = pd.DataFrame(side_rows).set_index("update")
display(sides.round(3))
a, b = UPDATES
for side in ("image", "prompt"):
    more = a if sides.loc[a, f"{side} CKA"] < sides.loc[b, f"{side} CKA"] else b
    print(f"{side} side: {more} drifts more from {OLD} "
          f"(CKA {sides.loc[a, side + ' CKA']:.3f} for {a} vs {sides.loc[b, side + ' CKA']:.3f} "
          f"for {b}; lower = more drift)")
print(f"class-name token embeddings: cosine to {OLD} of {sides.loc[a, 'class-token cosine to v1']:.3f}"
      f" ({a}, which started from them) vs {sides.loc[b, 'class-token cosine to v1']:.3f} ({b}, "
      "which shares nothing but the tokenizer)")
closer = max(UPDATES, key=lambda u: sides.loc[u, "prompt CKA"])
print(f"The totals above mix both sides. Its text side stayed closer to {OLD}'s in {closer}: "
      "that is the side a learned prompt was tuned against, so notebook 07 expects prompts to "
      "survive better there, whatever the image side did.")

# %% [markdown]
# ## Aligned UMAP of the three versions
#
# One panel per version on shared axes; colour = class, marker = domain (crosses are the
# class prompts). AlignedUMAP keeps each panel faithful to its own version's neighbourhoods
# while pulling the same point to similar places across panels, so what moves is what
# changed. A fixed `random_state` makes the layout reproducible.

# %%
layouts = analysis.aligned_umap([emb[v].numpy() for v in VERSIONS], n_neighbors=N_NEIGHBORS,
                                random_state=UMAP_SEED, n_epochs=60 if FAST_DEV_RUN else None)
long = pd.concat([meta.assign(x=lay[:, 0], y=lay[:, 1], version=v)
                  for v, lay in zip(VERSIONS, layouts)], ignore_index=True)
long["marker"] = long["domain"]
g = sns.relplot(data=long, x="x", y="y", hue="class", style="marker", col="version",
                kind="scatter", s=18, height=3.6, aspect=1.0,
                facet_kws=dict(sharex=True, sharey=True), legend="brief")
g.set_titles("{col_name}")
plots.save(g.figure, "06_aligned_umap")
plt.show()

# %% [markdown]
# ## Per-point drift
#
# Each segment joins a point's place in v1's panel to its place in an update's panel (same
# aligned coordinates). Long segments are points whose neighbourhood changed.

# %%
fig, axes = plt.subplots(1, len(UPDATES), figsize=(4.2 * len(UPDATES), 4), sharex=True,
                         sharey=True, squeeze=False)
palette = dict(zip(classes, sns.color_palette("husl", len(classes))))
for ax, upd, lay in zip(axes[0], UPDATES, layouts[1:]):
    start = layouts[0]
    for i in range(len(meta)):
        ax.plot([start[i, 0], lay[i, 0]], [start[i, 1], lay[i, 1]], lw=0.6, alpha=0.6,
                color=palette[meta["class"][i]])
    ax.scatter(lay[:, 0], lay[:, 1], s=5, c=[palette[c] for c in meta["class"]])
    ax.set_title(f"{OLD} -> {upd}")
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
    chosen = (meta["class"] == selection) | (meta["domain"] == selection)
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
# CoOp prompts trained on v1 (all classes of the task, 16 shots) are attached to each update
# without retraining. Per class, *compatibility gain* = accuracy of the update with v1's
# prompts minus the update's own zero-shot accuracy (notebook 07 does this for every method).
# Per-class drift = mean k-NN overlap of that class's test images between v1 and the update
# (lower = more drift), measured on all classes.

# %%
from cliptune import train

COMPAT_TRAIN = train.TrainConfig(epochs=2 if FAST_DEV_RUN else 20, batch_size=32, lr=2e-3)
train_set = data.few_shot(data.tiny(TASK, "train"), SHOTS, SEED)
coop, _ = protocols.train_method("coop", zoo[OLD], train_set, SEED, COMPAT_TRAIN)
photo = data.tiny(TASK, "test")
rows, per_class = [], []
for upd in UPDATES:
    clip = zoo[upd]
    zs = methods.create("zero-shot", clip, ensemble=False).attach(clip, photo.classnames,
                                                                  photo.templates)
    acc_zs = evaluate.per_class_accuracy(zs, photo)
    coop.attach(clip, photo.classnames, photo.templates)
    acc_coop = evaluate.per_class_accuracy(coop, photo)
    x = torch.cat([zoo[OLD].encode_images(photo.raw(range(len(photo))))]).cpu()
    y = clip.encode_images(photo.raw(range(len(photo)))).cpu()
    overlap = analysis.knn_overlap(x, y, K, per_point=True)
    for c, name in enumerate(photo.classnames):
        m = photo.labels == c
        per_class.append({"version": upd, "class": name, "gain": float(acc_coop[c] - acc_zs[c]),
                          "knn_overlap": float(overlap[m].mean())})
pc = pd.DataFrame(per_class)
corr = {u: stats.spearmanr(d.knn_overlap, d.gain) for u, d in pc.groupby("version")}
for u, r in corr.items():
    rows.append({"method": "coop", "dataset": TASK, "shots": SHOTS, "seed": SEED,
                 "train_model": OLD, "eval_model": u, "split": "per-class",
                 "metric": "spearman(knn_overlap, gain)", "value": float(r.statistic)})
    rows.append({"method": "coop", "dataset": TASK, "shots": SHOTS, "seed": SEED,
                 "train_model": OLD, "eval_model": u, "split": "test",
                 "metric": "mean compatibility gain", "value": float(pc[pc.version == u].gain.mean())})
results.record("06_embedding_drift", {"experiment": "drift-vs-gain", "task": TASK,
                                      "shots": SHOTS, "seed": SEED, "fast": FAST_DEV_RUN}, rows)
g = sns.lmplot(data=pc, x="knn_overlap", y="gain", col="version", height=3.4,
               scatter_kws=dict(s=12), line_kws=dict(color="black", lw=1))
g.set_axis_labels("per-class k-NN overlap v1 vs update (higher = less drift)",
                  "compatibility gain (points)")
plots.save(g.figure, "06_drift_vs_gain")
plt.show()

# %%
for u, r in corr.items():
    mean_gain = pc[pc.version == u].gain.mean()
    mean_overlap = pc[pc.version == u].knn_overlap.mean()
    print(f"{u}: mean k-NN overlap {mean_overlap:.2f}, mean CoOp compatibility gain "
          f"{mean_gain:+.1f} points, Spearman r(overlap, gain) = {r.statistic:+.2f} "
          f"(p = {r.pvalue:.2g}, {len(pc[pc.version == u])} classes)")

# %% [markdown]
# **Reading.** The continued update shares v1's text tower but has a new vision tower, the
# retrained one shares nothing; the drift numbers above say how differently each one arranges
# the same images. The per-class correlation is printed with its p-value: a weak or
# non-significant correlation means that, in this world, how far a class's images move
# between versions says little about whether v1's prompts still work for it; what matters
# more is whether the text side the prompts were tuned against changed (notebook 07).

# %% [markdown]
# ## Claims table
#
# ContCoOp's starting point (`cliptune/paper_claims.json`): prompts learned on the old CLIP
# lose their gain on an upgraded one. The paired comparison below plugs the CoOp prompts
# trained above into each update and compares them, image by image, with that update's own
# zero-shot (0.95-level bootstrap interval over test images; this notebook trains one seed, so the
# interval says nothing about other training runs: notebook 07 runs three).

# %%
from cliptune import claims, compare, results  # noqa: E402  (the claims cell stands alone)

claim_rows = []
for upd in UPDATES:
    zs_u = methods.create("zero-shot", zoo[upd], ensemble=False)
    for label, module in (("zero-shot", zs_u), ("coop", coop)):
        claim_rows.append({"method": label, "dataset": TASK, "shots": SHOTS, "seed": SEED,
                           "train_model": OLD if label == "coop" else upd, "eval_model": upd,
                           "split": "test", "domain": "photo", "metric": "top1",
                           **protocols.score(module, zoo[upd], photo)})
claim_config = {"experiment": "claims", "task": TASK, "shots": SHOTS, "seed": SEED,
                "updates": UPDATES, "fast": FAST_DEV_RUN}
results.record("06_embedding_drift", claim_config, claim_rows)
claim_v = results.load("06_embedding_drift", hashes=[results.config_hash(claim_config)],
                       correct=True)
entries = []
for upd in UPDATES:
    c = compare.compare_methods(claim_v, "coop", "zero-shot", eval_model=upd)
    ov = pc[pc.version == upd].knn_overlap.mean()
    entries.append(("coop_gain_lost_on_retrained", c,
                    f"on {upd}: mean per-class k-NN overlap with v1 {ov:.2f}; "
                    f"Spearman r(overlap, gain) {corr[upd].statistic:+.2f}"))
claims_06 = claims.table(entries, notebook="06")
claims.show(claims_06)

# %% [markdown]
# ## Where this run wrote

# %%
runtime.report_outputs("06_embedding_drift")
