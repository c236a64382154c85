"""Trial pretraining runs for choosing the zoo recipe from learning curves.

    python tools/zoo_trial.py OUT_DIR --set SHAPE_NAME_P=0.05 --set FINE_SHAPE_P=0.7 [--steps N]

Trains the tiny-v1 recipe with the given world caption knobs (attributes of cliptune.world)
into OUT_DIR, never into data/zoo. The run checkpoints and resumes like `make zoo`; its
history (loss and the zero-shot / probe curve every 500 steps) lands in OUT_DIR.
"""
import argparse
import dataclasses
import json
import pathlib

from cliptune import models, world

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", type=pathlib.Path)
parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE")
parser.add_argument("--recipe", default="tiny-v1")
parser.add_argument("--recipe-set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a field of the recipe (e.g. ssl_weight=1.0)")
parser.add_argument("--steps", type=int, default=None)
args = parser.parse_args()
for item in args.set:
    knob, _, value = item.partition("=")
    if not hasattr(world, knob):
        parser.error(f"--set {item}: cliptune.world has no knob {knob!r}")
    setattr(world, knob, type(getattr(world, knob))(value))
fields = {}
for item in args.recipe_set:
    field, _, value = item.partition("=")
    if not hasattr(models.ZOO[args.recipe], field):
        parser.error(f"--recipe-set {item}: the recipe has no field {field!r}")
    fields[field] = type(getattr(models.ZOO[args.recipe], field))(value)
models.ZOO[args.recipe] = dataclasses.replace(models.ZOO[args.recipe], **fields)
args.out.mkdir(parents=True, exist_ok=True)
(args.out / "knobs.json").write_text(json.dumps(args.set + args.recipe_set))
models.ZOO_DIR = args.out
history = models.pretrain(args.recipe, steps=args.steps, progress=False)
print(json.dumps(history["curve"], indent=1))
