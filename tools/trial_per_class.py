"""Per-class zero-shot accuracies of trained zoo trials, measured in the world each was trained in.

    python tools/trial_per_class.py TRIAL_DIR LABEL [TRIAL_DIR LABEL ...]
    python tools/trial_per_class.py --model tiny-v2-retrained --create "NOTE" ZOO_DIR LABEL

For each trial folder of tools/zoo_trial.py: set the world's rendering knobs from the folder's
manifest (the record of the world the trial model was trained in; the defaults have moved on
since the early trials), measure `preconditions.per_class_zero_shot` on every main task and add
it as "per_class" to the entry LABEL of data/zoo/trials.json (which must exist: record the trial
with zoo_trial.py --record first, or pass --create NOTE to add an entry that has no pretraining
curve, e.g. for a model of an earlier committed zoo). ``--model`` measures another model of
the folder than tiny-v1, in the world its own manifest entry records. Notebook 00 reads it to
show which classes a base/new gap comes from. Each class is scored among the classes of its half under today's base/new splits
(world.base_classes), as notebook 00 scores the zoo.
"""
import argparse
import json
import pathlib

from cliptune import models, preconditions, world

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("pairs", nargs="+", metavar="TRIAL_DIR LABEL")
parser.add_argument("--model", default="tiny-v1", help="which model of each folder (tiny-v1)")
parser.add_argument("--create", metavar="NOTE",
                    help="add LABEL as a new entry with this note if trials.json lacks it")
args = parser.parse_args()
if len(args.pairs) % 2:
    parser.error("give trial folders and labels in pairs: TRIAL_DIR LABEL [TRIAL_DIR LABEL ...]")
trials_file = models.ZOO_DIR / "trials.json"
trials = json.loads(trials_file.read_text())
pairs = list(zip(args.pairs[::2], args.pairs[1::2]))
manifests = {}  # read once: checked before anything is measured, used after
for folder, label in pairs:
    if label not in trials["trials"] and not args.create:
        parser.error(f"no trial {label!r} in {trials_file}; record it with tools/zoo_trial.py "
                     "--record first")
    if not (pathlib.Path(folder) / "manifest.json").exists():
        parser.error(f"{folder} has no manifest.json: not a trained zoo trial folder")
    manifests[folder] = json.loads((pathlib.Path(folder) / "manifest.json").read_text())
    if args.model not in manifests[folder]:
        parser.error(f"{folder}/manifest.json records no model {args.model!r}; pass --model "
                     "with one of the models it lists")
out_name = "per_class.json" if args.model == "tiny-v1" else f"per_class_{args.model}.json"
for folder, label in pairs:
    world.use_recorded_rendering(manifests[folder][args.model]["captions"])
    folder = pathlib.Path(folder)
    models.ZOO_DIR = folder
    clip = models.load_clip(args.model, train_if_missing=False)
    per_class = {task: preconditions.per_class_zero_shot(clip, task) for task in world.MAIN_TASKS}
    (folder / out_name).write_text(json.dumps(per_class, indent=1))
    entry = trials["trials"].setdefault(label, {"knobs": [], "note": args.create})
    entry["per_class"] = per_class
    print(label, {c: round(a) for c, a in per_class["shapes"].items()})
trials_file.write_text(json.dumps(trials, indent=1) + "\n")
