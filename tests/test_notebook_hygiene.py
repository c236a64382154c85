"""What every notebook promises its users: checked parameters, the mode printed, progress
bars, outputs reported, and committed outputs free of machine paths, warnings and bare hashes."""
import inspect
import json
import pathlib
import re

import pytest

from cliptune import protocols, runtime
from tool_loader import load_tool

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_checks_its_parameters_and_reports_its_outputs(src):
    text = src.read_text()
    params_cell = text.split('# %% tags=["parameters"]', 1)[1].split("\n# %%", 1)[0]
    assert "FAST_DEV_RUN = None" in params_cell
    assert params_cell.rstrip().endswith("params.declare(globals())  # the next cell checks "
                                         "every value above")
    setup_cell = text.split('# %% tags=["parameters"]', 1)[1].split("\n# %%", 2)[1]
    assert "FAST_DEV_RUN = params.setup(globals())" in setup_cell
    assert "runtime.fast_dev_run()" not in text  # the parameter cell is the visible truth
    assert text.rstrip().endswith(f'runtime.report_outputs("{src.stem}")')
    assert "progress=False" not in text


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_are_clean(nb_path):
    nb = json.loads(nb_path.read_text())
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            where = f"{nb_path.name} cell {i}"
            assert not re.search(r"(/work/|/home/|/root/|/tmp/|\.venv/|site-packages)", text), \
                f"{where} shows a machine path: {text[:200]!r}"
            assert not re.fullmatch(r"'[0-9a-f]{12}'", text.strip()), f"{where} shows a bare hash"
            assert "interactive(children=" not in text, f"{where} shows a widget's repr"
            if out["output_type"] == "stream" and out["name"] == "stderr":
                assert "Warning" not in text, f"{where} prints a warning: {text[:200]!r}"


def test_training_shows_progress_by_default():
    assert inspect.signature(protocols.train_method).parameters["progress"].default is True


def test_text_progress_bars_go_to_stderr(monkeypatch, capsys):
    monkeypatch.setenv("CLIPTUNE_PROGRESS", "text")
    for _ in runtime.progress(range(3), desc="demo", mininterval=0):
        pass
    assert "demo" in capsys.readouterr().err
    monkeypatch.setenv("CLIPTUNE_PROGRESS", "off")
    for _ in runtime.progress(range(3), desc="hidden"):
        pass
    assert "hidden" not in capsys.readouterr().err


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_matches_its_source(src):
    """The .ipynb a user opens holds exactly its script's cells (a markdown edit rebuilt with
    tools/build_notebooks.py --keep-outputs, a code edit rebuilt and executed), with the
    ids that build gives them."""
    import nbformat
    want = load_tool("tools/build_notebooks.py").from_script(src)
    have = nbformat.read(ROOT / "notebooks" / f"{src.stem}.ipynb", as_version=4)
    cells = lambda nb: [(c.cell_type, c.source.strip(), c.id) for c in nb.cells  # noqa: E731
                        if "injected-parameters" not in c.metadata.get("tags", [])]
    assert cells(have) == cells(want), (
        f"notebooks/{src.stem}.ipynb differs from its source: run "
        f"`python tools/build_notebooks.py --keep-outputs {src.relative_to(ROOT)}` after a "
        "markdown edit, or rebuild and execute it after a code edit")
