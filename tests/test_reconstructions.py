"""Issue 8: the reconstructions use their mechanism, the baselines run as their papers run them,
and designs are chosen on validation data only. Random-init tiny CLIPs throughout."""
import copy

import numpy as np
import pytest
import torch

from cliptune import (data, diagnostics, features, methods, models, protocols, selection, train,
                      world)
from cliptune.methods import arf as arf_mod
from cliptune.methods import linear_probe as lp_mod

CLASSES = ("circle", "square", "star")
FAST = train.TrainConfig(epochs=2, batch_size=8, lr=1e-2, optimizer="adamw", weight_decay=0.0,
                         warmup_epochs=0, n_views=0, max_steps=3)


@pytest.fixture(scope="module")
def small_train():
    ds = data.tiny("shapes", "train").select_classes(list(CLASSES))
    keep = np.concatenate([np.flatnonzero(ds.labels == c)[:8] for c in range(3)])
    return ds.subset(keep)


def _features_batch(clip, ds, n=12):
    f = features.image_features(clip, ds)[:n]
    return methods.Batch(labels=torch.as_tensor(ds.labels[:n]), index=torch.arange(n), features=f)


# --------------------------------------------------------------------------- classic probe
def test_classic_probe_matches_scikit_learn_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(60, 8, generator=gen), dim=-1)
    y = torch.arange(60) % 3
    x[y == 1, 0] += 0.8  # some signal, not separable
    for C in (0.1, 2.0):
        w, b = lp_mod.fit_logistic(x, y, 3, C, max_iter=1000)
        x64 = x.double().numpy()  # scikit-learn solves in the input's precision
        ref = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(x64, y.numpy())
        assert np.allclose(w.numpy(), ref.coef_, atol=1e-4)
        # intercepts are defined up to a shared constant: compare the probabilities
        p = torch.softmax(x @ w.T + b, -1).numpy()
        assert np.allclose(p, ref.predict_proba(x64), atol=1e-5)
    with pytest.raises(ValueError, match="C .* must be positive"):
        lp_mod.fit_logistic(x, y, 3, 0.0)


def test_classic_probe_solve_does_not_depend_on_its_start():
    # weak regularisation (C = 1e4) on nearly separable data is where a short solve stops far
    # from the optimum (100 iterations: probabilities 0.1 apart between the two starts); at the
    # default budget the probe must not depend on the start
    gen = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(200, 32, generator=gen), dim=-1)
    y = torch.arange(200) % 10
    x[:, :10] += 0.2 * torch.nn.functional.one_hot(y, 32)[:, :10]
    start = (torch.randn(10, 32, generator=gen), torch.randn(10, generator=gen))
    w1, b1 = lp_mod.fit_logistic(x, y, 10, 1e4)
    w2, b2 = lp_mod.fit_logistic(x, y, 10, 1e4, start=start)
    p1, p2 = (torch.softmax(x @ w.T + b, -1) for w, b in ((w1, b1), (w2, b2)))
    assert torch.allclose(p1, p2, atol=1e-3)
    assert lp_mod.LinearProbeConfig().max_iter >= 1000  # the probe solves with that budget


def test_linear_probe_is_the_classic_probe_by_default(tiny_clip, small_train):
    lp = methods.create("linear-probe", tiny_clip, C=0.5).attach(tiny_clip, small_train.classnames)
    assert lp.config.solver == "lbfgs" and not any(p.requires_grad for p in lp.parameters())
    m, hist = protocols.train_method("linear-probe", tiny_clip, small_train, C=0.5)
    assert hist == {}  # solved by on_train_start, nothing for train.fit
    x = features.image_features(tiny_clip, small_train)
    w, b = lp_mod.fit_logistic(x, torch.as_tensor(small_train.labels), 3, 0.5)
    assert torch.allclose(m.weight, w) and torch.allclose(m.bias, b)
    assert float(m.C_chosen) == 0.5 and m.search["how"] == "fixed by config"
    zs = methods.create("linear-probe-zs", tiny_clip)  # today's probe, a named variant
    assert (zs.config.solver, zs.config.init) == ("sgd", "zero-shot")
    assert methods.preset("linear-probe", "zero-shot-sgd") == {"solver": "sgd",
                                                               "init": "zero-shot"}


def test_probe_chooses_c_on_validation_or_cross_validation(tiny_clip, small_train):
    grid = dict(c_grid=(0.01, 1.0, 100.0), refine_steps=1)
    cv = methods.create("linear-probe", tiny_clip, **grid).attach(tiny_clip, small_train.classnames)
    cv.on_train_start(small_train)
    assert cv.search["how"].startswith("4-fold") and cv.search["C"] in dict(cv.search["table"])
    assert float(cv.C_chosen) == cv.search["C"]
    val = small_train.subset(range(0, 24, 2))
    held = methods.create("linear-probe", tiny_clip, **grid).attach(tiny_clip,
                                                                   small_train.classnames)
    held.use_validation_set(val)
    held.on_train_start(small_train)
    assert held.search["how"].startswith("validation set (12")
    one_shot = small_train.subset([0, 8, 16])
    fb = methods.create("linear-probe", tiny_clip).attach(tiny_clip, small_train.classnames)
    fb.on_train_start(one_shot)
    assert fb.search["how"].startswith("fallback") and fb.search["C"] == 1.0
    with pytest.raises(ValueError, match="solver must be one of"):
        methods.create("linear-probe", tiny_clip, solver="adam")
    with pytest.raises(ValueError, match="C grid is empty"):
        lp_mod.search_c(features.image_features(tiny_clip, small_train), small_train.labels, 3, ())


# --------------------------------------------------------------------------- Tip-Adapter
def test_probe_solve_is_kept_and_reloaded(tiny_clip, small_train):
    grid = dict(c_grid=(0.01, 1.0, 100.0), refine_steps=1)
    first = methods.create("linear-probe", tiny_clip, **grid).attach(tiny_clip,
                                                                    small_train.classnames)
    first.on_train_start(small_train)
    path = first.solve_path(small_train)
    assert path.exists() and path.suffix == ".safetensors"
    again = methods.create("linear-probe", tiny_clip, **grid).attach(tiny_clip,
                                                                    small_train.classnames)
    again.on_train_start(small_train)  # loaded, not solved: the same head and search
    assert torch.equal(again.weight, first.weight) and torch.equal(again.bias, first.bias)
    assert again.search == first.search and float(again.C_chosen) == first.search["C"]
    held = methods.create("linear-probe", tiny_clip, **grid).attach(tiny_clip,
                                                                   small_train.classnames)
    held.use_validation_set(small_train.subset(range(0, 24, 2)))
    assert held.solve_path(small_train) != path  # another validation set is another solve
    other = methods.create("linear-probe", tiny_clip, C=0.5).attach(tiny_clip,
                                                                  small_train.classnames)
    assert other.solve_path(small_train) != path  # and so is another config
    models.save_weights({"weight": first.weight}, path)  # a foreign file where a solve belongs
    with pytest.raises(ValueError, match="not a probe solve.*delete it and rerun"):
        methods.create("linear-probe", tiny_clip, **grid).attach(
            tiny_clip, small_train.classnames).on_train_start(small_train)


def test_tip_adapter_alpha_is_on_the_papers_scale(tiny_clip, small_train):
    tip = methods.create("tip-adapter", tiny_clip, n_views=1).attach(tiny_clip,
                                                                    small_train.classnames)
    tip.on_train_start(small_train)
    scale = float(tiny_clip.model.logit_scale.exp())
    assert float(tip.alpha) == pytest.approx(1.17 * scale / 100)
    raw = methods.create("tip-adapter-f", tiny_clip, n_views=1,
                         **methods.preset("tip-adapter-f", "raw-alpha"))
    raw.attach(tiny_clip, small_train.classnames).on_train_start(small_train)
    assert float(raw.alpha) == 1.0
    with pytest.raises(ValueError, match="alpha_scale must be one of"):
        methods.create("tip-adapter", tiny_clip, alpha_scale="logits")


# --------------------------------------------------------------------------- MaPLe
def test_maple_official_prompt_depth_and_cloned_couplings(tiny_clip):
    m = methods.create("maple", tiny_clip).attach(tiny_clip, CLASSES)
    assert torch.equal(m.prompts.tokens, tiny_clip.tokenize([f"a photo of a {c}." for c in
                                                             CLASSES]))
    assert m.config.depth == 9 and m.depth == 3  # min(9, 3 text blocks): every block
    first = m.deep_proj[0]
    for layer in m.deep_proj[1:]:
        assert layer is not first
        assert torch.equal(layer.weight, first.weight) and torch.equal(layer.bias, first.bias)
    old = methods.create("maple", tiny_clip, **methods.preset("maple", "workbook-v1"))
    old.attach(tiny_clip, CLASSES)
    assert torch.equal(old.prompts.tokens, tiny_clip.tokenize([f"X X {c}." for c in CLASSES]))
    assert not torch.equal(old.deep_proj[0].weight, old.deep_proj[1].weight)
    restore = methods.create("restore", tiny_clip)  # RESTORE is built on MaPLe's code
    assert torch.equal(restore.deep_proj[0].weight, restore.deep_proj[1].weight)
    with pytest.raises(KeyError, match="no preset 'v0'"):
        methods.preset("maple", "v0")


# --------------------------------------------------------------------------- ContCoOp
def _with_moved_class_tokens(clip, classnames, scale=0.5):
    """A copy of ``clip`` whose token embeddings move only for the class names' tokens."""
    other = copy.deepcopy(clip)
    ids = torch.unique(clip.tokenize(list(classnames)))
    words = torch.unique(clip.tokenize(["a photo of a"]))
    moved = ids[~torch.isin(ids, words)]
    moved = moved[moved < other.model.token_embedding.weight.shape[0] - 2]  # not SOS / EOT
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        emb = other.model.token_embedding.weight
        emb[moved] += scale * torch.randn(len(moved), emb.shape[1], generator=gen)
    other.name = "tiny-moved"
    return other


def test_contcoop_readout_prompts_follow_only_the_class_embeddings(tiny_clip):
    moved = _with_moved_class_tokens(tiny_clip, CLASSES)
    ro = methods.create("contcoop", tiny_clip, prompt_form="readout")
    with torch.no_grad():
        p1 = ro.attach(tiny_clip, CLASSES).class_context().clone()
        p2 = ro.attach(moved, CLASSES).class_context().clone()
    assert not torch.allclose(p1, p2, atol=1e-6)
    follow = diagnostics.contcoop_follow(ro, tiny_clip, moved, CLASSES)
    assert follow["embedding_move"] > 0 and follow["prompt_move"] > 0
    # the residual form with its gate at 0 (where it starts, and near where it ended on main)
    # does not move at all: CoOp plus distillation
    res = methods.create("contcoop", tiny_clip)
    assert diagnostics.contcoop_follow(res, tiny_clip, moved, CLASSES)["prompt_move"] == 0.0
    with torch.no_grad():
        res.gamma.fill_(1.0)
    assert diagnostics.contcoop_follow(res, tiny_clip, moved, CLASSES)["prompt_move"] > 0


def test_contcoop_readout_starts_near_coop_and_diagnostics(tiny_clip):
    ro = methods.create("contcoop", tiny_clip, prompt_form="readout").attach(tiny_clip, CLASSES)
    coop = methods.create("coop", tiny_clip)
    with torch.no_grad():
        p = ro.class_context()
    cos = torch.nn.functional.cosine_similarity(p, coop.ctx.unsqueeze(0).expand_as(p), dim=-1)
    assert cos.min() > 0.9  # slot i reads out word i of "a photo of a"
    d = diagnostics.contcoop(ro)
    assert d["attention_share"] == 1.0 and 0 <= d["entropy_normalised"] < 0.3
    assert 0 <= d["class_mass"] < 0.2
    res = methods.create("contcoop", tiny_clip).attach(tiny_clip, CLASSES)
    d0 = diagnostics.contcoop(res)
    assert d0["attention_share"] == 0.0 and d0["class_mass"] == pytest.approx(1.0)
    assert 0 <= d0["entropy_normalised"] <= 1
    with torch.no_grad():
        res.gamma.fill_(0.5)
    assert diagnostics.contcoop(res)["attention_share"] > 0
    with pytest.raises(TypeError, match="needs a ContCoOp"):
        diagnostics.contcoop(coop)
    with pytest.raises(ValueError, match="prompt_form='readout'.*class_embedding='tok'"):
        methods.create("contcoop", tiny_clip, prompt_form="readout", class_embedding="txt")
    with pytest.raises(ValueError, match="prompt_form='mix' is unknown"):
        methods.create("contcoop", tiny_clip, prompt_form="mix")


def test_contcoop_readout_trains_and_round_trips(tiny_clip, small_train, tmp_path):
    m = methods.create("contcoop", tiny_clip, prompt_form="readout")
    m.attach(tiny_clip, small_train.classnames, small_train.templates)
    before = m.query.detach().clone()
    train.fit(m, small_train, FAST, progress=False)
    assert not torch.equal(m.query, before)
    m.save(tmp_path / "ro.safetensors")
    loaded = methods.load(tmp_path / "ro.safetensors", tiny_clip, small_train.classnames,
                          small_train.templates)
    b = _features_batch(tiny_clip, small_train)
    with torch.no_grad():
        assert torch.equal(loaded(b), m(b))


# --------------------------------------------------------------------------- ARF
def test_fit_caption_drops_the_least_informative_clauses():
    words = lambda s: len(s.split()) + 2  # noqa: E731  a stand-in token count
    cap = ("a photo of a large plain red circle on a white background, with a plain surface; "
           "one object in total, drawn as a photo.")
    assert arf_mod.fit_caption(cap, words, 99) == cap  # fits: untouched
    short = arf_mod.fit_caption(cap, words, 20)
    assert words(short) <= 20 and short.startswith("a photo of a large plain red circle")
    assert "drawn as a photo" not in short and short.endswith(".")
    # the clause that names a class word of the task survives the one that does not
    keep = arf_mod.fit_caption("a big scene, one object in total, with a wavy pattern.", words,
                               10, keep_words={"wavy"})
    assert keep == "a big scene, with a wavy pattern."
    first_only = arf_mod.fit_caption("one two three four five six, seven.", words, 3)
    assert first_only == "one two three four five six."  # the first clause is never dropped


def test_arf_captions_fit_the_context(tiny_clip):
    ds = data.tiny("textures", "train")
    caps = [world.captioner(s) for s in ds.scenes[:120]]
    fitted, counts = arf_mod.fit_captions(tiny_clip, caps, {"plain", "striped", "dotted",
                                                            "checkered", "wavy"})
    assert counts["over_before"] > 0 and counts["over_after"] == 0
    n = arf_mod.context_length(tiny_clip)
    for c, f, s in zip(caps, fitted, ds.scenes[:120]):
        assert arf_mod.token_length(tiny_clip, f) <= n
        assert s.texture in f  # the attribute the task cares about is kept


def test_image_retrieval_never_returns_a_test_image(tiny_clip, small_train):
    images, captions = arf_mod.tiny_corpus("retrieval", 300, 0)
    test = data.tiny("shapes", "test").select_classes(list(CLASSES))
    forbidden = frozenset(arf_mod.image_hashes(test.images))
    assert not forbidden & set(arf_mod.image_hashes(images))  # separate seeds, by construction
    queries = np.stack([test.images[np.flatnonzero(test.labels == c)[0]] for c in range(3)])
    pool = np.concatenate([images, queries])  # each class's query image is in the pool
    kw = dict(by="image", query_images=queries, query_labels=np.arange(3))
    dirty = arf_mod.retrieve_anchors(tiny_clip, CLASSES, ("a photo of a {}.",), pool,
                                     list(captions) + ["bait"] * 3, k=2, **kw)
    assert any(i >= len(images) for i in dirty.indices)  # the check below is not vacuous
    clean = arf_mod.retrieve_anchors(tiny_clip, CLASSES, ("a photo of a {}.",), pool,
                                     list(captions) + ["bait"] * 3, k=2,
                                     exclude_hashes=forbidden, **kw)
    assert clean.n_excluded == 3 and all(i < len(images) for i in clean.indices)
    assert clean.by == "image"
    with pytest.raises(ValueError, match="needs the fine-tuning images"):
        arf_mod.retrieve_anchors(tiny_clip, CLASSES, ("{}",), images, captions, 2, by="image")
    with pytest.raises(ValueError, match="at least one fine-tuning image per class"):
        arf_mod.retrieve_anchors(tiny_clip, CLASSES, ("{}",), images, captions, 2, by="image",
                                 query_images=queries[:1], query_labels=[0])
    with pytest.raises(ValueError, match="retrieval must be one of"):
        arf_mod.retrieve_anchors(tiny_clip, CLASSES, ("{}",), images, captions, 2, by="caption")


@pytest.mark.parametrize("retrieval", ["text", "image"])
def test_arf_diagnostics(tiny_clip, small_train, retrieval):
    m = methods.create("arf", tiny_clip, corpus_size=300, k=3, exclude_tests="task",
                       retrieval=retrieval).attach(tiny_clip, small_train.classnames,
                                                   small_train.templates)
    m.on_train_start(small_train)
    d = diagnostics.arf(m)
    assert d["retrieval"] == retrieval and d["anchors"] == len(m.anchors)
    assert 0 <= d["retrieval_precision"] <= 1 and 0 <= d["ita_novel_attributes"] <= 1
    assert d["tca_novel_attributes"] > 0.5  # rich captions name colours, backgrounds, ...
    assert d["tca_over_context"][1] == 0.0
    assert m.anchors.scenes is not None and len(m.anchors.scenes) == len(m.anchors)
    with pytest.raises(ValueError, match="ARF retrieval must be one of"):
        bad = methods.create("arf", tiny_clip, retrieval="both")
        bad.attach(tiny_clip, small_train.classnames).on_train_start(small_train)


def test_attribute_diagnostic_helpers():
    assert diagnostics.novel_attribute_rate(
        ["a photo of a checkered pattern.", "a red star on a grey background."],
        ["a photo of a checkered pattern.", "a photo of a star."]) == 0.5
    scene = world.Scene("star", "red", "wavy", "large", 2)
    assert diagnostics.shows_class("objects", scene, "red star")
    assert diagnostics.shows_class("counts", scene, "two")
    assert not diagnostics.shows_class("textures", scene, "plain")
    with pytest.raises(KeyError, match="unknown tiny-world task"):
        diagnostics.shows_class("animals", scene, "cat")
    with pytest.raises(ValueError, match="2 captions but 1 class prompts"):
        diagnostics.novel_attribute_rate(["a", "b"], ["c"])


# --------------------------------------------------------------------------- RESTORE
def test_restore_loss_is_zero_when_both_branches_shift_equally(tiny_clip, small_train):
    hs = methods.create("restore", tiny_clip, fs_mode="hidden_state").attach(
        tiny_clip, small_train.classnames, small_train.templates)
    frozen_text = list(hs.frozen_text_hidden)
    gen = torch.Generator().manual_seed(0)
    frozen_image = [torch.randn(4, 128, generator=gen) for _ in frozen_text]
    # both towers' states doubled: relative shift exactly 1 in every block, in both
    hs._fs_states = ([2 * h for h in frozen_text], [2 * h for h in frozen_image], frozen_image)
    assert float(hs.fs_loss()) == 0.0
    hs._fs_states = ([2 * h for h in frozen_text], [3 * h for h in frozen_image], frozen_image)
    assert float(hs.fs_loss()) == pytest.approx(len(frozen_text) * 1.0)
    gram = methods.create("restore", tiny_clip)  # prompt_gram: equal relative Gram norms
    assert float(gram.fs_loss().detach()) == 0.0
    with torch.no_grad():  # scale every deep text prompt: the vision prompts no longer match
        for p in gram.deep_text:
            p.mul_(2.0)
        assert float(gram.fs_loss()) > 0


def test_restore_shift_before_and_after(tiny_clip, small_train):
    m = methods.create("restore", tiny_clip, fs_mode="hidden_state").attach(
        tiny_clip, small_train.classnames, small_train.templates)
    train.fit(m, small_train, FAST, progress=False)
    table = diagnostics.restore_before_after(m, small_train, n_images=12)
    assert list(table.index) == ["before", "after"]
    assert {"gram_gap", "hidden_gap", "hidden_gap_final"} <= set(table.columns)
    assert table.loc["before", "gram_gap"] == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- selection
def test_selection_refuses_reported_updates_and_test_data(tiny_clip):
    tr, val = selection.carve("shapes", 2, seed=1)
    assert tr.name.split("/")[1] == val.name.split("/")[1] == "train"
    for source, update in [("tiny-v2-continued", "tiny-v2-validation"),
                           ("tiny-v1", "tiny-v2-retrained"), ("tiny-v1", "tiny-v2-continued")]:
        with pytest.raises(selection.SelectionError, match="tiny-v"):
            selection.select("coop", {"a": {}}, tr, val, source=source, update=update,
                             load=lambda name: tiny_clip)
    test_part = data.few_shot(data.tiny("shapes", "test"), 1, seed=1)
    with pytest.raises(selection.SelectionError, match="'test' split.*TRAIN split"):
        selection.check_validation_set(test_part, tr)
    disguised = test_part.subset(range(len(test_part)), name="shapes/train/photo/val1")
    with pytest.raises(selection.SelectionError, match="images of the test split"):
        selection.check_validation_set(disguised, tr)
    with pytest.raises(selection.SelectionError, match="shares images with the training set"):
        selection.check_validation_set(tr, tr)
    with pytest.raises(selection.SelectionError, match="not a tiny-world split"):
        selection.check_validation_set(tr.subset(range(3), name="dtd/val"), tr)
    with pytest.raises(ValueError, match="unknown selection rule"):
        selection.select("coop", {"a": {}}, tr, val, rule="best", load=lambda name: tiny_clip)


def test_selection_table_chooses_by_the_stated_rule(tiny_clip):
    tr, val = selection.carve("shapes", 2, seed=1)
    loaded = []

    def load(name):
        loaded.append(name)
        return tiny_clip

    variants = {"classic": {"C": 1.0}, "zero-shot-sgd": methods.preset("linear-probe",
                                                                       "zero-shot-sgd")}
    table, chosen = selection.select("linear-probe", variants, tr, val, train_cfg=FAST,
                                     load=load)
    assert loaded == ["tiny-v1", "tiny-v2-validation"]
    assert list(table.variant) == ["classic", "zero-shot-sgd"]
    assert {"tiny-v1 val", "tiny-v2-validation val", "score", "chosen"} <= set(table.columns)
    row = table[table.chosen].iloc[0]
    assert row.variant == chosen and row.score == table.score.max()
    assert table.attrs["validation"] == val.name and table.attrs["rule"] == "mean"
    # ties go to the variant listed first
    same, first = selection.select("linear-probe", {"x": {"C": 1.0}, "y": {"C": 1.0}}, tr, val,
                                   load=load, rule="source")
    assert first == "x"


def test_selection_validation_draws_are_train_scenes_apart_from_test_and_training():
    val = selection.validation("textures", draws=(101, 102))
    per_draw = len(data.tiny("textures", "train"))
    assert len(val) == 2 * per_draw and val.name == "textures/train/photo/draws101-102"
    assert val.scenes is not None and len(val.scenes) == len(val)
    train_split = data.tiny("textures", "train")
    selection.check_validation_set(val, train_split)  # no image of the test or training split
    base_val = selection.validation("objects", base_classes=True, draws=(101,))
    assert base_val.classnames == data.base_new(data.tiny("objects", "train"))[0].classnames
    with pytest.raises(selection.SelectionError, match="draw 0 is the training split"):
        selection.validation("textures", draws=(0, 101))
    with pytest.raises(ValueError, match="draws is empty"):
        selection.validation("textures", draws=())
    with pytest.raises(ValueError, match="other classes"):
        data.concat([data.tiny("textures", "train"), data.tiny("shapes", "train")], "mixed")


def _fake_selection(monkeypatch, accuracies: dict, n_images: int = 400):
    """select() with stand-in training and scoring: variant label -> its validation accuracy
    (the same on every column and seed; which images are right depends on the variant)."""
    trained = []

    def fake_train(method, clip, train_set, seed, train_cfg, **cfg):
        trained.append((cfg["label"], seed))
        return cfg["label"], {}

    def fake_score(label, clip, ds):
        # each variant gets its own images right, as two trained variants do
        rng = np.random.default_rng(sorted(accuracies).index(label))
        right = rng.permutation(n_images) < round(accuracies[label] * n_images)
        return {"value": 100.0 * right.mean(), "correct": right}

    monkeypatch.setattr(protocols, "train_method", fake_train)
    monkeypatch.setattr(protocols, "score", fake_score)
    monkeypatch.setattr(selection, "check_validation_set", lambda *a, **k: None)
    monkeypatch.setattr(selection, "_record", lambda *a, **k: None)
    return trained


def test_selection_adopts_a_switch_only_when_it_beats_the_default_beyond_noise(monkeypatch):
    variants = {k: {"label": k} for k in ("default", "slightly", "clearly")}
    tr, val = selection.carve("shapes", 2, seed=1)
    kw = dict(train_set=tr, val_set=val, seeds=(1, 2, 3), load=lambda name: name)
    _fake_selection(monkeypatch, {"default": 0.70, "slightly": 0.705, "clearly": 0.60})
    table, chosen = selection.select("x", variants, adopt="better", **kw)
    # the best score (+0.5 points) lies inside the noise of 400 images: the default stays
    assert table.set_index("variant").score.idxmax() == "slightly" and chosen == "default"
    assert table.set_index("variant").loc["slightly", "verdict"] == "no detectable difference"
    assert table.set_index("variant").loc["clearly", "verdict"] == "worse"
    assert selection.select("x", variants, adopt="best", **kw)[1] == "slightly"
    trained = _fake_selection(monkeypatch, {"default": 0.70, "slightly": 0.705, "clearly": 0.80})
    table, chosen = selection.select("x", variants, adopt="better", **kw)
    row = table.set_index("variant").loc["clearly"]
    assert chosen == "clearly" and row.verdict == "better"
    assert row["vs default"] == pytest.approx(10.0) and row.chosen
    assert sorted(trained) == sorted((v, s) for v in variants for s in (1, 2, 3))
    with pytest.raises(ValueError, match="unknown adoption rule"):
        selection.select("x", variants, adopt="maybe", **kw)


def test_selection_source_all_rule_averages_the_source_columns(monkeypatch):
    _fake_selection(monkeypatch, {"a": 0.5, "b": 0.9})
    tr, val = selection.carve("shapes", 2, seed=1)
    table, chosen = selection.select(
        "x", {"a": {"label": "a"}, "b": {"label": "b"}}, tr, val, rule="source-all",
        extra_val={"sketch val": val}, load=lambda name: name)
    assert selection.rule_columns("source-all", list(table.columns[2:5])) == \
        ["tiny-v1 val", "tiny-v1 sketch val"]
    assert chosen == "b" and table.score.tolist() == pytest.approx([50.0, 90.0])


def test_loss_term_reports_start_end_and_blowup():
    from cliptune import diagnostics
    calm = diagnostics.loss_term({"fs": [0.25, 0.1, 0.004]})
    assert calm["first"] == 0.25 and calm["last"] == 0.004 and calm["first_nonfinite_step"] is None
    blown = diagnostics.loss_term({"fs": [0.0, 2.0, 1e19, float("nan"), float("nan")]})
    assert blown["first_nonfinite_step"] == 3 and blown["max_finite"] == 1e19
    with pytest.raises(KeyError, match="no 'fs' entries"):
        diagnostics.loss_term({"loss": [1.0]})
