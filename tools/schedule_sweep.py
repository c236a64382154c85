"""Does a fine-tuning schedule reach a plateau? Notebook 05's schedule, tried on the training
objective alone.

    python tools/schedule_sweep.py --methods ft,lp-ft,flyp,arf --steps 500,1000 --lr 1e-3

Trains each method on notebook 05's task and recipe (AdamW, weight decay 0.1, batch 64, 10
linear warm-up steps, cosine decay, gradient clipping at 1) for each step count, one seed, and
prints the convergence summary of each run (`cliptune.convergence.summarise`, tail by summed
learning rate). It never evaluates on a test split: the schedule is chosen as the shortest on
which every method plateaus, from the training objective only. Nothing is written to disk.
"""
import argparse
import time

import pandas as pd

from cliptune import convergence, data, methods, models, train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--methods", default="ft,lp-ft,flyp,arf")
parser.add_argument("--steps", default="500,1000", help="comma-separated step counts")
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--task", default="textures")
parser.add_argument("--model", default="tiny-v1")
parser.add_argument("--seed", type=int, default=1)
args = parser.parse_args()

clip = models.load_clip(args.model, train_if_missing=False)
train_set = data.tiny(args.task, "train")
rows = []
for name in args.methods.split(","):
    for steps in (int(s) for s in args.steps.split(",")):
        cfg = train.finetune_config(len(train_set), steps, args.lr, seed=args.seed)
        method = methods.create(name, clip)
        method.attach(clip, train_set.classnames, train_set.templates)
        t0 = time.time()
        history = train.fit(method, train_set, cfg, progress=False)
        rows.append({"method": name, "steps": steps, "lr": args.lr,
                     "seconds": round(time.time() - t0),
                     **convergence.summarise(history, by="lr")})
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
