"""Claims tables: what the papers claim, what the tiny world measured, and whether it agrees.

Introduced in notebook 02; notebooks 02-07 each end with one. The claims, in our own words,
with the paper's number where the research notes give one and its source, live in
``cliptune/paper_claims.json``. A notebook computes a ``compare.Comparison`` per claim (the
tiny world's difference, a minus b, with its 95% interval) and, where a claim does not
reproduce, a diagnostic string from its own measurements; ``table`` lays them out.

Verdicts, by what a claim expects of a minus b:

- "better" / "worse": "reproduced" when the comparison says so; "not reproduced (opposite)"
  when it says the reverse; else "no detectable difference".
- "not_better" / "not_worse": "reproduced" unless the comparison finds the excluded direction.
- "similar" (within the claim's ``margin`` points): "reproduced" when the whole interval lies
  inside [-margin, margin]; "not reproduced" when it lies wholly outside; else "inconclusive".
"""
from __future__ import annotations

import json
import pathlib

from cliptune import compare, convergence

PATH = pathlib.Path(__file__).with_name("paper_claims.json")
EXPECTATIONS = ("better", "worse", "similar", "not_better", "not_worse")
REPRODUCED, NOT_REPRODUCED, OPPOSITE = "reproduced", "not reproduced", "not reproduced (opposite)"
INCONCLUSIVE, NOT_RUN = "inconclusive", "not run"


def load(notebook: str | None = None, path=PATH) -> dict:
    """The claims as ``{id: claim dict}`` (of one notebook, e.g. "02", or all)."""
    raw = json.loads(pathlib.Path(path).read_text())
    out = {}
    for c in raw["claims"]:
        missing = {"id", "notebook", "claim", "expect", "paper_value", "source"} - set(c)
        if missing:
            raise ValueError(f"{path}: claim {c.get('id', '?')} lacks {sorted(missing)}")
        if c["expect"] not in EXPECTATIONS:
            raise ValueError(f"{path}: claim {c['id']} expects {c['expect']!r}; use one of "
                             f"{EXPECTATIONS}")
        if c["id"] in out:
            raise ValueError(f"{path}: claim id {c['id']!r} appears twice")
        out[c["id"]] = c
    if notebook is not None:
        out = {k: c for k, c in out.items() if c["notebook"] == notebook}
    return out


def judge(claim: dict, comparison: compare.Comparison | None) -> str:
    """The verdict of one claim given the tiny world's comparison (None: not run)."""
    if comparison is None:
        return NOT_RUN
    expect, v = claim["expect"], comparison.verdict
    if expect in ("better", "worse"):
        if v == expect:
            return REPRODUCED
        return compare.NO_DIFFERENCE if v == compare.NO_DIFFERENCE else OPPOSITE
    if expect == "not_better":
        return NOT_REPRODUCED if v == compare.BETTER else REPRODUCED
    if expect == "not_worse":
        return NOT_REPRODUCED if v == compare.WORSE else REPRODUCED
    margin = float(claim.get("margin", 1.0))
    if -margin <= comparison.low and comparison.high <= margin:
        return REPRODUCED
    if comparison.low > margin or comparison.high < -margin:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def _paper(claim: dict) -> str:
    value = claim["paper_value"]
    if isinstance(value, (int, float)):
        return f"{value:+.2f} ({claim.get('paper_detail', '')})"
    return "n/a"


def _why(verdict: str, diagnostic: str) -> str:
    """The "why" a row prints: none for a reproduced claim, except a caveat on its runs'
    convergence (``convergence.caveat``: "UNCONVERGED runs behind ..."), which must never be
    dropped silently. Diagnostics join their parts with "; "."""
    if verdict != REPRODUCED:
        return diagnostic
    return "; ".join(p.strip() for p in (diagnostic or "").split(";")
                     if convergence.UNCONVERGED in p)


def table(entries, notebook: str | None = None, path=PATH):
    """The claims table as a DataFrame.

    ``entries``: ``{claim id: Comparison or None}``, ``{claim id: (Comparison or None,
    diagnostic)}``, or a list of ``(claim id, Comparison or None[, diagnostic])`` when one
    claim is tested several times (e.g. once per method or per update). The diagnostic (a string the notebook computes from its measurements)
    is shown where the claim is not reproduced. With ``notebook`` given, every claim of that
    notebook gets a row, "not run" where ``entries`` has none."""
    import pandas as pd
    known = load(path=path)
    if isinstance(entries, dict):
        entries = [(k, *(v if isinstance(v, tuple) else (v,))) for k, v in entries.items()]
    entries = [(e[0], e[1], e[2] if len(e) > 2 else "") for e in entries]
    unknown = {e[0] for e in entries} - set(known)
    if unknown:
        raise ValueError(f"unknown claim ids {sorted(unknown)}: add them to {path} or use one of "
                         f"{sorted(known)}")
    if notebook is not None:
        seen = {e[0] for e in entries}
        entries += [(k, None, "") for k, c in known.items()
                    if c["notebook"] == notebook and k not in seen]
    rows = []
    for cid, comparison, diagnostic in entries:
        claim = known[cid]
        verdict = judge(claim, comparison)
        tiny, per_task = "", ""
        if comparison is not None:
            unit = comparison.unit
            tiny = (f"{comparison.a} vs {comparison.b} ({comparison.metric}): "
                    f"{comparison.interval()}, {comparison.n_seeds} "
                    f"seed{'s' if comparison.n_seeds != 1 else ''} x {comparison.n_tasks} "
                    f"{unit}{'s' if comparison.n_tasks != 1 else ''}")
            if claim["expect"] == "similar":
                margin = float(claim.get("margin", 1.0))
                tiny += (f" (the claim holds where the interval lies within {margin:g} "
                         f"point{'s' if margin != 1 else ''} of 0)")
            if comparison.per_task:
                per_task = comparison.per_task_text()
                if comparison.split():
                    per_task += f" (the {unit}s disagree: the pooled verdict hides it)"
        rows.append({"claim": claim["claim"], "paper (a - b)": _paper(claim),
                     "tiny world (a - b, 95% CI)": tiny, "per task": per_task,
                     "verdict": verdict,
                     "diagnostic": _why(verdict, diagnostic),
                     "source": claim["source"], "id": cid})
    return pd.DataFrame(rows)


def show(df) -> None:
    """Print a claims table readably in a notebook (full text, no truncation)."""
    import pandas as pd
    with pd.option_context("display.max_colwidth", None, "display.width", 200):
        for _, r in df.iterrows():
            print(f"[{r['verdict']}] {r['claim']}")
            print(f"    paper: {r['paper (a - b)']}")
            print(f"    tiny world: {r['tiny world (a - b, 95% CI)'] or '-'}")
            if r.get("per task"):
                print(f"    each on its own: {r['per task']}")
            if r["diagnostic"]:
                print(f"    why: {r['diagnostic']}")
            print(f"    source: {r['source']}")
