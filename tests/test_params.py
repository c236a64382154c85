"""Notebook parameters: unknown names, wrong types and out-of-range values are one clear error."""
import pytest

from cliptune import params, runtime


def declared(**defaults):
    ns = dict(defaults)
    params.declare(ns)
    return ns


def notebook():
    return declared(FAST_DEV_RUN=None, SEEDS=(1, 2, 3), SHOTS=16, MODEL_OLD="tiny-v1",
                    TASKS=("objects", "shapes"), DOMAINS=("sketch",), LR=3e-4,
                    ALPHAS=(0.0, 0.5, 1.0), DATA_ROOT=None, RETRAIN=False)


def test_defaults_pass_unchanged():
    ns = notebook()
    values = params.check(ns)
    assert values["SEEDS"] == (1, 2, 3) and values["SHOTS"] == 16


def test_seed_is_taken_for_seeds():
    ns = notebook()
    ns["SEED"] = 3
    params.check(ns)
    assert ns["SEEDS"] == (3,) and "SEED" not in ns


@pytest.mark.parametrize("name, value, message", [
    ("SHOTZ", 4, r"SHOTZ is not a parameter of this notebook \(did you mean SHOTS\?\)"),
    ("SHOTS", "abc", r"SHOTS must be an integer like its default 16, not 'abc'"),
    ("SHOTS", 0, r"SHOTS must be positive, not 0"),
    ("SEEDS", "x", r"SEEDS must hold values of the kind of its default"),
    ("SEEDS", (), r"SEEDS needs at least one value"),
    ("SEEDS", (-1,), r"SEEDS must be zero or positive"),
    ("TASKS", ("objets",), r"TASKS: 'objets' is not a task \(did you mean 'objects'\?\); "
                           r"allowed: shapes, colours, objects"),
    ("DOMAINS", "sketchy", r"DOMAINS: 'sketchy' is not a domain"),
    ("MODEL_OLD", "tiny-v3", r"MODEL_OLD: 'tiny-v3' is not a tiny model.*allowed: tiny-v1"),
    ("ALPHAS", (0.5, 2.0), r"ALPHAS must lie in \[0, 1\]"),
    ("LR", -1.0, r"LR must be positive"),
    ("RETRAIN", "maybe", r"RETRAIN must be True or False"),
])
def test_bad_parameter_is_one_clear_error(name, value, message):
    ns = notebook()
    ns[name] = value
    with pytest.raises(params.ParameterError, match=message) as err:
        params.check(ns)
    assert "This notebook's parameters are: FAST_DEV_RUN" in str(err.value)


def test_every_problem_is_in_the_one_error():
    ns = notebook()
    ns.update(SHOTZ=4, SHOTS="abc")
    with pytest.raises(params.ParameterError) as err:
        params.check(ns)
    assert "SHOTZ" in str(err.value) and "'abc'" in str(err.value)


def test_papermill_style_values_are_normalised():
    ns = notebook()
    ns.update(SEEDS="1,2", TASKS="shapes", SHOTS="4", LR=1, RETRAIN="True", ALPHAS=[0, 1])
    params.check(ns)
    assert ns["SEEDS"] == (1, 2) and ns["TASKS"] == ("shapes",) and ns["SHOTS"] == 4
    assert ns["LR"] == 1.0 and ns["RETRAIN"] is True and ns["ALPHAS"] == (0.0, 1.0)


def test_explicit_rules():
    ns = notebook()
    ns["SHOTS"] = 3
    with pytest.raises(params.ParameterError, match=r"SHOTS = 3 is not allowed; allowed: 1, 2"):
        params.check(ns, {"SHOTS": (lambda v: v in (1, 2), "1, 2")})


def test_undeclared_notebook_is_an_error():
    with pytest.raises(params.ParameterError, match="run the notebook's first cell"):
        params.check({"SEEDS": (1,)})


def test_setup_resolves_fast_mode_and_routes_outputs_under_build(monkeypatch, capsys):
    for var in ("CLIPTUNE_FIGURES", "CLIPTUNE_RESULTS", "CLIPTUNE_CHECKPOINTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLIPTUNE_FAST_DEV_RUN", "1")
    ns = notebook()
    try:
        assert params.setup(ns) is True and ns["FAST_DEV_RUN"] is True
        out = capsys.readouterr().out
        assert "FAST mode" in out and "CLIPTUNE_FAST_DEV_RUN=1" in out
        assert "build/fast/figures" in out and str(runtime.ROOT) not in out
        assert runtime.RESULTS_DIR == runtime.ROOT / "build" / "fast" / "results"
        ns = notebook()
        ns["FAST_DEV_RUN"] = False  # the notebook's explicit choice wins
        assert params.setup(ns) is False
        assert "full run" in capsys.readouterr().out
        assert runtime.FIGURES_DIR == runtime.ROOT / "figures"
        monkeypatch.setenv("CLIPTUNE_RESULTS", str(runtime.ROOT / "build" / "mine"))
        ns = notebook()
        params.setup(ns)
        assert runtime.RESULTS_DIR == runtime.ROOT / "build" / "mine"  # the user's folder wins
    finally:
        runtime.configure_outputs(False)


def test_declare_reads_the_parameters_cell_in_ipython():
    from IPython.testing.globalipapp import start_ipython
    ip = start_ipython()
    ip.run_cell("from cliptune import params", store_history=True)
    ip.run_cell("SHOTS = 16\nSEEDS = (1, 2)\nparams.declare(globals())", store_history=True)
    ip.run_cell("# Parameters\nSHOTZ = 4\n", store_history=True)  # papermill's injected cell
    res = ip.run_cell("params.check(globals())", store_history=True)
    assert isinstance(res.error_in_exec, params.ParameterError)
    assert "SHOTZ is not a parameter" in str(res.error_in_exec)
    ip.run_cell("SHOTZ = 4", store_history=True)  # a stale global from a later cell...
    ip.run_cell("SHOTS = 8\nSEEDS = (1, 2)\nparams.declare(globals())", store_history=True)
    res = ip.run_cell("params.check(globals())", store_history=True)
    assert res.error_in_exec is None  # ...is not taken for an injected parameter
