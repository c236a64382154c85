"""tools/build_notebooks.py: stable cell ids; --keep-outputs: markdown edits keep outputs, code
edits refuse."""
import nbformat
import pytest
from tool_loader import load_tool

build_notebooks = load_tool("tools/build_notebooks.py")


def _nb(markdown, code):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(markdown), nbformat.v4.new_code_cell(code)]
    return nb


def test_markdown_change_keeps_the_outputs():
    old = _nb("old words", "x = 1\nx")
    old.cells[1].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "1"},
                                                   execution_count=1)]
    old.cells[1].execution_count = 1
    old.metadata["papermill"] = {"duration": 3.0}
    old.cells[0].metadata["papermill"] = {"status": "completed"}
    new = _nb("new words", "x = 1\nx")
    build_notebooks.carry_outputs(old, new, "nb.ipynb")
    assert new.cells[0].source == "new words"
    assert new.cells[1].outputs == old.cells[1].outputs and new.cells[1].execution_count == 1
    assert new.metadata["papermill"] == {"duration": 3.0}
    assert new.cells[0].metadata["papermill"] == {"status": "completed"}


def test_code_change_refuses_and_names_the_cell():
    with pytest.raises(SystemExit, match="code cell 1 differs.*rebuild without it"):
        build_notebooks.carry_outputs(_nb("a", "x = 1"), _nb("a", "x = 2"), "nb.ipynb")
    with pytest.raises(SystemExit, match="2 code cells in the script, 1 in the notebook"):
        new = _nb("a", "x = 1")
        new.cells.append(nbformat.v4.new_code_cell("y = 2"))
        build_notebooks.carry_outputs(_nb("a", "x = 1"), new, "nb.ipynb")


def test_cell_ids_follow_the_source_only():
    nb = _nb("a", "x = 1")
    nb.cells.append(nbformat.v4.new_code_cell("x = 1"))  # a repeated cell
    build_notebooks.stable_ids(nb)
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == 3 and ids[2] == ids[1] + "-2"
    nbformat.validate(nb)  # ids are valid nbformat 4.5 ids
    again = _nb("a", "x = 1")
    again.cells.insert(1, nbformat.v4.new_markdown_cell("inserted"))
    again.cells.append(nbformat.v4.new_code_cell("x = 1"))
    build_notebooks.stable_ids(again)
    # inserting a cell changes no other cell's id; a markdown cell never shares a code cell's
    assert [c.id for i, c in enumerate(again.cells) if i != 1] == ids
    assert _ids_of(_nb("x = 1", "x = 1"))[0] != _ids_of(_nb("x = 1", "x = 1"))[1]


def _ids_of(nb):
    build_notebooks.stable_ids(nb)
    return [c.id for c in nb.cells]
