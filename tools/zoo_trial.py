"""Trial pretraining runs for choosing the zoo recipe from learning curves.

    python tools/zoo_trial.py OUT_DIR --set SHAPE_NAME_P=0.05 --set FINE_SHAPE_P=0.7 [--steps N]
        [--recipe-set ssl_weight=0.3] [--measure] [--record LABEL]

Trains the tiny-v1 recipe (or --recipe NAME) with the given world knobs (attributes of
cliptune.world: captions, rendering; TEXTURES=plain,...,zigzag sets the world's textures
through world.use_textures) into OUT_DIR, never into data/zoo. The run checkpoints and resumes
like `make zoo`; its history (loss and the zero-shot / probe curve every 500 steps) lands in
OUT_DIR. A run whose weights are already in OUT_DIR is not trained again.

--measure: the preconditions of the trained model, measured as notebook 00 measures the zoo
(`preconditions.measure` on every task, under the trial's own knobs), into OUT_DIR.
--per-class: zero-shot accuracy of every class of the main tasks, among its own half's classes
(`preconditions.per_class_zero_shot`; --measure does it too), into OUT_DIR: which classes a
base/new gap comes from. Cheap, so it can be added to a trial measured before.
--record LABEL: add the trial (knobs, curve, preconditions and per-class accuracies if
measured) to data/zoo/trials.json, which notebook 00 plots.
"""
import argparse
import dataclasses
import json
import pathlib

import pandas as pd

from cliptune import models, world

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", type=pathlib.Path)
parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE")
parser.add_argument("--recipe", default="tiny-v1")
parser.add_argument("--recipe-set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a field of the recipe (e.g. ssl_weight=1.0)")
parser.add_argument("--steps", type=int, default=None)
parser.add_argument("--measure", action="store_true", help="measure the preconditions")
parser.add_argument("--per-class", action="store_true",
                    help="measure the main tasks' per-class zero-shot accuracies only")
parser.add_argument("--record", metavar="LABEL", help="add the trial to data/zoo/trials.json")
args = parser.parse_args()
for item in args.set:
    knob, _, value = item.partition("=")
    if not hasattr(world, knob):
        parser.error(f"--set {item}: cliptune.world has no knob {knob!r}")
    if knob == "TEXTURES":  # the textures task's classes change with it
        try:
            world.use_textures(value.split(","))
        except ValueError as err:
            parser.error(f"--set {item}: {err}")
        continue
    default = getattr(world, knob)
    # a tuple knob takes comma-separated names (TEXTURE_TASK_SHAPES=circle,square)
    # a knob that defaults to None (TEXTURE_NOISE_P: "as NAME_NOISE_P") takes a number
    setattr(world, knob, tuple(value.split(",")) if isinstance(default, tuple)
            else float(value) if default is None else type(default)(value))
fields = {}
for item in args.recipe_set:
    field, _, value = item.partition("=")
    if not hasattr(models.ZOO[args.recipe], field):
        parser.error(f"--recipe-set {item}: the recipe has no field {field!r}")
    default = getattr(models.ZOO[args.recipe], field)
    if isinstance(default, tuple):  # e.g. domain_mix='[["photo", 0.8], ["sketch", 0.2]]'
        fields[field] = tuple(tuple(x) if isinstance(x, list) else x for x in json.loads(value))
    else:
        fields[field] = type(default)(value)
models.ZOO[args.recipe] = dataclasses.replace(models.ZOO[args.recipe], **fields)
args.out.mkdir(parents=True, exist_ok=True)
(args.out / "knobs.json").write_text(json.dumps(args.set + args.recipe_set))
trials_file = models.ZOO_DIR / "trials.json"
models.ZOO_DIR = args.out
weights = args.out / f"{args.recipe}.safetensors"
if weights.exists():
    history = json.loads((args.out / f"{args.recipe}.history.json").read_text())
else:
    history = models.pretrain(args.recipe, steps=args.steps, progress=False)
print(json.dumps(history["curve"][-1], indent=1))
table = args.out / "preconditions.json"
per_class_file = args.out / "per_class.json"
if args.measure or args.per_class:
    from cliptune import preconditions
    clip = models.load_clip(args.recipe, train_if_missing=False)
    per_class = {task: preconditions.per_class_zero_shot(clip, task) for task in world.MAIN_TASKS}
    per_class_file.write_text(json.dumps(per_class, indent=1))
    for task, accs in per_class.items():
        if len(accs) <= 12:  # objects' 80 classes are in the file
            print(task, {c: round(a) for c, a in accs.items()})
if args.measure:
    measured = pd.DataFrame([preconditions.measure(clip, task) for task in world.TASKS])
    table.write_text(measured.to_json(orient="records", indent=1))
    checks, _ = preconditions.verdicts(measured, world.MAIN_TASKS)
    print(checks.to_string(index=False))
if args.record:
    shown = []
    for item in args.set + args.recipe_set:  # a domain mix reads as the cartoon share
        if item.startswith("domain_mix="):
            mix = dict(json.loads(item.split("=", 1)[1]))
            item = f"domain_mix: cartoon {mix['cartoon']}, photo {mix['photo']}"
        shown.append(item)
    trials = json.loads(trials_file.read_text())
    entry = {"knobs": shown, "curve": history["curve"]}
    if table.exists():
        entry["preconditions"] = [{k: v for k, v in r.items() if k != "model"}
                                  for r in json.loads(table.read_text())]
    if per_class_file.exists():
        entry["per_class"] = json.loads(per_class_file.read_text())
    trials["trials"][args.record] = entry
    trials_file.write_text(json.dumps(trials, indent=1) + "\n")
