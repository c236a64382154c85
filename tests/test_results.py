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


def test_per_image_vectors_are_stored_beside_the_csv(tmp_path):
    import numpy as np
    vec = np.array([True, False, True])
    rows = [{"method": "a", "metric": "top1", "value": 66.7, "correct": vec},
            {"method": "b", "metric": "top1", "value": 1.0}]
    h = results.record("exp", {"run": 1}, rows, root=tmp_path)
    assert "correct" in rows[0]  # the caller's row is untouched
    assert len(list((tmp_path / "exp").glob(f"*{h}.npz"))) == 1  # beside <label>_<hash>.csv
    df = results.load("exp", root=tmp_path, correct=True)
    assert df.correct[0].tolist() == [True, False, True] and df.correct[1] is None
    assert "correct" not in results.load("exp", root=tmp_path).columns
    # a rerun without vectors leaves none behind, and no temporary files remain
    results.record("exp", {"run": 1}, rows[1:], root=tmp_path)
    assert not list((tmp_path / "exp").glob(f"*{h}.npz"))
    assert not list((tmp_path / "exp").glob("*.tmp"))
    with pytest.raises(ValueError, match="1-D vector"):
        results.record("exp", {"run": 2}, [{"method": "a", "metric": "m", "value": 1,
                                            "correct": np.zeros((2, 2))}], root=tmp_path)
