"""Where a reproduction's time goes: the executed notebooks' cell times, by section.

    python benchmarks/time_breakdown.py [notebooks ...]

papermill stores each cell's wall time in the executed notebook (``metadata.papermill.duration``).
This sums them per section (the nearest ``##``/``###`` heading above a cell) and names the
slowest cells by their first line of code, so that speed work starts from a measurement, not a
guess. It reads committed notebooks and runs nothing; the table lands in
``benchmarks/results/time_breakdown.json``.
"""
import argparse
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _text(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _first_code_line(cell) -> str:
    for line in _text(cell).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line[:80]
    return "(comments only)"


def breakdown(nb: dict) -> dict:
    """{"total_s", "sections": [{"section", "seconds"}], "cells": [{"section", "cell", "seconds"}]}
    of one executed notebook (a dict as read from its JSON); cells without a recorded duration
    (never executed by papermill) count as 0."""
    section, cells, order = "(top)", [], {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in _text(cell).splitlines():
                if line.startswith("## ") or line.startswith("### "):
                    section = line.lstrip("#").strip()
                    break
            continue
        if cell.get("cell_type") != "code":
            continue
        seconds = float(((cell.get("metadata") or {}).get("papermill") or {}).get("duration") or 0)
        cells.append({"section": section, "cell": _first_code_line(cell), "seconds": seconds})
        order[section] = order.get(section, 0.0) + seconds
    sections = sorted(({"section": s, "seconds": t} for s, t in order.items()),
                      key=lambda r: -r["seconds"])
    return {"total_s": sum(c["seconds"] for c in cells), "sections": sections,
            "cells": sorted(cells, key=lambda c: -c["seconds"])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path)
    parser.add_argument("--top", type=int, default=5, help="slowest cells shown per notebook")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    out = {}
    for path in paths:
        if not path.exists():
            parser.error(f"{path}: no such notebook; give paths like notebooks/02_*.ipynb")
        b = breakdown(json.loads(path.read_text()))
        out[path.stem] = {**b, "cells": b["cells"][:args.top]}
        print(f"\n{path.stem}: {b['total_s'] / 60:.1f} min in cells")
        for s in b["sections"][:6]:
            print(f"  {s['seconds'] / 60:6.1f} min  {s['section']}")
        for c in b["cells"][:args.top]:
            print(f"    {c['seconds']:7.0f} s  [{c['section'][:30]}] {c['cell']}")
    if not args.notebooks:  # the whole workbook: record it beside reproduce.json
        dest = ROOT / "benchmarks" / "results" / "time_breakdown.json"
        dest.write_text(json.dumps(out, indent=1))
        print(f"\nwrote {dest.relative_to(ROOT)}")
    return out


if __name__ == "__main__":
    main()
