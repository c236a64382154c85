"""Build notebooks/NN_topic.ipynb from the jupytext percent scripts in notebooks/src/.

The scripts are the source of truth (clean diffs); `make notebooks` rebuilds the .ipynb files
(without outputs) and `make reproduce` executes them in place with papermill.

`--keep-outputs` is for a change to markdown only: the code cells of the script must equal
those of the executed notebook, cell for cell, and their outputs are carried over, so a
corrected sentence does not cost a rerun. If any code cell differs the notebook is left as it
is and the script says which cell: rebuild without the flag and execute it again.

Cell ids come from each cell's type and source (a hash, with a counter for repeated cells),
so a rebuild changes only the ids of the cells that changed and the diffs stay readable.
"""
import hashlib
import pathlib
import sys

import jupytext

ROOT = pathlib.Path(__file__).resolve().parent.parent
KERNEL = {"name": "cliptune", "display_name": "Python 3 (cliptune)", "language": "python"}


def from_script(src: pathlib.Path):
    """The notebook that ``src`` builds, without outputs: its cells, with their stable ids."""
    nb = jupytext.read(src, fmt="py:percent")
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.pop("jupytext", None)
    stable_ids(nb)
    return nb


def build(src: pathlib.Path, keep_outputs: bool = False) -> pathlib.Path:
    nb = from_script(src)
    out = ROOT / "notebooks" / (src.stem + ".ipynb")
    if keep_outputs:
        carry_outputs(jupytext.read(out, fmt="ipynb"), nb, out)
    jupytext.write(nb, out, fmt="ipynb")
    return out


def stable_ids(nb) -> None:
    """Give every cell an id that depends only on its type and source: unchanged cells keep
    their ids across rebuilds (jupytext draws random ones). A repeated cell gets -2, -3, ..."""
    seen: dict[str, int] = {}
    for cell in nb.cells:
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:12]
        seen[digest] = seen.get(digest, 0) + 1
        cell["id"] = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"


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
    old_text = [c for c in old.cells if c.cell_type != "code"]
    new_text = [c for c in new.cells if c.cell_type != "code"]
    if len(old_text) == len(new_text):  # papermill's per-cell record of the run it was part of
        for a, b in zip(old_text, new_text):
            b.metadata = {**a.metadata, **b.metadata}
    # what the run recorded (papermill, the kernel's language_info, widget state) stays
    for key, value in old.metadata.items():
        if key in ("papermill", "language_info") or key not in new.metadata:
            new.metadata[key] = value


if __name__ == "__main__":
    args = sys.argv[1:]
    keep = "--keep-outputs" in args
    args = [a for a in args if a != "--keep-outputs"]
    sources = [pathlib.Path(p) for p in args] or sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
    for s in sources:
        print("built", build(s, keep).relative_to(ROOT))
