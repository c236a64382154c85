"""IVLP, MaPLe, RESTORE and the feature-shift measurements (notebook 04), on random tiny CLIPs."""
import copy

import pytest
import torch
import torch.nn.functional as F

from cliptune import data, feature_shift, methods, models, train, vision
from cliptune.methods import Batch, WidthMismatchError

CLASSES = ("red star", "blue circle", "green square")


@pytest.fixture(scope="module")
def shots():
    return data.few_shot(data.tiny("shapes", "train"), 4, seed=1)  # 40 images, 10 classes


def _pixel_batch(clip, ds, n=8):
    idx = list(range(0, len(ds), max(1, len(ds) // n)))[:n]
    return Batch(labels=torch.as_tensor(ds.labels[idx]), index=torch.tensor(idx),
                 pixels=clip.prepare(ds.raw(idx)))


def _resnet_clip(tiny_clip):
    """The tiny CLIP with its ViT swapped for a (tiny) open_clip ModifiedResNet."""
    from open_clip.modified_resnet import ModifiedResNet
    model = copy.deepcopy(tiny_clip.model)
    model.visual = ModifiedResNet(layers=[1, 1, 1, 1], output_dim=64, heads=2, image_size=32,
                                  width=8)
    return models.Clip("tiny-resnet", None, model.requires_grad_(False).eval(), tiny_clip.tokenizer)


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("name", ["ivlp", "maple", "restore"])
def test_zero_prompt_tokens_reproduce_open_clip_encoders(tiny_clip, shots, name):
    cfg = {"n_ctx": 0} if name != "restore" else {"n_ctx": 0, "ratio_text": 0.0,
                                                   "ratio_vision": 0.0}
    if name != "ivlp":  # the clean placement: "{class}." with no words left from ctx_init
        cfg["keep_init_words"] = False
    m = methods.create(name, tiny_clip, **cfg).attach(tiny_clip, CLASSES, ("{}.",))
    assert len(m.deep_text) == 2  # deep prompts are there, with zero tokens each
    with torch.no_grad():
        want_t = tiny_clip.model.encode_text(tiny_clip.tokenize([f"{c}." for c in CLASSES]))
        # equal up to float summation order: the prompts are encoded trimmed after the last
        # end-of-text token (text.trimmed_length), which the causal mask makes exact in math
        assert torch.allclose(m.encode_text_states(), want_t, rtol=0, atol=1e-5)
        px = _pixel_batch(tiny_clip, shots).pixels
        assert torch.equal(m.encode_image_states(px), tiny_clip.model.encode_image(px))


def test_encode_prompted_with_empty_prompts_is_encode_image(tiny_clip, shots):
    px = _pixel_batch(tiny_clip, shots).pixels
    with torch.no_grad():
        empty = vision.encode_prompted(tiny_clip.model, px, torch.zeros(0, 128),
                                       [torch.zeros(0, 128)] * 3)
        prompted = vision.encode_prompted(tiny_clip.model, px, torch.ones(2, 128),
                                          [torch.ones(2, 128)] * 3)
        plain = tiny_clip.model.encode_image(px)
    assert torch.equal(empty, plain)
    assert not torch.allclose(prompted, plain, atol=1e-3)  # the prompts do act


def test_deep_prompts_act_in_every_prompted_block(tiny_clip, shots):
    m = methods.create("ivlp", tiny_clip).attach(tiny_clip, CLASSES)
    px = _pixel_batch(tiny_clip, shots).pixels
    with torch.no_grad():
        z_t = m.encode_text_states()
        z_v = m.encode_image_states(px)
        m.deep_text[-1].mul_(10)
        m.deep_vision[-1].mul_(10)
        assert not torch.allclose(z_t, m.encode_text_states(), atol=1e-4)
        assert not torch.allclose(z_v, m.encode_image_states(px), atol=1e-4)


def test_depth_defaults_and_clamps_to_the_towers(tiny_clip):
    ivlp = methods.create("ivlp", tiny_clip)  # tiny-clip: 3 text blocks, 4 vision blocks
    assert (len(ivlp.deep_text), len(ivlp.deep_vision)) == (2, 3)
    maple = methods.create("maple", tiny_clip)  # coupled: the shallower tower decides
    assert len(maple.deep_text) == len(maple.deep_proj) == 2
    assert len(methods.create("maple", tiny_clip, depth=99).deep_text) == 2
    assert len(methods.create("maple", tiny_clip, depth=1).deep_text) == 0


def test_maple_vision_prompts_are_coupled_to_text_prompts(tiny_clip):
    m = methods.create("maple", tiny_clip)
    shallow, deep = m.vision_prompt_tensors()
    assert torch.allclose(shallow, m.ctx @ m.proj.weight.T + m.proj.bias)
    assert torch.allclose(deep[1], m.deep_text[1] @ m.deep_proj[1].weight.T + m.deep_proj[1].bias)
    assert shallow.shape == (2, 128) and m.ctx.shape == (2, 64)


def test_ctx_init_and_keep_init_words_placement(tiny_clip):
    m = methods.create("maple", tiny_clip)
    emb = tiny_clip.model.token_embedding(tiny_clip.tokenize(["a photo of a"]))[0]
    assert torch.equal(m.ctx.data, emb[1:3])  # "a photo"
    clean = methods.create("maple", tiny_clip, keep_init_words=False).attach(
        tiny_clip, CLASSES).prompts.tokens
    quirk = methods.create("maple", tiny_clip, keep_init_words=True).attach(
        tiny_clip, CLASSES).prompts.tokens
    assert torch.equal(clean, tiny_clip.tokenize([f"X X {c}." for c in CLASSES]))
    assert torch.equal(quirk, tiny_clip.tokenize([f"a photo of a {c}." for c in CLASSES]))


def test_language_only_ivlp_uses_cached_features_and_vision_only_keeps_text_frozen(
        tiny_clip, shots):
    lang = methods.create("ivlp", tiny_clip, vision_prompts=False)
    assert lang.frozen_image_encoder and lang.widths() == {"text width": 64}
    vis = methods.create("ivlp", tiny_clip, text_prompts=False).attach(tiny_clip, CLASSES,
                                                                       ("a photo of a {}.",))
    assert not vis.frozen_image_encoder and vis.widths() == {"vision width": 128}
    with torch.no_grad():
        want = tiny_clip.model.encode_text(tiny_clip.tokenize([f"a photo of a {c}."
                                                               for c in CLASSES]))
    # the prompt path orders the same float32 operations differently (1.4e-6 apart on one CPU)
    assert torch.allclose(vis.encode_text_states(), want, atol=1e-5)


# --------------------------------------------------------------------------- feature shift
def test_feature_shift_is_zero_for_zero_length_prompts(tiny_clip, shots):
    ds = shots.select_classes(range(3))
    m = methods.create("ivlp", tiny_clip, n_ctx=0).attach(tiny_clip, ds.classnames, ("{}.",))
    s = feature_shift.measure(m, ds, n_images=12)
    assert len(s["text"]) == 3 and len(s["vision"]) == 4
    assert max(s["text"] + s["vision"]) == 0.0
    assert s["text_final"] == s["vision_final"] == s["gap_final"] == 0.0


def test_feature_shift_is_positive_for_prompts_and_text_only_for_coop(tiny_clip, shots):
    ds = shots.select_classes(range(3))
    m = methods.create("ivlp", tiny_clip).attach(tiny_clip, ds.classnames, ds.templates)
    s = feature_shift.measure(m, ds, n_images=12)
    assert min(s["text"]) > 0 and min(s["vision"]) > 0
    # CoOp initialised from "a photo of a" *is* the hand-made prompt "a photo of a {}.": no shift
    coop = methods.create("coop", tiny_clip).attach(tiny_clip, ds.classnames, ("a photo of a {}.",))
    s = feature_shift.measure(coop, ds, n_images=12)
    assert max(s["text"]) < 1e-6 and s["vision"] == [0.0] * 4
    with torch.no_grad():
        coop.ctx.add_(0.1)
    s = feature_shift.measure(coop, ds, n_images=12)
    assert min(s["text"]) > 0 and s["vision_final"] == 0.0 and s["gap_final"] == s["text_final"]


def test_relative_shift_formula():
    h0 = torch.tensor([[3.0, 4.0], [0.0, 5.0]])
    h = h0 + torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    assert feature_shift.relative_shift(h, h0) == pytest.approx((1 + 3) / 2 / 5)
    with pytest.raises(ValueError, match="same shape"):
        feature_shift.relative_shift(h[:1], h0)


def test_gram_proxy_is_one_at_init_and_quadratic_in_scale(tiny_clip):
    m = methods.create("maple", tiny_clip)
    g = feature_shift.gram_shift(m)
    assert g["text"] == pytest.approx([1.0, 1.0]) and g["vision"] == pytest.approx([1.0, 1.0])
    with torch.no_grad():
        m.deep_text[0].mul_(2)
    t, _ = m.relative_gram()
    assert t.tolist() == pytest.approx([4.0, 1.0])
    p = m.deep_text[1].detach()
    assert float(methods.maple.gram_norm(p)) == pytest.approx(float(torch.linalg.matrix_norm(
        p.T @ p)), rel=1e-5)


# --------------------------------------------------------------------------- RESTORE
def test_surgery_adapter_with_ratio_zero_is_identity(tiny_clip, shots):
    b = _pixel_batch(tiny_clip, shots)
    r0 = methods.create("restore", tiny_clip, ratio_text=0.0, ratio_vision=0.0)
    z = torch.randn(5, 64)
    assert torch.equal(r0.calibrate(z, "text"), z) and torch.equal(r0.calibrate(z, "vision"), z)
    maple = methods.create("maple", tiny_clip).attach(tiny_clip, shots.classnames)
    r0.attach(tiny_clip, shots.classnames)
    with torch.no_grad():
        assert torch.equal(r0(b), maple(b))  # same prompts (same seed), adapters switched off
        r_half = methods.create("restore", tiny_clip, ratio_text=0.5).attach(
            tiny_clip, shots.classnames)
        assert not torch.allclose(r_half(b), maple(b), atol=1e-4)
    adapter = r0.adapter_text  # A(z) = z + W2 QuickGELU(W1 LN(z) + b1) + b2, checked by hand
    h = F.layer_norm(z, (64,), adapter.ln.weight, adapter.ln.bias) @ adapter.fc1.weight.T \
        + adapter.fc1.bias
    want = z + (h * torch.sigmoid(1.702 * h)) @ adapter.fc2.weight.T + adapter.fc2.bias
    assert torch.allclose(adapter(z), want, atol=1e-5)
    assert adapter.fc1.out_features == 4 * 64


@pytest.mark.parametrize("mode", ["prompt_gram", "hidden_state"])
def test_restore_loss_with_lambda_zero_is_cross_entropy(tiny_clip, shots, mode):
    b = _pixel_batch(tiny_clip, shots)
    for lam in (0.0, 1.0):
        m = methods.create("restore", tiny_clip, fs_mode=mode, lambda_fs=lam).attach(
            tiny_clip, shots.classnames).train()
        with torch.no_grad():
            m.deep_text[0].mul_(3)  # make the text prompts grow faster than the vision ones
        logits = m(b)
        loss, logs = m.loss(b, logits)
        ce = F.cross_entropy(logits, b.labels)
        if lam == 0:
            assert torch.equal(loss, ce) and logs["fs"] == 0.0
        else:
            assert float(loss.detach()) > float(ce.detach()) + 1e-4 and logs["fs"] > 0


def test_prompt_gram_loss_matches_its_definition(tiny_clip):
    m = methods.create("restore", tiny_clip)
    assert float(m.fs_loss().detach()) == 0.0  # s_t = s_v = 1 at init
    with torch.no_grad():
        m.deep_text[0].mul_(2)
        s_t, s_v = m.relative_gram()
    assert float(m.fs_loss().detach()) == pytest.approx(float(((s_t - s_v) ** 2).sum()))
    assert float(s_t[0]) == pytest.approx(4.0) and float(m.fs_loss().detach()) > 0


def test_hidden_state_loss_needs_a_training_forward(tiny_clip):
    m = methods.create("restore", tiny_clip, fs_mode="hidden_state").attach(tiny_clip, CLASSES)
    with pytest.raises(RuntimeError, match="training forward"):
        m.fs_loss()


def test_ratio_update_happens_once_after_epoch_max_epoch_over_3(tiny_clip):
    m = methods.create("restore", tiny_clip)
    with torch.no_grad():
        t, v = m.gram_norms()
    seen = []
    for epoch in range(10):
        m.on_epoch_end(epoch, 10)
        seen.append((float(m.ratio_text), float(m.ratio_vision)))
    assert seen[:3] == [(pytest.approx(0.1), pytest.approx(0.1))] * 3
    want = (0.1 + 0.02 * float(t.mean()), 0.1 + 0.005 * float(v.mean()))
    assert seen[3] == pytest.approx(want) and seen[3] != pytest.approx((0.1, 0.1))
    assert all(s == seen[3] for s in seen[3:])
    assert m.extra_state() == {"ratio_text": pytest.approx(want[0]),
                               "ratio_vision": pytest.approx(want[1]), "ratios_updated": True}


def test_ratio_update_timing_inside_train_fit(tiny_clip, shots):
    cfg = train.TrainConfig(epochs=3, batch_size=8, seed=3, augment=False)  # 5 steps an epoch
    m = methods.create("restore", tiny_clip).attach(tiny_clip, shots.classnames)
    hist = train.fit(m, shots, cfg, progress=False,
                     callback=lambda step, meth: {"r_t": float(meth.ratio_text)})
    r = hist["r_t"]
    assert r[:10] == [pytest.approx(0.1)] * 10  # epochs 0 and 1
    assert r[10] > 0.1 and r[10:] == [r[10]] * 5  # bumped once, after epoch 3 // 3 = 1


def _restore_run(clip, ds, cfg, checkpoint=None):
    m = methods.create("restore", clip).attach(clip, ds.classnames)
    train.fit(m, ds, cfg, checkpoint=checkpoint, progress=False)
    return m


@pytest.mark.parametrize("stop_at", [5, 10])  # 10: the boundary of the ratio-update epoch
def test_checkpoint_resume_reproduces_final_state_including_ratios(tiny_clip, shots, tmp_path,
                                                                   monkeypatch, stop_at):
    cfg = train.TrainConfig(epochs=3, batch_size=8, seed=2, checkpoint_every=5)
    ref = _restore_run(tiny_clip, shots, cfg)
    assert ref.extra_state()["ratios_updated"] and float(ref.ratio_text) > 0.1
    real = train._checkpoint

    def stop_after(path, method, opt, step, history):
        real(path, method, opt, step, history)
        if step == stop_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "_checkpoint", stop_after)
    ckpt = tmp_path / "restore.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _restore_run(tiny_clip, shots, cfg, ckpt)
    monkeypatch.setattr(train, "_checkpoint", real)
    resumed = _restore_run(tiny_clip, shots, cfg, ckpt)
    assert resumed.extra_state() == ref.extra_state()
    want, got = ref.state_dict(), resumed.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.allclose(want[k], got[k], atol=1e-6), k
    # a finished checkpoint is loaded with its updated ratios, not the config's
    again = _restore_run(tiny_clip, shots, cfg, ckpt)
    assert again.extra_state() == ref.extra_state()


@pytest.mark.parametrize("name,cfg", [("ivlp", {"text_prompts": False}),
                                      ("ivlp", {"vision_prompts": False, "n_ctx": 3}),
                                      ("maple", {"keep_init_words": True}),
                                      ("restore", {"fs_mode": "hidden_state"})])
def test_save_load_round_trip(tiny_clip, shots, tmp_path, name, cfg):
    m = methods.create(name, tiny_clip, **cfg).attach(tiny_clip, shots.classnames)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        if name == "restore":
            m.update_ratios()
    path = tmp_path / f"{name}.safetensors"
    m.save(path)
    back = methods.load(path, tiny_clip, shots.classnames)
    assert type(back) is type(m) and back.config == m.config
    if name == "restore":
        assert back.extra_state() == m.extra_state()
    b = _pixel_batch(tiny_clip, shots)
    if m.frozen_image_encoder:
        b.features, b.pixels = F.normalize(tiny_clip.model.encode_image(b.pixels), dim=-1), None
    with torch.no_grad():
        assert torch.equal(back(b), m(b))
        assert torch.equal(back.gram_ref_text, m.gram_ref_text)


def test_rebuilding_with_the_same_seed_is_bit_identical(tiny_clip):
    a, b = (methods.create("restore", tiny_clip) for _ in range(2))
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    c = methods.create("restore", tiny_clip, init_seed=1)
    assert not torch.equal(a.deep_text[0], c.deep_text[0])


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", ["maple", "restore", "ivlp"])
def test_width_mismatch_is_a_clear_error(tiny_clip, wide_clip, tmp_path, name):
    m = methods.create(name, tiny_clip)
    with pytest.raises(WidthMismatchError, match="width"):
        m.attach(wide_clip, CLASSES)
    path = tmp_path / "m.safetensors"
    m.save(path)
    with pytest.raises(WidthMismatchError):
        methods.load(path, wide_clip, CLASSES)


def test_visual_prompts_on_a_resnet_raise(tiny_clip):
    rn = _resnet_clip(tiny_clip)
    for name, cfg in [("maple", {}), ("restore", {}), ("ivlp", {}),
                      ("ivlp", {"text_prompts": False})]:
        with pytest.raises(vision.VisualPromptsNeedViT, match="VisionTransformer"):
            methods.create(name, rn, **cfg)
    trained_on_vit = methods.create("maple", tiny_clip)
    with pytest.raises(vision.VisualPromptsNeedViT, match="ModifiedResNet"):
        trained_on_vit.attach(rn, CLASSES)
    lang = methods.create("ivlp", rn, vision_prompts=False).attach(rn, CLASSES)  # text only: fine
    assert lang.widths() == {"text width": 64}


def test_bad_settings_are_clear_errors(tiny_clip):
    with pytest.raises(ValueError, match="learns nothing"):
        methods.create("ivlp", tiny_clip, text_prompts=False, vision_prompts=False)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        methods.create("maple", tiny_clip, depth=0)
    with pytest.raises(ValueError, match="exceeds the 4 tokens"):
        methods.create("maple", tiny_clip, n_ctx=5)
    with pytest.raises(ValueError, match="n_ctx must be >= 0"):
        methods.create("ivlp", tiny_clip, n_ctx=-1)
    with pytest.raises(ValueError, match="fs_mode"):
        methods.create("restore", tiny_clip, fs_mode="gram")
    assert methods.create("maple", tiny_clip, n_ctx=5, ctx_init=None).ctx.shape == (5, 64)
    with pytest.raises(ValueError, match="attached to other classes"):
        m = methods.create("maple", tiny_clip).attach(tiny_clip, CLASSES)
        feature_shift.measure(m, data.few_shot(data.tiny("shapes", "train"), 1, 1))


def test_feature_shift_text_states_respect_class_conditioning(tiny_clip):
    """ContCoOp's class-conditioned prompts are not mistaken for CoOp's shared context, and
    CoCoOp (per-image prompts) is refused rather than measured wrongly."""
    import pytest as _pytest
    from cliptune import feature_shift, methods
    names = ("red star", "blue circle", "green ring")
    cont = methods.create("contcoop", tiny_clip).attach(tiny_clip, names)
    with torch.no_grad():
        cont.gamma.fill_(1.0)  # make the attention matter
    z, hidden = feature_shift.text_states(cont)
    assert hidden is None and torch.allclose(z, cont.class_features())
    coco = methods.create("cocoop", tiny_clip).attach(tiny_clip, names)
    with _pytest.raises(TypeError, match="per image"):
        feature_shift.text_states(coco)


def test_heavier_hidden_state_preset_weights_the_term_ten_times(tiny_clip, shots):
    b = _pixel_batch(tiny_clip, shots)
    cfg = methods.preset("restore", "hidden_state_x10")
    assert cfg == {"fs_mode": "hidden_state", "lambda_fs": 10.0}
    m = methods.create("restore", tiny_clip, **cfg).attach(tiny_clip, shots.classnames).train()
    with torch.no_grad():
        m.deep_text[0].mul_(3)
    logits = m(b)
    loss, logs = m.loss(b, logits)
    ce = F.cross_entropy(logits, b.labels)
    assert float(loss.detach()) == pytest.approx(float(ce.detach()) + 10.0 * logs["fs"], rel=1e-5)
