"""Markdown cells carry no measured numbers: a sentence that quotes a result is generated
from the results in a code cell. A percentage or a "±" in a committed notebook's markdown is
almost always a hand-typed measurement that a rerun would contradict."""
import json
import pathlib
import re

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
MEASURED = re.compile(r"\d+(\.\d+)?\s*%|±")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_has_no_measured_numbers(path):
    cells = json.loads(path.read_text())["cells"]
    bad = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        for line in "".join(cell["source"]).splitlines():
            if MEASURED.search(line):
                bad.append(f"cell {i}: {line.strip()}")
    assert not bad, (f"{path.name}: markdown quotes measured numbers; generate the sentence "
                     "from results/ in a code cell (print or IPython.display.Markdown) or drop "
                     "the number:\n" + "\n".join(bad))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8
