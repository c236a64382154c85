"""Build notebooks/NN_topic.ipynb from the jupytext percent scripts in notebooks/src/.

The scripts are the source of truth (clean diffs); `make notebooks` rebuilds the .ipynb files
(without outputs) and `make reproduce` executes them in place with papermill.

`--keep-outputs` is for a change to markdown only: the code cells of the script must equal
those of the executed notebook, cell for cell, and their outputs are carried over, so a
corrected sentence does not cost a rerun. If any code cell differs the notebook is left as it
is and the script says which cell: rebuild without the flag and execute it again.
"""
import pathlib
import sys

import jupytext

ROOT = pathlib.Path(__file__).resolve().parent.parent
KERNEL = {"name": "cliptune", "display_name": "Python 3 (cliptune)", "language": "python"}


def build(src: pathlib.Path, keep_outputs: bool = False) -> pathlib.Path:
    nb = jupytext.read(src, fmt="py:percent")
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.pop("jupytext", None)
    out = ROOT / "notebooks" / (src.stem + ".ipynb")
    if keep_outputs:
        carry_outputs(jupytext.read(out, fmt="ipynb"), nb, out)
    jupytext.write(nb, out, fmt="ipynb")
    return out


def carry_outputs(old, new, path) -> None:
    """Copy the executed cells' outputs from ``old`` into ``new`` (same code, cell for cell)."""
    old_code = [c for c in old.cells if c.cell_type == "code"]
    new_code = [c for c in new.cells if c.cell_type == "code"]
    if len(old_code) != len(new_code):
        sys.exit(f"{path}: {len(new_code)} code cells in the script, {len(old_code)} in the "
                 "notebook; --keep-outputs is for markdown changes only: rebuild without it "
                 "and execute the notebook again")
    for i, (a, b) in enumerate(zip(old_code, new_code), start=1):
        if a.source.strip() != b.source.strip():
            sys.exit(f"{path}: code cell {i} differs from the executed notebook's; "
                     "--keep-outputs is for markdown changes only: rebuild without it and "
                     "execute the notebook again")
        b.outputs, b.execution_count = a.outputs, a.execution_count
        b.metadata = {**a.metadata, **b.metadata}
    for key in ("papermill",):
        if key in old.metadata:
            new.metadata[key] = old.metadata[key]


if __name__ == "__main__":
    args = sys.argv[1:]
    keep = "--keep-outputs" in args
    args = [a for a in args if a != "--keep-outputs"]
    sources = [pathlib.Path(p) for p in args] or sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
    for s in sources:
        print("built", build(s, keep).relative_to(ROOT))
