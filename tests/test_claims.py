import json

import numpy as np
import pytest

from cliptune import claims, compare


def _cmp(low, high):
    d = (low + high) / 2
    return compare.Comparison("a", "b", "accuracy", d, low, high, compare.verdict(low, high),
                              50 + d, 50.0, 1, 3, 100)


def test_every_claim_has_a_source_and_a_known_expectation():
    all_claims = claims.load()
    assert len(all_claims) >= 20
    for c in all_claims.values():
        assert c["source"] and c["claim"]
        assert c["paper_value"] == "n/a" or isinstance(c["paper_value"], (int, float))
    for nb in ("02", "03", "04", "05", "06", "07"):
        assert claims.load(nb), f"notebook {nb} has no claims"


def test_judge():
    better = claims.load()["coop_base_gain"]
    assert claims.judge(better, _cmp(1, 3)) == "reproduced"
    assert claims.judge(better, _cmp(-1, 3)) == "no detectable difference"
    assert claims.judge(better, _cmp(-3, -1)) == "not reproduced (opposite)"
    assert claims.judge(better, None) == "not run"
    similar = {"expect": "similar", "margin": 1.0}
    assert claims.judge(similar, _cmp(-0.5, 0.5)) == "reproduced"
    assert claims.judge(similar, _cmp(2, 3)) == "not reproduced"
    assert claims.judge(similar, _cmp(-0.5, 2)) == "inconclusive"
    assert claims.judge({"expect": "not_better"}, _cmp(-1, 1)) == "reproduced"
    assert claims.judge({"expect": "not_worse"}, _cmp(-3, -1)) == "not reproduced"


def test_table_lists_every_claim_of_a_notebook(capsys):
    df = claims.table({"coop_base_gain": _cmp(1, 3),
                       "coop_new_drop": (_cmp(-1, 2), "the prompt still starts at 'a photo of a'")},
                      notebook="02")
    assert df.id.tolist()[:2] == ["coop_base_gain", "coop_new_drop"]
    assert set(claims.load("02")) == set(df.id)
    assert df.verdict.tolist()[:2] == ["reproduced", "no detectable difference"]
    assert df.diagnostic[1].startswith("the prompt") and df.diagnostic[0] == ""
    assert (df.verdict[2:] == "not run").all()
    assert "+13.35" in df["paper (a - b)"][0]
    claims.show(df)
    assert "[reproduced]" in capsys.readouterr().out


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown claim ids"):
        claims.table({"no_such_claim": None})
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"claims": [{"id": "x", "notebook": "02", "claim": "c",
                                           "expect": "maybe", "paper_value": 1, "source": "s"}]}))
    with pytest.raises(ValueError, match="expects 'maybe'"):
        claims.load(path=bad)


def test_table_shows_each_task_and_flags_a_split(capsys):
    c = _cmp(-1, 3)
    c.n_tasks, c.unit = 2, "domain"
    c.per_task = {"sketch": (4.0, 3.0, 5.0), "cartoon": (-2.0, -3.0, -1.0)}
    df = claims.table([("coop_base_gain", c)])
    assert "2 domains" in df["tiny world (a - b, 95% CI)"][0]
    assert df["per task"][0].startswith("sketch +4.0 [+3.0, +5.0]; cartoon -2.0")
    assert "the domains disagree" in df["per task"][0]
    claims.show(df)
    assert "each on its own: sketch" in capsys.readouterr().out
    one = claims.table([("coop_base_gain", _cmp(1, 3))])
    assert one["per task"][0] == ""


def test_similar_claims_print_their_margin():
    similar = [k for k, v in claims.load().items() if v["expect"] == "similar"]
    assert similar, "no 'similar' claim to check"
    df = claims.table([(similar[0], _cmp(-0.5, 0.5))])
    assert "within" in df["tiny world (a - b, 95% CI)"][0]


def test_a_reproduced_claim_keeps_only_a_convergence_caveat_as_its_why():
    caveat = "UNCONVERGED runs behind a vs b: 1 of 6 (a / 2): it compares training budgets"
    df = claims.table({"coop_base_gain": (_cmp(1, 3), f"runs of a and b: 6 of 6; {caveat}"),
                       "coop_new_drop": (_cmp(-1, 2), f"the prompt; {caveat}")}, notebook="02")
    assert df.verdict[0] == "reproduced" and df.diagnostic[0] == caveat
    assert df.diagnostic[1] == f"the prompt; {caveat}"  # not reproduced: the whole why
    plain = claims.table({"coop_base_gain": (_cmp(1, 3), "runs of a and b: 6 of 6")})
    assert plain.diagnostic[0] == ""
