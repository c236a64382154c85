"""selection.select hands back its runs' training histories, so a notebook can report the
convergence of the runs behind a design choice. Stand-in training and scoring: no model runs."""
import json

import numpy as np

from cliptune import convergence, protocols, selection


def test_select_attaches_every_runs_history(monkeypatch):
    def fake_train(method, clip, train_set, seed, train_cfg, **cfg):
        # a plateau for the default, an objective still falling for the switch
        obj = [1.2, 0.50, 0.50] if cfg["label"] == "default" else [1.2, 0.60, 0.50]
        return cfg["label"], {"loss": [obj[-1]] * 200, "objective": obj, "seed": seed}

    def fake_score(label, clip, ds):
        right = np.arange(100) < (70 if label == "default" else 60)
        return {"value": 100.0 * right.mean(), "correct": right}

    monkeypatch.setattr(protocols, "train_method", fake_train)
    monkeypatch.setattr(protocols, "score", fake_score)
    monkeypatch.setattr(selection, "check_validation_set", lambda *a, **k: None)
    tr, val = selection.carve("shapes", 2, seed=1)
    variants = {k: {"label": k} for k in ("default", "switch")}
    table, chosen = selection.select("x", variants, tr, val, seeds=(1, 2),
                                     load=lambda name: name)
    hist = table.attrs["histories"]
    assert sorted(hist) == [("default", 1), ("default", 2), ("switch", 1), ("switch", 2)]
    assert hist["switch", 2]["seed"] == 2 and hist["default", 1]["objective"][-1] == 0.50
    conv = convergence.table(hist)
    assert conv.converged.tolist() == [True, True, False, False]
    assert convergence.summary_of(conv, "switch", "default").endswith("2 unconverged")
    # the stored record of the choice stays plain JSON (the histories are not written there)
    blob = json.loads(selection._choice_path("x").read_text())
    assert blob["chosen"] == chosen == "default" and "histories" not in blob


def test_report_convergence_gives_each_variant_its_runs_and_the_defaults(capsys):
    import pandas as pd
    flat, falling = [1.2, 0.50, 0.50], [1.2, 0.60, 0.50]
    table = pd.DataFrame({"variant": ["default", "switch"]})
    table.attrs["histories"] = {(v, seed): {"loss": [0.5] * 200,
                                            "objective": falling if v == "switch" else flat}
                                for v in ("default", "switch") for seed in (1, 2)}
    runs = selection.report_convergence(table, "x selection runs")
    out = capsys.readouterr().out
    assert len(runs) == 4 and "x selection runs: 0 of 4 on their paper's recipe" in out
    assert table.convergence[0].startswith("selection runs of default: ")
    assert table.convergence[1].startswith("selection runs of switch and default: ")
    assert table.convergence[1].endswith("2 unconverged")
    assert "UNCONVERGED runs behind switch vs default: 2 of 4" in out
