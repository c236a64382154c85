import pytest
from tool_loader import load_tool

time_breakdown = load_tool("benchmarks/time_breakdown.py")


def code(src, seconds=None):
    meta = {"papermill": {"duration": seconds}} if seconds is not None else {}
    return {"cell_type": "code", "source": src, "metadata": meta}


def test_cell_times_are_summed_per_section_and_ranked():
    nb = {"cells": [
        code("import x", 1.0),
        {"cell_type": "markdown", "source": "## Train\nwords"},
        code(["# why\n", "fit(model)\n"], 30.0),
        code("evaluate()", 5.0),
        {"cell_type": "markdown", "source": "### Plot"},
        code("plot()", 2.0),
        code("never_run()"),  # no papermill duration: counts as 0
    ]}
    b = time_breakdown.breakdown(nb)
    assert b["total_s"] == pytest.approx(38.0)
    assert [s["section"] for s in b["sections"]] == ["Train", "Plot", "(top)"]
    assert b["sections"][0]["seconds"] == pytest.approx(35.0)
    assert b["cells"][0] == {"section": "Train", "cell": "fit(model)", "seconds": 30.0}


def test_missing_notebook_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        time_breakdown.main([str(tmp_path / "99_nothing.ipynb")])
    assert "no such notebook" in capsys.readouterr().err
