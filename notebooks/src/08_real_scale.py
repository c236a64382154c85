# %% [markdown]
# # 08 · At paper scale: real open_clip weights and CoOp-format datasets
#
# **What you will learn.** How to run the compatibility analysis of notebook 07 with real CLIP
# generations, e.g. OpenAI ViT-B/16 → EVA02-B/16 (whose text tower starts from OpenAI's) and
# → LAION ViT-B/16, on datasets you already have in the CoOp layout (`$DATA/<dataset>/...`
# with `split_zhou_*.json`).
#
# Nothing here is downloaded: open_clip's cache must hold the weights and `$DATA` the images.
# When they are missing the notebook says exactly what is missing and how to get it, and
# skips the experiment. With `SMOKE_WITH_RANDOM_WEIGHTS` (on in the test suite) it runs the
# same code on randomly initialised ViT-B-16 towers and a small fabricated CoOp-format folder,
# so the real-model path is exercised everywhere; those numbers mean nothing.
#
# **Run time.** With weights and data: CoOp-style methods need minutes per dataset on a GPU
# (hours on a CPU). Skipped: seconds. Smoke: random ViT-B-16 towers trained for two steps.

# %% tags=["parameters"]
from cliptune import params

FAST_DEV_RUN = None  # None: CLIPTUNE_FAST_DEV_RUN decides; True or False: this run decides
MODEL_OLD = ("ViT-B-16-quickgelu", "openai")
MODELS_NEW = (("EVA02-B-16", "merged2b_s8b_b131k"), ("ViT-B-16", "laion2b_s34b_b88k"))
DATA_ROOT = None  # None: the DATA environment variable, else data/coop
DATASETS = ("dtd", "eurosat", "oxford_pets", "caltech101")
SHOTS = 16
SEEDS = (1, 2, 3)
METHODS = ("coop", "contcoop", "kgcoop", "clip-adapter", "tip-adapter")
SMOKE_WITH_RANDOM_WEIGHTS = False
params.declare(globals())  # the next cell checks every value above

# %%
import dataclasses
import json
import pathlib
import tempfile

import numpy as np
import pandas as pd
from IPython.display import display
from PIL import Image

from cliptune import data, methods, models, protocols, results, runtime, train, world

FAST_DEV_RUN = params.setup(globals())  # checks the parameters, prints the mode and outputs
SMOKE = SMOKE_WITH_RANDOM_WEIGHTS or FAST_DEV_RUN
print("data root:", runtime.display_path(data.data_root(DATA_ROOT)))

# %% [markdown]
# ## What is available here?

# %%
def try_load(name, tag):
    try:
        return models.load_clip(name, tag)
    except (models.WeightsNotCachedError, KeyError, ImportError) as err:
        print(f"missing {name} / {tag}:\n  {str(err)[:500]}\n")
        return None


def try_data(name):
    try:
        return data.coop(name, "train", DATA_ROOT), data.coop(name, "test", DATA_ROOT)
    except (FileNotFoundError, data.DatasetError) as err:
        print(f"missing dataset {name}: {err}\n")
        return None


old = try_load(*MODEL_OLD)
new = {f"{n}:{t}": try_load(n, t) for n, t in MODELS_NEW}
datasets = {name: try_data(name) for name in DATASETS}
READY = old is not None and all(new.values()) and any(datasets.values())
print("real experiment:", "runs" if READY else "skipped (see the messages above)")

# %% [markdown]
# ## The smoke path: random ViT-B-16 towers on a fabricated folder
#
# Only when the real inputs are missing and `SMOKE_WITH_RANDOM_WEIGHTS` (or the test suite's
# fast mode) asks for it. A three-class folder in DTD's CoOp layout is written to a
# temporary directory from tiny-world renders, and two randomly initialised ViT-B-16 models
# stand in for the old and the new CLIP (same widths, so modules can move between them).

# %%
if not READY and SMOKE:
    root = pathlib.Path(tempfile.mkdtemp())
    split = {"train": [], "val": [], "test": []}
    for label, shape in enumerate(("circle", "square", "star")):
        (root / "dtd" / "images" / shape).mkdir(parents=True)
        for i in range(6):
            rel = f"{shape}/{i}.png"
            img = world.render(world.Scene(shape, "red"), i)
            Image.fromarray(img).resize((64, 64)).save(root / "dtd" / "images" / rel)
            split[("train", "train", "train", "val", "test", "test")[i]].append([rel, label, shape])
    (root / "dtd" / "split_zhou_DescribableTextures.json").write_text(json.dumps(split))
    DATA_ROOT, DATASETS, SEEDS, SHOTS = root, ("dtd",), (1,), 2
    METHODS = ("coop", "contcoop", "clip-adapter")
    datasets = {"dtd": (data.coop("dtd", "train", root), data.coop("dtd", "test", root))}
    old = models.load_clip("ViT-B-16", None)
    new = {"ViT-B-16:random-2": models.load_clip("ViT-B-16", None)}
    READY = True
    print("smoke run on a fabricated DTD folder (a temporary directory)")

# %% [markdown]
# ## The analysis (same protocol as notebook 07)
#
# Each method trains with the recipe notebooks 02, 03 and 07 use (`train.recipe`: its paper's,
# else the workbook's own) on the old model, and is then evaluated on every model.

# %%
def recipe(method):
    """The method's recipe, as in notebook 07; a smoke run only checks that every step runs."""
    cfg = train.recipe(method, SHOTS) or train.TrainConfig()
    if SMOKE:
        cfg = dataclasses.replace(cfg, epochs=1, max_steps=2, batch_size=4, n_views=1)
    return cfg


rows = []
if READY:
    for name, pair in datasets.items():
        if pair is None:
            continue
        train_full, test = pair
        for key, clip in [(old.key, old)] + list(new.items()):
            zs = methods.create("zero-shot", clip, ensemble=False)
            rows.append({"method": "zero-shot", "dataset": name, "seed": 0, "train_model": "-",
                         "eval_model": key, "split": "test", "metric": "top1",
                         "value": protocols.evaluate_on(zs, clip, test)})
        for seed in SEEDS:
            train_set = data.few_shot(train_full, SHOTS, seed)
            for method in METHODS:
                module, _ = protocols.train_method(method, old, train_set, seed, recipe(method))
                for key, clip in [(old.key, old)] + list(new.items()):
                    rows.append({"method": method, "dataset": name, "shots": SHOTS,
                                 "seed": seed, "train_model": old.key, "eval_model": key,
                                 "split": "test", "metric": "top1",
                                 "value": protocols.evaluate_on(module, clip, test)})
    results.record("08_real_scale", {"old": MODEL_OLD, "new": MODELS_NEW, "datasets": DATASETS,
                                     "smoke": SMOKE, "shots": SHOTS, "seeds": SEEDS}, rows)
    df = pd.DataFrame(rows)
    display(df.pivot_table(index=["dataset", "method"], columns="eval_model", values="value"))
else:
    print("skipped: weights or data missing (see above)")

# %% [markdown]
# **Reading.** With real inputs, the table holds three accuracies per dataset and update:
# (a) a method trained on the old model, evaluated on the old model (its row, the old model's
# column); (b) the update's own zero-shot accuracy (the zero-shot row, the update's column);
# (c) the same trained method plugged into the update without retraining (its row, the
# update's column). The compatibility gain is (c) − (b), as in notebook 07: what the old
# module adds on top of the update's own zero-shot; (a) says how much it gave on the model it
# was trained on. A smoke run's numbers come from random weights and only show that every
# step runs.
#
# **Getting the inputs.** On a machine with network access, fill open_clip's cache once, e.g.
# `python -c "import open_clip; open_clip.create_model('EVA02-B-16', pretrained='merged2b_s8b_b131k')"`
# (EVA02 needs `timm`), and put the datasets in the CoOp layout under `$DATA` (CoOp's
# DATASETS.md lists the folders and split files). Then run
# `papermill notebooks/08_real_scale.ipynb out.ipynb -k cliptune --cwd notebooks -p DATA_ROOT /path/to/data`.

# %% [markdown]
# ## Where this run wrote

# %%
runtime.report_outputs("08_real_scale")
