"""Build notebooks/NN_topic.ipynb from the jupytext percent scripts in notebooks/src/.

The scripts are the source of truth (clean diffs); `make notebooks` rebuilds the .ipynb files
(without outputs) and `make reproduce` executes them in place with papermill.
"""
import pathlib
import sys

import jupytext

ROOT = pathlib.Path(__file__).resolve().parent.parent
KERNEL = {"name": "cliptune", "display_name": "Python 3 (cliptune)", "language": "python"}


def build(src: pathlib.Path) -> pathlib.Path:
    nb = jupytext.read(src, fmt="py:percent")
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.pop("jupytext", None)
    out = ROOT / "notebooks" / (src.stem + ".ipynb")
    jupytext.write(nb, out, fmt="ipynb")
    return out


if __name__ == "__main__":
    sources = [pathlib.Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
    for s in sources:
        print("built", build(s).relative_to(ROOT))
