"""Linear probe, CLIP-Adapter, Tip-Adapter(-F) on random-init tiny CLIPs: the math of each."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from cliptune import data, evaluate, features, methods, protocols, train
from cliptune.methods.linear_probe import ClassListMismatchError
from cliptune.methods.tip_adapter import default_grid, train_and_search, validation_split

ADAPTERS = ("linear-probe", "clip-adapter", "tip-adapter", "tip-adapter-f")
FAST = train.TrainConfig(epochs=3, batch_size=8, lr=1e-2, optimizer="adamw", weight_decay=0.0,
                         warmup_epochs=0, n_views=1)


@pytest.fixture(scope="module")
def train_set():
    return data.few_shot(data.tiny("shapes", "train"), 4, seed=1)


@pytest.fixture(scope="module")
def test_set():
    return data.tiny("shapes", "test").subset(range(0, 600, 10))


def _batch(ds, clip, n=12):
    feats = features.image_features(clip, ds)[:n]
    return methods.Batch(labels=torch.as_tensor(ds.labels[:n]), index=torch.arange(n),
                         features=feats)


def _zero_shot(clip, ds, ensemble):
    return methods.create("zero-shot", clip, ensemble=ensemble).attach(clip, ds.classnames,
                                                                      ds.templates)


def _built(name, clip, ds, **cfg):
    """Created, attached to ``ds``'s classes and with its cache built (no training)."""
    m = methods.create(name, clip, **cfg).attach(clip, ds.classnames, ds.templates)
    m.on_train_start(ds)
    return m


# --------------------------------------------------------------------------- zero-shot limits
def test_clip_adapter_with_alpha_zero_is_zero_shot_with_its_template(tiny_clip, train_set):
    b = _batch(train_set, tiny_clip)
    zs = _zero_shot(tiny_clip, train_set, ensemble=False)
    with torch.no_grad():
        a0 = methods.create("clip-adapter", tiny_clip, alpha=0.0).attach(
            tiny_clip, train_set.classnames, train_set.templates)
        assert torch.allclose(a0(b), zs(b), atol=1e-5)
        a = methods.create("clip-adapter", tiny_clip).attach(
            tiny_clip, train_set.classnames, train_set.templates)
        assert not torch.allclose(a(b), zs(b), atol=1e-3)  # alpha = 0.2 does change the logits
        # and f' is alpha A(f) + (1 - alpha) f, normalised, checked by hand
        f = b.features
        hand = F.normalize(0.2 * F.relu(F.relu(f @ a.adapter[0].weight.T) @ a.adapter[2].weight.T)
                           + 0.8 * f, dim=-1)
        assert torch.allclose(a(b), a.logit_scale() * hand @ zs.weights.T, atol=1e-5)


def test_tip_adapter_with_alpha_zero_is_zero_shot(tiny_clip, train_set):
    b = _batch(train_set, tiny_clip)
    zs = _zero_shot(tiny_clip, train_set, ensemble=False)
    with torch.no_grad():
        tip0 = _built("tip-adapter", tiny_clip, train_set, alpha=0.0, n_views=1,
                      alpha_scale="raw")
        assert torch.allclose(tip0(b), zs(b), atol=1e-5)
        tip = _built("tip-adapter", tiny_clip, train_set, alpha=1.0, n_views=1,
                     alpha_scale="raw")
        assert not torch.allclose(tip(b), zs(b), atol=1e-3)


def test_tip_adapter_logits_follow_the_equation(tiny_clip, train_set):
    tip = _built("tip-adapter", tiny_clip, train_set, alpha=0.7, beta=3.0, n_views=1,
                  alpha_scale="raw")
    b = _batch(train_set, tiny_clip)
    f, K, L = b.features, tip.keys, tip.values
    zs = _zero_shot(tiny_clip, train_set, ensemble=False)
    want = tip.logit_scale() * f @ zs.weights.T + 0.7 * torch.exp(-3.0 * (1 - f @ K.T)) @ L
    with torch.no_grad():
        assert torch.allclose(tip(b), want, atol=1e-4)


def test_tip_cache_keys_are_averaged_view_features_and_values_one_hot(tiny_clip, train_set):
    tip = _built("tip-adapter", tiny_clip, train_set, n_views=3, view_seed=5)
    views = torch.stack([features.image_features(tiny_clip, train_set, v, seed=5)
                         for v in range(4)])
    assert torch.allclose(tip.keys, F.normalize(views.mean(0), dim=-1), atol=1e-6)
    assert not torch.allclose(tip.keys, views[0], atol=1e-3)  # the augmented views count
    assert tip.keys.shape == (len(train_set), 64)
    assert torch.allclose(tip.keys.norm(dim=-1), torch.ones(len(train_set)), atol=1e-5)
    assert tip.values.shape == (len(train_set), len(train_set.classnames))
    assert torch.equal(tip.values.sum(1), torch.ones(len(train_set)))
    assert torch.equal(tip.values.argmax(1), torch.as_tensor(train_set.labels))
    assert set(tip.values.unique().tolist()) == {0.0, 1.0}


def test_linear_probe_zero_shot_init_reproduces_zero_shot(tiny_clip, train_set):
    b = _batch(train_set, tiny_clip)
    zs = _zero_shot(tiny_clip, train_set, ensemble=True)  # the probe uses every template
    lp = methods.create("linear-probe-zs", tiny_clip).attach(tiny_clip, train_set.classnames,
                                                            train_set.templates)
    with torch.no_grad():
        assert torch.allclose(lp(b), zs(b), atol=1e-5)
        zeros = methods.create("linear-probe-zs", tiny_clip, init="zeros").attach(
            tiny_clip, train_set.classnames, train_set.templates)
        assert torch.equal(zeros(b), torch.zeros(len(b.labels), len(train_set.classnames)))
    with pytest.raises(ValueError, match="'zero-shot' or 'zeros'"):
        methods.create("linear-probe", tiny_clip, init="random")


# --------------------------------------------------------------------------- attaching
@pytest.mark.parametrize("name", ADAPTERS)
def test_other_embed_dim_is_a_width_mismatch_naming_both(tiny_clip, wide_clip, train_set, name):
    m = _built(name, tiny_clip, train_set, **({"n_views": 1} if "tip" in name else {}))
    with pytest.raises(methods.WidthMismatchError, match=r"embed dim 64.*embed dim 96"):
        m.attach(wide_clip, train_set.classnames, train_set.templates)


def test_linear_probe_refuses_another_class_list(tiny_clip, train_set):
    lp = methods.create("linear-probe", tiny_clip).attach(tiny_clip, train_set.classnames,
                                                         train_set.templates)
    with pytest.raises(ClassListMismatchError, match="10 classes, not the 3"):
        lp.attach(tiny_clip, train_set.classnames[:3])
    swapped = (train_set.classnames[1], train_set.classnames[0]) + train_set.classnames[2:]
    with pytest.raises(ClassListMismatchError, match="other classes"):
        lp.attach(tiny_clip, swapped)
    lp.attach(tiny_clip, train_set.classnames)  # the training list still works


def test_tip_adapter_refuses_another_class_list(tiny_clip, train_set):
    tip = _built("tip-adapter", tiny_clip, train_set, n_views=1)
    with pytest.raises(ClassListMismatchError, match="10 classes, not the 4"):
        tip.attach(tiny_clip, train_set.classnames[:4])
    fresh = methods.create("tip-adapter", tiny_clip).attach(tiny_clip, train_set.classnames[:4])
    with pytest.raises(ClassListMismatchError):  # a cache for other classes than attached
        fresh.on_train_start(train_set)


def test_linear_probe_attaches_to_another_model_of_the_same_dim(tiny_clip, train_set):
    from cliptune import models
    other = models.Clip("tiny-rand-2", None, models.build_tiny("tiny-clip", seed=3).eval()
                        .requires_grad_(False), tiny_clip.tokenizer)
    lp = methods.create("linear-probe", tiny_clip).attach(tiny_clip, train_set.classnames,
                                                         train_set.templates)
    w = lp.weight.detach().clone()
    lp.attach(other, train_set.classnames, train_set.templates)
    assert torch.equal(lp.weight, w)  # old-space head kept: the compatibility experiment
    zs_other = _zero_shot(other, train_set, ensemble=True)
    b = _batch(train_set, other)
    with torch.no_grad():
        assert not torch.allclose(lp(b), zs_other(b), atol=1e-3)


def test_tip_keys_carried_or_rebuilt_on_another_model(tiny_clip, train_set):
    from cliptune import models
    other = models.Clip("tiny-rand-2", None, models.build_tiny("tiny-clip", seed=3).eval()
                        .requires_grad_(False), tiny_clip.tokenizer)
    keep = _built("tip-adapter", tiny_clip, train_set, n_views=1)
    old = keep.keys.clone()
    keep.attach(other, train_set.classnames, train_set.templates)
    assert torch.equal(keep.keys, old)  # pure plug-in: the old-space keys travel
    rebuild = _built("tip-adapter", tiny_clip, train_set, n_views=1, rebuild_keys_on_attach=True)
    rebuild.attach(other, train_set.classnames, train_set.templates)
    views = torch.stack([features.image_features(other, train_set, v, seed=1) for v in range(2)])
    assert torch.allclose(rebuild.keys, F.normalize(views.mean(0), dim=-1), atol=1e-6)
    # a saved module does not know the images: a rebuild without them is a clear error
    path = rebuild.save(train.runtime.CHECKPOINT_DIR / "tip.safetensors")
    del path
    loaded = methods.load(train.runtime.CHECKPOINT_DIR / "tip.safetensors", tiny_clip)
    with pytest.raises(RuntimeError, match="use_training_images"):
        loaded.attach(other, train_set.classnames, train_set.templates)
    loaded.use_training_images(train_set)
    loaded.attach(other, train_set.classnames, train_set.templates)
    assert torch.allclose(loaded.keys, rebuild.keys, atol=1e-6)


# --------------------------------------------------------------------------- saving
@pytest.mark.parametrize("name", ADAPTERS)
def test_save_load_round_trip_gives_identical_logits(tiny_clip, train_set, tmp_path, name):
    cfg = {"n_views": 1, "alpha": 1.3, "beta": 2.0} if "tip" in name else {}
    m = _built(name, tiny_clip, train_set, **cfg)
    with torch.no_grad():  # move the state off its init so that the check means something
        for p in m.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    if "tip" in name:
        m.alpha.fill_(0.55)  # searched values are state too
    m.save(tmp_path / f"{name}.safetensors")
    loaded = methods.load(tmp_path / f"{name}.safetensors", tiny_clip, train_set.classnames,
                          train_set.templates)
    assert type(loaded) is type(m)
    b = _batch(train_set, tiny_clip)
    with torch.no_grad():
        assert torch.equal(loaded(b), m(b))


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", ("linear-probe-zs", "clip-adapter", "tip-adapter-f"))
def test_training_reduces_the_loss(tiny_clip, train_set, name):
    cfg = {"n_views": 1} if "tip" in name else {}
    m = methods.create(name, tiny_clip, **cfg).attach(tiny_clip, train_set.classnames,
                                                     train_set.templates)
    tc = dataclasses.replace(FAST, n_views=0, epochs=10, batch_size=40)  # full batch: comparable
    hist = train.fit(m, train_set, tc, progress=False)
    first, last = hist["loss"][0], hist["loss"][-1]
    assert last < first - 0.05, (name, first, last)


def test_tip_adapter_f_keys_learn_while_tip_adapter_has_nothing_to_train(tiny_clip, train_set):
    tip = methods.create("tip-adapter", tiny_clip, n_views=1).attach(
        tiny_clip, train_set.classnames, train_set.templates)
    assert not any(p.requires_grad for p in tip.parameters())
    with pytest.raises(ValueError, match="nothing to train"):
        train.fit(tip, train_set, FAST, progress=False)
    # protocols.train_method builds its cache instead of training
    built, hist = protocols.train_method("tip-adapter", tiny_clip, train_set, n_views=1)
    assert hist == {} and len(built.keys) == len(train_set)

    tipf, _ = protocols.train_method("tip-adapter-f", tiny_clip, train_set, train_cfg=FAST,
                                     n_views=1)
    init = _built("tip-adapter-f", tiny_clip, train_set, n_views=1)
    assert torch.allclose(init.keys, built.keys)  # F starts from the same cache
    assert not torch.allclose(tipf.keys, init.keys, atol=1e-4)  # and training moved the keys
    assert torch.equal(tipf.values, init.values)  # the values stay one-hot labels
    # a second call loads the checkpoint instead of training again: the same keys
    again, _ = protocols.train_method("tip-adapter-f", tiny_clip, train_set, train_cfg=FAST,
                                      n_views=1)
    assert torch.equal(again.keys, tipf.keys)


# --------------------------------------------------------------------------- the search
def test_search_finds_the_best_grid_point_and_sets_it(tiny_clip, train_set, test_set):
    tip = _built("tip-adapter", tiny_clip, train_set, n_views=1)
    vf = features.image_features(tiny_clip, test_set)
    grid = {"alpha": [0.0, 0.5, 2.0], "beta": [1.0, 5.0]}
    out = tip.search_hyperparameters(vf, test_set.labels, grid)
    assert len(out["table"]) == 6
    best = max(out["table"], key=lambda r: r[2])
    assert out["accuracy"] == best[2]
    assert (float(tip.alpha), float(tip.beta)) == pytest.approx((out["alpha"], out["beta"]))
    assert evaluate.accuracy(tip.attach(tiny_clip, test_set.classnames, test_set.templates),
                             test_set) == pytest.approx(out["accuracy"])
    with pytest.raises(KeyError, match="'alpha' and 'beta'"):
        tip.search_hyperparameters(vf, test_set.labels, {"alpha": [1.0]})
    with pytest.raises(ValueError, match="one label per feature"):
        tip.search_hyperparameters(vf, test_set.labels[:3], grid)


def test_default_grid_scales_alpha_with_the_temperature():
    g100, g50 = default_grid(100.0), default_grid(50.0)
    assert len(g100["beta"]) == 50 and len(g100["alpha"]) == 20
    assert g100["beta"][0] == pytest.approx(0.1) and max(g100["beta"]) < 7.0
    assert g50["alpha"] == pytest.approx([a / 2 for a in g100["alpha"]])


def test_validation_split_is_disjoint_from_the_shots(tiny_clip):
    full = data.tiny("shapes", "train")
    shots = data.few_shot(full, 16, seed=2)
    val = validation_split(full, shots, 4, seed=2)
    assert len(val) == 4 * len(full.classnames)
    seen = {im.tobytes() for im in shots.images}
    assert not any(im.tobytes() in seen for im in val.images)
    with pytest.raises(ValueError, match="fewer validation shots"):
        validation_split(full, shots, 40, seed=2)
    method, result = train_and_search("tip-adapter", tiny_clip, shots, val, n_views=1,
                                      grid={"alpha": [0.0, 1.0], "beta": [1.0]})
    assert result["alpha"] in (0.0, 1.0) and float(method.alpha) == result["alpha"]
    with pytest.raises(ValueError, match="tip-adapter"):
        train_and_search("coop", tiny_clip, shots, val)


def test_tip_adapter_without_cache_is_a_clear_error(tiny_clip, train_set):
    tip = methods.create("tip-adapter", tiny_clip).attach(tiny_clip, train_set.classnames)
    with pytest.raises(RuntimeError, match="no cache yet"):
        tip(_batch(train_set, tiny_clip))
