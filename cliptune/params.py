"""Notebook parameters: declared in the ``parameters`` cell, checked in the cell after it.

Introduced in notebook 00. The parameters cell ends with ``params.declare(globals())``, which
remembers the names it assigned and their defaults. papermill puts the values a user passes
(``-p NAME value``) in a cell of its own after that one; the setup cell's
``params.setup(globals())`` then checks every parameter against its default:

- a name the notebook does not declare is an error (papermill itself only warns), with the
  closest declared name; ``SEED`` is taken for ``SEEDS`` (and any ``X`` for a declared ``XS``);
- a value of the wrong type is an error naming the type the default has; a single value or a
  comma-separated string is accepted where a tuple is declared;
- values outside what the default implies are errors: tasks, domains and zoo models must
  exist, counts that default to a positive number must be positive, WiSE-FT mixing weights lie
  in [0, 1];
- ``FAST_DEV_RUN = None`` means "ask CLIPTUNE_FAST_DEV_RUN"; the mode in force and the folders
  the run writes to are printed, and a fast run writes under build/fast/ (runtime).

Every problem found is reported in one :class:`ParameterError`.
"""
from __future__ import annotations

import ast
import difflib
import numbers
import os

from cliptune import runtime

_DEFAULTS = "_PARAMETER_DEFAULTS"
_COUNT = "_PARAMETER_CELL_COUNT"


class ParameterError(ValueError):
    """A notebook parameter that is unknown, of the wrong type or out of range."""


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _assigned(source: str) -> list[str]:
    """Names assigned at the top level of a cell's source."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name) and n.id not in names:
                    names.append(n.id)
    return names


def _is_param_name(name: str) -> bool:
    return name.isupper() and not name.startswith("_")


def declare(namespace: dict) -> None:
    """Call last in the parameters cell: remembers its names and default values."""
    ip = _ipython()
    names = None
    if ip is not None and "In" in ip.user_ns and ip.user_ns["In"]:
        names = [n for n in _assigned(ip.user_ns["In"][-1]) if _is_param_name(n)]
        namespace[_COUNT] = len(ip.user_ns["In"]) - 1  # this cell's index in the history
    if not names:  # outside IPython (or an unusual cell): every UPPER-case name
        names = [n for n in namespace if _is_param_name(n)]
    namespace[_DEFAULTS] = {n: namespace[n] for n in names if n in namespace}


def _injected(namespace: dict, declared: dict) -> list[str]:
    """Parameter-like names set after the parameters cell (papermill's injected cell)."""
    ip = _ipython()
    count = namespace.get(_COUNT)
    if ip is not None and count is not None and "In" in ip.user_ns:
        history = ip.user_ns["In"]
        names = []
        for src in history[count + 1:len(history) - 1]:  # between that cell and this one
            names += [n for n in _assigned(src) if _is_param_name(n) and n not in names]
        return names
    return [n for n in namespace if _is_param_name(n) and n not in declared]


# --------------------------------------------------------------------------- vocabularies
def _vocabularies() -> dict[str, tuple]:
    from cliptune import models, world
    vocab = {"task": tuple(world.TASKS), "domain": tuple(world.DOMAINS),
             "tiny model": tuple(models.ZOO)}
    try:
        from cliptune import methods
        vocab["method"] = tuple(methods.available())
    except (ImportError, AttributeError):
        pass
    return vocab


def _scalars(value):
    return value if isinstance(value, (tuple, list)) else (value,)


def _vocabulary_of(default):
    """The known vocabulary every default value belongs to, if any: (kind, allowed)."""
    items = [v for v in _scalars(default) if isinstance(v, str)]
    if not items or len(items) != len(_scalars(default)):
        return None
    for kind, allowed in _vocabularies().items():
        if all(v in allowed for v in items):
            return kind, allowed
    return None


# --------------------------------------------------------------------------- one value
def _type_name(default) -> str:
    if isinstance(default, bool):
        return "True or False"
    if isinstance(default, numbers.Integral):
        return "an integer"
    if isinstance(default, numbers.Real):
        return "a number"
    if isinstance(default, str):
        return "a string"
    return type(default).__name__


def _coerce_scalar(name, value, default):
    """``value`` as the type of ``default``; raises ParameterError naming ``name``."""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    elif isinstance(default, numbers.Integral):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, numbers.Real):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, tuple):
        if isinstance(value, (tuple, list)):
            return tuple(value)
    else:
        return value
    raise ParameterError(f"{name} must be {_type_name(default)} like its default {default!r}, "
                         f"not {value!r} ({type(value).__name__})")


def _range_problem(name: str, value, default) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if "ALPHA" in name and not 0.0 <= value <= 1.0:
        return f"{name} must lie in [0, 1] (a mixing weight), not {value!r}"
    if "SEED" in name:
        return None if value >= 0 else f"{name} must be zero or positive (a seed), not {value!r}"
    if isinstance(default, numbers.Real) and not isinstance(default, bool):
        if default > 0 and value <= 0:
            return f"{name} must be positive, not {value!r}"
        if default >= 0 and value < 0:
            return f"{name} must be zero or positive, not {value!r}"
    return None


def _check_value(name: str, value, default, rules: dict):
    """The value normalised to its default's shape, and the problems found."""
    if name in rules:
        check, allowed = rules[name]
        try:
            ok = check(value)
        except Exception:  # noqa: BLE001 - a rule that cannot judge a value rejects it
            ok = False
        return value, ([] if ok else [f"{name} = {value!r} is not allowed; allowed: {allowed}"])
    if default is None:
        return value, []
    problems = []
    if isinstance(default, tuple):
        if isinstance(value, str) and not (default and isinstance(default[0], str)):
            value = tuple(v for v in value.replace("(", "").replace(")", "").split(",")
                          if v.strip())
        elif isinstance(value, str) and "," in value:
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        elif not isinstance(value, (tuple, list)):
            value = (value,)
        value = tuple(value)
        if default and not value:
            return value, [f"{name} needs at least one value, like its default {default!r}"]
        like = default[0] if default else None
        out = []
        for v in value:
            try:
                v = _coerce_scalar(name, v, like) if like is not None else v
            except ParameterError:
                return value, [f"{name} must hold values of the kind of its default {default!r}"
                               f" ({_type_name(like)} each), not {value!r}"]
            out.append(v)
        value = tuple(out)
    else:
        try:
            value = _coerce_scalar(name, value, default)
        except ParameterError as err:
            return value, [str(err)]
    for v in _scalars(value):
        msg = _range_problem(name, v, default[0] if isinstance(default, tuple) and default
                             else default)
        if msg:
            problems.append(msg)
            break
    vocab = _vocabulary_of(default)
    if vocab is not None:
        kind, allowed = vocab
        bad = [v for v in _scalars(value) if v not in allowed]
        if bad:
            close = difflib.get_close_matches(str(bad[0]), allowed, n=1)
            problems.append(f"{name}: {', '.join(map(repr, bad))} is not a {kind}"
                            + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; allowed: {', '.join(allowed)}")
    return value, problems


# --------------------------------------------------------------------------- the notebook API
def check(namespace: dict, rules: dict | None = None) -> dict:
    """Check and normalise the declared parameters in ``namespace`` (in place); returns them.

    ``rules``: optional ``{NAME: (predicate, "allowed values in words")}`` for parameters whose
    range the default cannot tell."""
    declared = namespace.get(_DEFAULTS)
    if declared is None:
        raise ParameterError("the parameters are not declared: run the notebook's first cell "
                             "(the one tagged `parameters`) before this one")
    rules = rules or {}
    problems = []
    for name in _injected(namespace, declared):
        if name in declared:
            continue
        plural = name + "S"
        if plural in declared and plural not in _injected(namespace, declared):
            namespace[plural] = namespace.pop(name)  # SEED=3 -> SEEDS=(3,)
            continue
        close = difflib.get_close_matches(name, list(declared), n=1)
        problems.append(f"{name} is not a parameter of this notebook"
                        + (f" (did you mean {close[0]}?)" if close else ""))
        namespace.pop(name, None)
    values = {}
    for name, default in declared.items():
        value, found = _check_value(name, namespace.get(name, default), default, rules)
        problems += found
        values[name] = value
    if problems:
        allowed = ", ".join(f"{n} (default {d!r})" for n, d in declared.items())
        raise ParameterError("bad notebook parameters:\n  - " + "\n  - ".join(problems)
                             + f"\nThis notebook's parameters are: {allowed}")
    namespace.update(values)
    return values


def setup(namespace: dict, rules: dict | None = None) -> bool:
    """Check the parameters (:func:`check`), resolve FAST_DEV_RUN, choose the output folders
    and print the mode in force. Returns FAST_DEV_RUN as a bool."""
    check(namespace, rules)
    fast = namespace.get("FAST_DEV_RUN")
    source = "set as a parameter" if fast is not None else \
        f"from CLIPTUNE_FAST_DEV_RUN={os.environ.get('CLIPTUNE_FAST_DEV_RUN', '') or 'unset'}"
    fast = runtime.fast_dev_run() if fast is None else bool(fast)
    namespace["FAST_DEV_RUN"] = fast
    out = runtime.configure_outputs(fast)
    mode = ("FAST mode (a few steps per run: the numbers check the code path only)" if fast
            else "full run")
    print(f"{mode}; FAST_DEV_RUN={fast} ({source}); device {runtime.device()}\n"
          f"writes figures to {runtime.display_path(out['FIGURES_DIR'])}/, results to "
          f"{runtime.display_path(out['RESULTS_DIR'])}/, checkpoints to "
          f"{runtime.display_path(out['CHECKPOINT_DIR'])}/")
    return fast
