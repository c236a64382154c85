import pathlib

from tool_loader import load_tool

bench = load_tool("benchmarks/bench_reproduce.py")

BOOKS = [f"notebooks/{n}_x.ipynb" for n in ("00", "01", "02", "03", "04", "05", "06", "07")]


def test_the_longest_chain_starts_first():
    # 05 alone is the longest notebook, but 02 heads 02 -> 03 -> 07, a longer chain
    secs = {"notebooks/00_x.ipynb": 300, "notebooks/01_x.ipynb": 100,
            "notebooks/02_x.ipynb": 2000, "notebooks/03_x.ipynb": 200,
            "notebooks/04_x.ipynb": 1000, "notebooks/05_x.ipynb": 4000,
            "notebooks/06_x.ipynb": 60, "notebooks/07_x.ipynb": 2500}
    order = [pathlib.Path(b).name[:2] for b in bench.start_order(BOOKS, bench.NEEDS, secs)]
    assert order == ["02", "05", "04", "03", "07", "00", "01", "06"]


def test_without_a_recorded_run_the_numbered_order_is_kept():
    assert bench.start_order(BOOKS, bench.NEEDS, {}) == BOOKS
