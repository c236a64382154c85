"""FT, LP-FT, FLYP, ARF (reconstructed) and WiSE-FT / task vectors, on random-init tiny CLIPs."""
import dataclasses

import numpy as np
import pytest
import torch

from cliptune import data, diagnostics, evaluate, methods, models, train, wise_ft, world
from cliptune.methods import arf as arf_mod
from cliptune.methods.base import Batch


@pytest.fixture(scope="module")
def small_train():
    """3 shape classes x 8 images, a tiny-world set (it has scenes, so ARF can caption it)."""
    ds = data.tiny("shapes", "train").select_classes(["circle", "square", "star"])
    keep = np.concatenate([np.flatnonzero(ds.labels == c)[:8] for c in range(3)])
    return ds.subset(keep)


@pytest.fixture(scope="module")
def small_test():
    ds = data.tiny("shapes", "test").select_classes(["circle", "square", "star"])
    keep = np.concatenate([np.flatnonzero(ds.labels == c)[:5] for c in range(3)])
    return ds.subset(keep)


def cfg(**kw):
    base = dict(epochs=100, batch_size=8, lr=1e-3, optimizer="adamw", weight_decay=0.1,
                warmup="linear", warmup_epochs=0.5, max_steps=4, seed=3)
    return train.TrainConfig(**{**base, **kw})


def make(name, clip, ds, **config):
    m = methods.create(name, clip, **config)
    return m.attach(clip, ds.classnames, ds.templates)


SMALL_ARF = dict(corpus_size=300, k=4, exclude_tests="task")


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- the copy
def test_methods_train_a_copy_and_leave_the_given_clip_alone(tiny_clip, small_train):
    before = {k: v.clone() for k, v in tiny_clip.model.state_dict().items()}
    for name in ("ft", "flyp"):
        m = make(name, tiny_clip, small_train)
        assert not any(p.requires_grad for p in tiny_clip.model.parameters())
        assert m.net is not tiny_clip.model and not m.frozen_image_encoder
        train.fit(m, small_train, cfg(max_steps=2), progress=False)
    assert states_equal(before, tiny_clip.model.state_dict())


def test_ft_starts_as_zero_shot_and_trains_the_image_tower_only(tiny_clip, small_train,
                                                                small_test):
    ft = make("ft", tiny_clip, small_train)
    zs = methods.create("zero-shot", tiny_clip).attach(tiny_clip, small_test.classnames,
                                                       small_test.templates)
    # W_0 = exp(t) w_c and b_0 = 0: at step 0 FT's logits are zero-shot CLIP's
    assert torch.allclose(evaluate.predict(ft, small_test), evaluate.predict(zs, small_test),
                          atol=1e-4)
    text_before = {k: v.clone() for k, v in ft.net.state_dict().items() if not k.startswith("visual.")}
    vis_before = ft.net.visual.conv1.weight.clone()
    train.fit(ft, small_train, cfg(), progress=False)
    assert all(torch.equal(v, ft.net.state_dict()[k]) for k, v in text_before.items())
    assert not torch.equal(vis_before, ft.net.visual.conv1.weight)


def test_ft_on_other_classes_uses_the_copy_zero_shot_weights(tiny_clip, small_train):
    ft = make("ft", tiny_clip, small_train)
    train.fit(ft, small_train, cfg(max_steps=2), progress=False)
    other = data.tiny("colours", "test").subset(range(0, 480, 40))
    got = evaluate.predict(ft.attach(tiny_clip, other.classnames, other.templates), other)
    zs = methods.create("zero-shot", tiny_clip)
    fclip = ft.finetuned_clip()
    want = evaluate.predict(zs.attach(fclip, other.classnames, other.templates), other)
    assert torch.allclose(got, want, atol=1e-4)
    # re-attaching to the training classes brings the trained head back
    ft.attach(tiny_clip, small_train.classnames, small_train.templates)
    assert ft.uses_head() and ft.head_classes == small_train.classnames


def test_saved_ft_loads_with_its_head(tiny_clip, small_train, small_test, tmp_path):
    ft = make("ft", tiny_clip, small_train)
    train.fit(ft, small_train, cfg(max_steps=2), progress=False)
    ft.save(tmp_path / "ft.safetensors")
    again = methods.load(tmp_path / "ft.safetensors", tiny_clip, small_test.classnames,
                         small_test.templates)
    assert torch.equal(evaluate.predict(again, small_test), evaluate.predict(
        ft.attach(tiny_clip, small_test.classnames, small_test.templates), small_test))


def test_lpft_freezes_the_encoder_in_stage_one_then_trains_it(tiny_clip, small_train):
    sgd = dict(lp_solver="sgd", lp_steps=3, lp_lr_scale=10.0, ft_lr_scale=0.25)
    m = make("lp-ft", tiny_clip, small_train, **sgd)
    assert m.lr_multiplier(0) == 10.0 and m.lr_multiplier(3) == 0.25
    vis0, head0 = m.net.visual.conv1.weight.clone(), m.head_weight.clone()
    train.fit(m, small_train, cfg(max_steps=3), progress=False)
    assert torch.equal(vis0, m.net.visual.conv1.weight)  # stage 1: probe only
    assert not torch.equal(head0, m.head_weight)
    m2 = make("lp-ft", tiny_clip, small_train, **sgd)
    hist = train.fit(m2, small_train, cfg(max_steps=5), progress=False)
    assert not torch.equal(vis0, m2.net.visual.conv1.weight)  # stage 2: the encoder moves
    assert hist["stage"] == [1.0, 1.0, 1.0, 2.0, 2.0]


def test_lpft_default_solves_the_probe_first_then_fine_tunes_the_whole_schedule(
        tiny_clip, small_train):
    from cliptune import features
    from cliptune.methods.linear_probe import fit_logistic
    m = make("lp-ft", tiny_clip, small_train, lp_C=10.0)
    vis0 = m.net.visual.conv1.weight.clone()
    m.on_train_start(small_train)  # stage 1: logistic regression to convergence
    x = features.image_features(tiny_clip, small_train)  # the copy is still the source model
    w, b = fit_logistic(x, torch.as_tensor(small_train.labels), 3, 10.0)
    assert torch.allclose(m.head_weight, w, atol=1e-5) and torch.allclose(m.head_bias, b, atol=1e-5)
    m2 = make("lp-ft", tiny_clip, small_train, lp_C=10.0)
    hist = train.fit(m2, small_train, cfg(max_steps=4), progress=False)
    assert hist["stage"] == [2.0] * 4 and m2.lr_multiplier(0) == pytest.approx(1 / 3)
    assert not torch.equal(vis0, m2.net.visual.conv1.weight)  # stage 2 from the first step
    with pytest.raises(ValueError, match="lp_solver must be one of"):
        methods.create("lp-ft", tiny_clip, lp_solver="adam")


# --------------------------------------------------------------------------- FLYP, ARF
def test_flyp_head_is_rebuilt_from_the_finetuned_text_tower(tiny_clip, small_train, small_test):
    m = make("flyp", tiny_clip, small_train)
    text0 = m.net.token_embedding.weight.clone()
    train.fit(m, small_train, cfg(), progress=False)
    assert not torch.equal(text0, m.net.token_embedding.weight)  # both towers trained
    m.attach(tiny_clip, small_test.classnames, small_test.templates)
    zs = methods.create("zero-shot", tiny_clip)
    fclip = m.finetuned_clip()
    want = evaluate.predict(zs.attach(fclip, small_test.classnames, small_test.templates),
                            small_test)
    assert torch.allclose(evaluate.predict(m, small_test), want, atol=1e-4)
    frozen = make("flyp", tiny_clip, small_train, freeze_text=True)
    train.fit(frozen, small_train, cfg(max_steps=2), progress=False)
    assert torch.equal(text0, frozen.net.token_embedding.weight)


def one_step_loss(name, clip, ds, seed=5, **config):
    torch.manual_seed(0)
    m = make(name, clip, ds, **config)
    m.on_train_start(ds)
    m.train()
    idx = torch.arange(8)
    gen = torch.Generator().manual_seed(seed)
    batch = Batch(labels=torch.as_tensor(ds.labels)[idx], index=idx, step=0, generator=gen,
                  pixels=clip.prepare(ds.raw(idx.numpy())))
    logits = m(batch)
    loss, logs = m.loss(batch, logits)
    return loss, logs


def test_arf_with_zero_anchor_weights_is_exactly_flyp(tiny_clip, small_train):
    flyp_loss, _ = one_step_loss("flyp", tiny_clip, small_train)
    arf0, logs0 = one_step_loss("arf", tiny_clip, small_train, lambda_tca=0.0, lambda_ita=0.0,
                                **SMALL_ARF)
    assert torch.equal(flyp_loss, arf0) and "tca" not in logs0 and "ita" not in logs0
    arf1, logs1 = one_step_loss("arf", tiny_clip, small_train, lambda_tca=0.5, lambda_ita=2.0,
                                **SMALL_ARF)
    assert torch.allclose(arf1, flyp_loss + 0.5 * logs1["tca"] + 2.0 * logs1["ita"], atol=1e-4)
    assert logs1["tca"] > 0 and logs1["ita"] > 0
    # and a short training run of ARF(0, 0) lands on FLYP's weights bit for bit
    f = make("flyp", tiny_clip, small_train)
    a = make("arf", tiny_clip, small_train, lambda_tca=0.0, lambda_ita=0.0, **SMALL_ARF)
    train.fit(f, small_train, cfg(max_steps=3), progress=False)
    train.fit(a, small_train, cfg(max_steps=3), progress=False)
    assert states_equal(f.state_dict(), a.state_dict())


def test_retrieval_keeps_corpus_pairs_with_their_own_captions(tiny_clip, small_train):
    images, captions = arf_mod.tiny_corpus("retrieval", 300, 0)
    anchors = arf_mod.retrieve_anchors(tiny_clip, small_train.classnames, small_train.templates,
                                       images, captions, k=5)
    assert 5 <= len(anchors) <= 15 and len(set(anchors.indices.tolist())) == len(anchors)
    for j, i in enumerate(anchors.indices):
        assert anchors.captions[j] == captions[i]
        assert np.array_equal(anchors.images[j], images[i])
    # the top-k of each class is exactly what a brute-force ranking gives
    from cliptune import text
    from cliptune.methods import base
    q = base.zero_shot_weights(tiny_clip, small_train.classnames, small_train.templates)
    r = text.encode_text(tiny_clip.model, tiny_clip.tokenize(list(captions)), normalize=True)
    want = set((q @ r.T).topk(5, dim=1).indices.flatten().tolist())
    assert set(anchors.indices.tolist()) == want


def test_retrieval_never_returns_a_test_image(tiny_clip, small_train):
    images, captions = arf_mod.tiny_corpus("retrieval", 300, 0)
    test = data.tiny("shapes", "test")
    forbidden = arf_mod.tiny_test_hashes(("shapes",))
    # by construction: the retrieval corpus shares no image with any test split
    assert not forbidden & set(arf_mod.image_hashes(images))
    # inject test images with captions that match the class prompts perfectly: dropped
    poisoned = np.concatenate([images, test.images[:6]])
    bait = list(captions) + [f"a photo of a {small_train.classnames[i % 3]}." for i in range(6)]
    clean = arf_mod.retrieve_anchors(tiny_clip, small_train.classnames, small_train.templates,
                                     poisoned, bait, k=5, exclude_hashes=forbidden)
    assert clean.n_excluded == 6 and all(i < len(images) for i in clean.indices)
    # without the exclusion the bait would have been retrieved: the check is not vacuous
    dirty = arf_mod.retrieve_anchors(tiny_clip, small_train.classnames, small_train.templates,
                                     poisoned, bait, k=5)
    assert any(i >= len(images) for i in dirty.indices)
    # the method itself: anchors from the retrieval corpus, none of them a test image
    m = make("arf", tiny_clip, small_train, **SMALL_ARF)
    m.on_train_start(small_train)
    assert m.anchors.n_excluded == 0 and len(m.anchors) > 0
    assert not forbidden & set(arf_mod.image_hashes(m.anchors.images))
    with pytest.raises(ValueError, match="pretraining corpus"):
        arf_mod.tiny_corpus("pretrain-v1", 10, 0)


def test_arf_captions_come_from_the_captioner(tiny_clip, small_train):
    m = make("arf", tiny_clip, small_train, **SMALL_ARF)
    m.on_train_start(small_train)
    assert m.train_captions[0] == world.captioner(small_train.scenes[0])
    assert "pattern" in m.train_captions[0] or "surface" in m.train_captions[0]


def test_missing_captions_source_is_a_clear_error(tiny_clip, small_train, tmp_path):
    real_like = dataclasses.replace(small_train, scenes=None, name="my_photos/train")
    m = make("arf", tiny_clip, real_like, lambda_ita=0.0)
    with pytest.raises(arf_mod.CaptionsMissingError, match="captions="):
        m.on_train_start(real_like)
    # a captions file that lacks an image names that image
    tsv = tmp_path / "caps.tsv"
    tsv.write_text("img_0.png\ta red circle\n")
    paths = [str(tmp_path / f"img_{i}.png") for i in range(len(real_like))]
    with_paths = dataclasses.replace(real_like, images=paths)
    m = make("arf", tiny_clip, with_paths, lambda_ita=0.0, captions=str(tsv))
    with pytest.raises(arf_mod.CaptionsMissingError, match="img_1.png"):
        m.on_train_start(with_paths)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make("arf", tiny_clip, with_paths, lambda_ita=0.0,
             captions=str(tmp_path / "nope.tsv")).on_train_start(with_paths)
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n")
    with pytest.raises(ValueError, match="line 1"):
        arf_mod.read_pairs(bad)
    # a callable captioner is accepted
    m = make("arf", tiny_clip, with_paths, lambda_ita=0.0)
    m.captioner = lambda path: f"an image stored at {path}"
    m.on_train_start(with_paths)
    assert m.train_captions[1].endswith("img_1.png")
    # no retrieval pool for real data: a clear error too
    m = make("arf", tiny_clip, with_paths, lambda_tca=0.0)
    with pytest.raises(ValueError, match="retrieval_pairs="):
        m.on_train_start(with_paths)


# --------------------------------------------------------------------------- resuming
@pytest.mark.parametrize("name,config", [("lp-ft", {"lp_solver": "sgd", "lp_steps": 3}),
                                         ("lp-ft", {}), ("arf", SMALL_ARF)])
def test_interrupted_training_resumes_to_the_same_weights(tiny_clip, small_train, tmp_path,
                                                          name, config):
    c = cfg(max_steps=6, checkpoint_every=2)
    straight = make(name, tiny_clip, small_train, **config)
    train.fit(straight, small_train, c, checkpoint=tmp_path / "a.safetensors", progress=False)

    class Interrupt(Exception):
        pass

    def stop_at_4(step, method):
        if step == 4:  # after the checkpoint of step 4 was due (steps 0-3 done and saved)
            raise Interrupt

    path = tmp_path / "b.safetensors"
    first = make(name, tiny_clip, small_train, **config)
    with pytest.raises(Interrupt):
        train.fit(first, small_train, c, checkpoint=path, progress=False, callback=stop_at_4)
    assert list(tmp_path.glob("b.partial*")) and not path.exists()  # only partial progress
    resumed = make(name, tiny_clip, small_train, **config)
    train.fit(resumed, small_train, c, checkpoint=path, progress=False)
    assert states_equal(straight.state_dict(), resumed.state_dict())
    assert not states_equal(straight.state_dict(), make(name, tiny_clip, small_train,
                                                        **config).state_dict())


# --------------------------------------------------------------------------- WiSE-FT
@pytest.mark.parametrize("name", ["ft", "flyp"])
def test_wise_ft_ends_are_exactly_the_two_models(tiny_clip, small_train, small_test, name):
    m = make(name, tiny_clip, small_train)
    train.fit(m, small_train, cfg(), progress=False)
    zs_state = m.zero_shot_state()
    ft_state = m.state_dict()
    assert not states_equal(zs_state, ft_state)
    assert states_equal(wise_ft.interpolate(zs_state, ft_state, 0.0), zs_state)
    assert states_equal(wise_ft.interpolate(zs_state, ft_state, 1.0), ft_state)
    m.attach(tiny_clip, small_test.classnames, small_test.templates)
    fresh = make(name, tiny_clip, small_test)  # the untrained method = zero-shot
    assert torch.equal(evaluate.predict(wise_ft.interpolated_method(m, 0.0, zs_state), small_test),
                       evaluate.predict(fresh, small_test))
    assert torch.equal(evaluate.predict(wise_ft.interpolated_method(m, 1.0, zs_state), small_test),
                       evaluate.predict(m, small_test))
    half = wise_ft.interpolate(zs_state, ft_state, 0.5)
    k = "net.visual.conv1.weight"
    assert torch.allclose(half[k], (zs_state[k] + ft_state[k]) / 2, atol=1e-7)
    # the Clip-level helper agrees at the ends too
    zclip, fclip = tiny_clip, m.finetuned_clip()
    assert states_equal(wise_ft.interpolated_clip(zclip, fclip, 0.0).model.state_dict(),
                        tiny_clip.model.state_dict())
    assert states_equal(wise_ft.interpolated_clip(zclip, fclip, 1.0).model.state_dict(),
                        fclip.model.state_dict())


def test_wise_ft_errors(tiny_clip, wide_clip):
    a, b = tiny_clip.model.state_dict(), wide_clip.model.state_dict()
    with pytest.raises(ValueError, match="alpha"):
        wise_ft.interpolate(a, a, 1.5)
    with pytest.raises(KeyError, match="only in"):
        wise_ft.interpolate(a, b, 0.5)  # another architecture
    with pytest.raises(ValueError, match="shape"):
        wise_ft.interpolate(a, {**a, "visual.proj": torch.zeros(3, 3)}, 0.5)
    with pytest.raises(KeyError, match="only in"):
        wise_ft.interpolate(a, {k: v for k, v in a.items() if k != "logit_scale"}, 0.5)


# --------------------------------------------------------------------------- task vectors
def test_task_vector_round_trip_and_errors(tiny_clip, wide_clip, small_train):
    m = make("flyp", tiny_clip, small_train)
    train.fit(m, small_train, cfg(max_steps=2), progress=False)
    pre, ft = tiny_clip.model.state_dict(), m.net.state_dict()
    tv = wise_ft.task_vector(pre, ft)
    back = wise_ft.apply_task_vector(pre, tv)
    assert all(torch.allclose(back[k], ft[k], atol=1e-6, rtol=0) for k in ft)
    assert any(tv[k].abs().max() > 0 for k in tv)
    half = wise_ft.apply_task_vector(pre, tv, scale=0.5, keys=["logit_scale"])
    assert torch.equal(half["visual.proj"], pre["visual.proj"])
    with pytest.raises(KeyError, match="does not have"):
        wise_ft.apply_task_vector({"a": torch.zeros(1)}, tv)
    with pytest.raises(KeyError, match="does not have"):
        wise_ft.apply_task_vector(wide_clip.model.state_dict(), tv)  # another architecture
    with pytest.raises(ValueError, match="shape"):
        wise_ft.apply_task_vector({**pre, "visual.proj": torch.zeros(3, 3)}, tv)
    anc = wise_ft.ancestry(pre, ft)
    assert anc["visual.conv1.weight"]["cosine"] > 0.99
    other = models.build_tiny("tiny-clip", seed=7).state_dict()
    assert abs(wise_ft.ancestry(pre, other)["visual.conv1.weight"]["cosine"]) < 0.2


def test_ranked_lists_pool_back_to_the_anchors_and_per_class_counts_them(tiny_clip, small_train):
    images, captions = arf_mod.tiny_corpus("retrieval", 300, 0)
    k = 5
    a = arf_mod.retrieve_anchors(tiny_clip, small_train.classnames, small_train.templates,
                                 images, captions, k=k)
    n_cls = len(small_train.classnames)
    assert a.ranked.shape == (n_cls, k)
    # every class's list holds k distinct pairs, and the lists pool into exactly the anchors
    assert all(len(set(row.tolist())) == k for row in a.ranked)
    assert set(a.ranked.ravel().tolist()) == set(range(len(a)))
    m = make("arf", tiny_clip, small_train, **SMALL_ARF)
    m.on_train_start(small_train)
    per_class, retrieved_for = diagnostics.arf_per_class(m)
    assert set(per_class) == set(small_train.classnames)
    assert all(v["retrieved"] == m.config.k for v in per_class.values())
    assert sum(v["scored highest"] for v in per_class.values()) == len(m.anchors)
    # a pair listed by several classes counts as shared in each of them
    shared = sum(len(r) for r in retrieved_for if len(r) > 1)
    assert sum(v["shared"] for v in per_class.values()) == shared
    assert all(len(r) >= 1 for r in retrieved_for)
