"""Load a script of tools/ or benchmarks/ as a module, for the tests of its functions."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_tool(relpath: str):
    """``load_tool("tools/build_notebooks.py")``: the script run as a module (its ``__main__``
    block does not run)."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
