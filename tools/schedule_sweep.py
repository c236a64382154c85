"""Does a training schedule reach a plateau? Schedules tried on the training objective alone.

    python tools/schedule_sweep.py --methods ft,lp-ft,flyp,arf --steps 500,1000 --lr 1e-3
    python tools/schedule_sweep.py --methods linear-probe-zs --shots 1,4,16 --epochs 200,500 \\
        --lr 1e-2,1e-1 --task objects

Without ``--shots``: notebook 05's fine-tuning recipe (AdamW, weight decay 0.1, batch 64, 10
linear warm-up steps, cosine decay, gradient clipping at 1) for each step count, on the whole
training split. With ``--shots``: a few-shot method on a K-shot draw of the training split,
with its ``train.recipe`` (batch, optimiser, warm-up, weight decay) except for the epochs and
learning rate tried. Each run trains one seed and prints its convergence summary
(`cliptune.convergence.summarise`, tail by summed learning rate). It never evaluates on a test
split: a schedule is chosen as the shortest on which every method plateaus, from the training
objective only. Nothing is written to disk.
"""
import argparse
import dataclasses
import itertools
import time

import pandas as pd

from cliptune import convergence, data, methods, models, train


def floats(text):
    return [float(v) for v in text.split(",")] if text else []


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--methods", default="ft,lp-ft,flyp,arf")
parser.add_argument("--steps", default="500,1000", help="comma-separated step counts (no --shots)")
parser.add_argument("--shots", default="", help="comma-separated shots per class: few-shot runs")
parser.add_argument("--epochs", default="", help="comma-separated epochs (with --shots; default "
                                                 "the method's recipe)")
parser.add_argument("--lr", default="", help="comma-separated learning rates (default 1e-3, or "
                                             "the method's recipe with --shots)")
parser.add_argument("--task", default="textures")
parser.add_argument("--model", default="tiny-v1")
parser.add_argument("--seed", type=int, default=1)
args = parser.parse_args()

clip = models.load_clip(args.model, train_if_missing=False)
full = data.tiny(args.task, "train")


def configs(name):
    """(train set, label, TrainConfig) for every schedule to try for method ``name``."""
    if not args.shots:
        for steps, lr in itertools.product(map(int, args.steps.split(",")),
                                           floats(args.lr) or [1e-3]):
            yield full, {"steps": steps, "lr": lr}, train.finetune_config(len(full), steps, lr,
                                                                          seed=args.seed)
        return
    for shots in map(int, args.shots.split(",")):
        base = train.recipe(name, shots)
        if base is None:
            raise SystemExit(f"{name} has no training recipe (it trains nothing): drop it")
        ts = data.few_shot(full, shots, args.seed)
        for epochs, lr in itertools.product(floats(args.epochs) or [base.epochs],
                                            floats(args.lr) or [base.lr]):
            cfg = dataclasses.replace(base, epochs=int(epochs), lr=lr, seed=args.seed)
            yield ts, {"shots": shots, "epochs": int(epochs), "lr": lr}, cfg


rows = []
for name in args.methods.split(","):
    for train_set, label, cfg in configs(name):
        method = methods.create(name, clip)
        method.attach(clip, train_set.classnames, train_set.templates)
        t0 = time.time()
        history = train.fit(method, train_set, cfg, progress=False)
        rows.append({"method": name, **label, "seconds": round(time.time() - t0),
                     **convergence.summarise(history, by="lr")})
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
