"""Wall time and peak memory of pretraining a tiny CLIP (the tiny-v1 recipe).

Runs STEPS steps of the tiny-v1 recipe itself (its batch, corpus, stem and SLIP term; only the
step count differs) in a scratch folder (the zoo is not touched) and extrapolates to the full
recipe. Threads: CLIPTUNE_THREADS (all cores by default), recorded in the output. Writes benchmarks/results/pretrain.json. The full pretraining times of the
committed zoo are also in data/zoo/manifest.json.
"""
import dataclasses
import json
import os
import pathlib
import resource
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 60

os.environ.setdefault("CLIPTUNE_DEVICE", "cpu")
from cliptune import models, runtime  # noqa: E402

recipe = models.ZOO["tiny-v1"]
with tempfile.TemporaryDirectory() as tmp:
    models.ZOO_DIR = pathlib.Path(tmp)
    models.ZOO["bench"] = dataclasses.replace(recipe, name="bench", steps=STEPS)
    t0 = time.time()
    hist = models.pretrain("bench", progress=False, checkpoint_every=0)
    seconds = time.time() - t0
per_step = hist["seconds"] / STEPS
report = {"recipe": "tiny-v1", "steps_run": STEPS, "threads": runtime.torch.get_num_threads(),
          "seconds_total_incl_data": round(seconds, 1),
          "seconds_per_step": round(per_step, 3),
          "estimated_full_recipe_minutes": round(per_step * recipe.steps / 60, 1),
          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
          "zoo_manifest": {k: {"seconds": v["seconds"], "threads": v["threads"]}
                           for k, v in json.loads((ROOT / "data/zoo/manifest.json").read_text()).items()}
          if (ROOT / "data/zoo/manifest.json").exists() else {}}
out = ROOT / "benchmarks" / "results" / "pretrain.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report, indent=2))
