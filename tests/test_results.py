import multiprocessing as mp

import pytest

from cliptune import results


def _write(args):
    root, i = args
    results.record("exp", {"run": i}, [{"method": "m", "metric": "acc", "value": i, "seed": i}],
                   root=root)


def test_concurrent_writers_lose_nothing(tmp_path):
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_write, [(str(tmp_path), i) for i in range(24)])
    df = results.load("exp", root=tmp_path)
    assert sorted(df["value"].tolist()) == list(range(24))


def test_rerun_with_same_config_replaces_rows(tmp_path):
    cfg = {"method": "coop", "seed": 1}
    results.record("exp", cfg, [{"method": "coop", "metric": "acc", "value": 1.0}], root=tmp_path)
    results.record("exp", cfg, [{"method": "coop", "metric": "acc", "value": 2.0}], root=tmp_path)
    h = results.record("exp", {**cfg, "seed": 2},
                       [{"method": "coop", "metric": "acc", "value": 3.0}], root=tmp_path)
    df = results.load("exp", root=tmp_path)
    assert sorted(df["value"].tolist()) == [2.0, 3.0]
    assert results.load("exp", root=tmp_path, hashes=[h])["value"].tolist() == [3.0]
    assert results.exists("exp", cfg, root=tmp_path)


def test_bad_rows_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        results.record("exp", {}, [{"method": "m"}], root=tmp_path)
    with pytest.raises(ValueError, match="unknown columns"):
        results.record("exp", {}, [{"method": "m", "metric": "a", "value": 1, "colour": 2}],
                       root=tmp_path)
    assert results.load("nothing", root=tmp_path).empty


def test_hashes_that_look_like_numbers_stay_strings(tmp_path, monkeypatch):
    # "041e08637717" once came back from read_csv as a float (infinity) and rows vanished
    monkeypatch.setattr(results, "config_hash", lambda config: "041e08637717")
    h = results.record("exp", {"a": 1}, [{"method": "m", "metric": "acc", "value": 1.0}],
                       root=tmp_path)
    df = results.load("exp", root=tmp_path, hashes=[h])
    assert df["config_hash"].tolist() == ["041e08637717"] and len(df) == 1
