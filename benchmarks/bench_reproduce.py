"""Run every notebook in order, in place, with papermill, and record wall time and peak memory.

With ``--jobs 2`` two notebooks run at once, one torch thread each (on 2 cores that beats one
notebook on 2 threads: much of a notebook is single-threaded Python), the one heading the
longest chain of run time in the last recorded run first; a notebook waits for
those whose trained modules or chosen designs it loads (03 and 06 for 02, 07 for 02, 03 and
04), and 01 for 00, whose image features of the zoo's test sets it reads back from the
feature cache instead of encoding them again.

`make reproduce` calls this, so each reproduction leaves benchmarks/results/reproduce.json.
Each notebook runs in its own child process; its peak resident memory is that of the
notebook's kernel (the largest process in the child's tree).
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "reproduce.json"

RUNNER = r"""
import resource, sys, papermill
nb, kernel, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
params = {"FAST_DEV_RUN": True} if "--fast" in extra else {}
papermill.execute_notebook(nb, nb, kernel_name=kernel, cwd="notebooks", parameters=params,
                           log_output=False, progress_bar=False)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


# a notebook that reuses what earlier ones trained waits for them, by number prefix (03, 06
# and 07 load notebook 02's 16-shot CoOp runs and 07 loads 03's adapters: they share
# train.recipe's configs; 04's base-to-new runs are its own, but 07 reads the RESTORE design
# 04 chose on validation data, as it reads ContCoOp's from 02)
NEEDS = {"01": ("00",), "03": ("02",), "06": ("02",), "07": ("02", "03", "04")}


def _prefix(nb) -> str:
    """A notebook's number, the key of ``NEEDS``."""
    return pathlib.Path(nb).name[:2]


def start_order(books, needs, seconds) -> list:
    """``books`` ordered longest chain first: a notebook's chain is its own run time
    (``seconds``, from the last recorded run; 0 when unknown) plus the longest chain of the
    notebooks that wait on it (``needs``: number prefix -> prefixes it waits for). Started in
    this order as soon as what they wait for is done, the longest notebook no longer starts
    last and runs alone on one core. Ties keep the given order."""
    chain = {}

    def length(nb):
        if nb not in chain:
            waiting = [b for b in books if _prefix(nb) in needs.get(_prefix(b), ())]
            chain[nb] = seconds.get(nb, 0.0) + max(map(length, waiting), default=0.0)
        return chain[nb]

    return sorted(books, key=lambda nb: -length(nb))


def _last_seconds() -> dict:
    """Each notebook's run time in the last recorded full run ({} when there is none)."""
    try:
        return {nb: float(r["seconds"])
                for nb, r in json.loads(OUT.read_text()).get("notebooks", {}).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="*")
    parser.add_argument("--kernel", default="cliptune")
    parser.add_argument("--fast", action="store_true", help="FAST_DEV_RUN (not for committing)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks run at once (default 2)")
    args = parser.parse_args()
    books = args.notebooks or sorted(str(p.relative_to(ROOT))
                                     for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    report = {"machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                          "processor": platform.machine()}, "fast": args.fast, "notebooks": {}}
    start = time.time()
    # nobody watches these runs live: keep progress lines out of the committed notebooks
    env = {"CLIPTUNE_PROGRESS": "off", **os.environ,
           **({"CLIPTUNE_THREADS": "1"} if args.jobs > 1 else {})}

    def run(nb):
        t0 = time.time()
        print(f"== {nb}", flush=True)
        proc = subprocess.run([sys.executable, "-c", RUNNER, nb, args.kernel]
                              + (["--fast"] if args.fast else []), cwd=ROOT,
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-6000:], sep="\n")
            raise RuntimeError(f"{nb} failed: the executed notebook shows the error cell")
        peak_mb = int(proc.stdout.strip().splitlines()[-1]) / 1024
        print(f"   {nb}: {time.time() - t0:.0f} s, peak {peak_mb:.0f} MB", flush=True)
        return {"seconds": round(time.time() - t0, 1), "peak_rss_mb": round(peak_mb, 1)}

    done, futures = {}, {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        pending = start_order(books, NEEDS, _last_seconds())
        report["start_order"] = list(pending)
        while pending or futures:
            ready = [nb for nb in pending  # what it waits for is done, or not in this run
                     if all(any(_prefix(d) == n for d in done)
                            or not any(_prefix(b) == n for b in books)
                            for n in NEEDS.get(_prefix(nb), ()))]
            while ready and len(futures) < args.jobs:
                nb = ready.pop(0)
                pending.remove(nb)
                futures[pool.submit(run, nb)] = nb
            finished, _ = concurrent.futures.wait(futures, return_when="FIRST_COMPLETED")
            for f in finished:
                nb = futures.pop(f)
                try:
                    done[nb] = f.result()
                except RuntimeError as err:
                    sys.exit(str(err))
    report["notebooks"] = {nb: done[nb] for nb in books}
    report["jobs"] = args.jobs
    report["total_seconds"] = round(time.time() - start, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    if not args.fast:
        OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
