"""CoOp, CoCoOp, KgCoOp and ContCoOp on random-init tiny CLIPs: the math of each method."""
import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from cliptune import data, methods, models, text, train

NAMES = ("red circle", "blue_square", "pink heart", "green crescent moon", "cyan star")
TEMPLATES = ("a photo of a {}.", "a drawing of a {}.")
PROMPT_METHODS = ("coop", "cocoop", "kgcoop", "contcoop")


def _clip(config="tiny-clip", seed=0, name="tiny-rand"):
    model = models.build_tiny(config, seed=seed).eval().requires_grad_(False)
    return models.Clip(name, None, model, open_clip.get_tokenizer(config))


@pytest.fixture(scope="module")
def clip():
    return _clip()


@pytest.fixture(scope="module")
def clip_b():
    return _clip(seed=1, name="tiny-rand-b")


def _batch(n=6, dim=64, seed=0, n_cls=len(NAMES)):
    gen = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, dim, generator=gen), dim=-1)
    return methods.Batch(labels=torch.arange(n) % n_cls, index=torch.arange(n), features=feats)


def _attached(name, clip, **cfg):
    return methods.create(name, clip, **cfg).attach(clip, NAMES, TEMPLATES)


# --------------------------------------------------------------------------- CoOp
def test_coop_without_context_is_zero_shot_with_bare_template(clip):
    coop = _attached("coop", clip, n_ctx=0, ctx_init=None)
    zs = methods.create("zero-shot", clip).attach(clip, NAMES, ("{}.",))
    b = _batch()
    with torch.no_grad():
        assert torch.allclose(coop(b), zs(b), atol=1e-5)
        # and it is not the "a photo of a {}." classifier (the check can fail)
        photo = methods.create("zero-shot", clip).attach(clip, NAMES, TEMPLATES[:1])
        assert not torch.allclose(coop(b), photo(b), atol=1e-3)


def test_coop_initialised_from_words_is_zero_shot_with_those_words(clip):
    coop = _attached("coop", clip)  # ctx = embeddings of "a photo of a"
    zs = methods.create("zero-shot", clip).attach(clip, NAMES, TEMPLATES[:1])
    b = _batch()
    with torch.no_grad():
        assert torch.allclose(coop(b), zs(b), atol=1e-5)


def test_prompts_encoded_up_to_end_of_text_equal_the_full_context(clip):
    # PromptedClasses.encode stops at the last end-of-text token; the full 32-token context
    # gives the same features because the causal mask hides the padding
    coop = _attached("coop", clip)
    _perturb(coop)
    p = coop.prompts
    assert text.trimmed_length(clip.model, p.tokens) < p.tokens.shape[1]
    with torch.no_grad():
        full = F.normalize(text.encode_embedded(clip.model, p.assemble(coop.ctx), p.tokens), dim=-1)
        assert torch.allclose(coop.class_features(), full, atol=1e-5)


# --------------------------------------------------------------------------- CoCoOp
@pytest.mark.parametrize("chunk_size", [2048, 4])  # 4: chunks that split an image's classes
def test_cocoop_batched_equals_per_image_loop(clip, chunk_size):
    m = _attached("cocoop", clip, chunk_size=chunk_size)
    b = _batch(n=5)
    with torch.no_grad():
        fast, slow = m(b), m.forward_loop(b)
    assert fast.shape == (5, len(NAMES))
    assert torch.allclose(fast, slow, atol=1e-5)


def test_cocoop_meta_net_conditions_on_the_image(clip):
    m = _attached("cocoop", clip)
    coop = _attached("coop", clip)
    b = _batch(n=4)
    with torch.no_grad():
        assert not torch.allclose(m(b), coop(b), atol=1e-3)  # pi(x) != 0 shifts the context
        m.meta_net[2].weight.zero_()
        m.meta_net[2].bias.zero_()
        assert torch.allclose(m(b), coop(b), atol=1e-5)  # pi = 0: exactly CoOp


def test_cocoop_has_no_fixed_class_weights(clip):
    m = _attached("cocoop", clip)
    with pytest.raises(TypeError, match="depend on the image"):
        m.class_features()
    with pytest.raises(TypeError, match="depend on the image"):
        methods.class_weights(m, clip, NAMES)
    feats = m.class_features(_batch(n=3).features)
    assert feats.shape == (3, len(NAMES), 64)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(3, len(NAMES)), atol=1e-5)


def test_cocoop_rejects_bad_chunk_size(clip):
    with pytest.raises(ValueError, match="chunk_size"):
        methods.create("cocoop", clip, chunk_size=0)


# --------------------------------------------------------------------------- KgCoOp
def _perturb(m, seed=3):
    with torch.no_grad():
        m.ctx.add_(0.5 * torch.randn(m.ctx.shape, generator=torch.Generator().manual_seed(seed)))


def test_kgcoop_without_weight_is_cross_entropy(clip):
    m = _attached("kgcoop", clip, kg_weight=0.0)
    _perturb(m)
    b = _batch()
    loss, logs = m.loss(b, m(b))
    assert torch.allclose(loss, F.cross_entropy(m(b), b.labels), atol=1e-6)
    assert logs["kg"] > 1e-4  # the regulariser is live, only weighted by 0


def test_kgcoop_regulariser_is_one_minus_mean_cosine(clip):
    m = _attached("kgcoop", clip, kg_weight=8.0)
    b = _batch()
    loss0, logs0 = m.loss(b, m(b))
    assert abs(logs0["kg"]) < 1e-5  # ctx "a photo of a" = the hand-made template
    _perturb(m)
    logits = m(b)
    loss, logs = m.loss(b, logits)
    with torch.no_grad():
        w = m.class_features()
        w0 = methods.create("zero-shot", clip, ensemble=False).attach(clip, NAMES,
                                                                       TEMPLATES).weights
        kg = 1 - F.cosine_similarity(w, w0, dim=-1).mean()
    assert logs["kg"] == pytest.approx(float(kg), abs=1e-5)
    assert loss.item() == pytest.approx((F.cross_entropy(logits, b.labels) + 8 * kg).item(),
                                        abs=1e-4)


# --------------------------------------------------------------------------- ContCoOp
def test_contcoop_with_gamma_zero_is_coop(clip):
    cont = _attached("contcoop", clip)
    coop = _attached("coop", clip)
    _perturb(cont)
    with torch.no_grad():
        coop.ctx.copy_(cont.ctx)
    b = _batch()
    with torch.no_grad():
        assert float(cont.gamma) == 0.0
        assert torch.allclose(cont(b), coop(b), atol=1e-5)
        cont.gamma.fill_(0.5)  # the attention term is live once gamma moves
        assert not torch.allclose(cont(b), coop(b), atol=1e-3)


@pytest.mark.parametrize("kind", ["tok", "tok-mean", "txt"])
@pytest.mark.parametrize("kv", ["class", "prompt+class"])
def test_contcoop_switches_give_class_conditioned_context(clip, kind, kv):
    m = _attached("contcoop", clip, class_embedding=kind, kv=kv, gamma_init=1.0)
    ctx = m.class_context()
    assert ctx.shape == (len(NAMES), 4, 64)
    assert not torch.allclose(ctx[0], ctx[1], atol=1e-4)  # each class gets its own context
    assert torch.isfinite(m(_batch())).all()


def test_contcoop_class_embeddings_come_from_the_attached_model(clip, clip_b):
    m = _attached("contcoop", clip)
    emb_a = m.class_emb.clone()
    m.attach(clip_b, NAMES, TEMPLATES)
    emb_b = m.class_emb
    assert emb_a.shape == emb_b.shape
    assert not torch.allclose(emb_a, emb_b)
    for c, name in enumerate(NAMES):
        tokens = clip_b.tokenize([name.replace("_", " ")])
        n = int(tokens.argmax(-1)) - 1
        want = text.embed_tokens(clip_b.model, tokens)[0, 1:1 + n]
        assert torch.equal(emb_b[c, :n], want)
        assert bool(m.class_pad[c, n:].all()) and not bool(m.class_pad[c, :n].any())
    assert m.class_pad.any()


def test_contcoop_padding_is_masked(clip):
    # the short names alone have fewer padded key slots; their context must not change
    m = _attached("contcoop", clip, gamma_init=1.0)
    with torch.no_grad():
        full = m.class_context()
        m.attach(clip, NAMES[:2], TEMPLATES)
        assert m.class_emb.shape[1] < 4
        assert torch.allclose(m.class_context(), full[:2], atol=1e-6)


def test_contcoop_without_kd_is_cross_entropy(clip):
    m = _attached("contcoop", clip, kd="none", gamma_init=0.3)
    _perturb(m)
    b = _batch()
    logits = m(b)
    loss, logs = m.loss(b, logits)
    assert torch.allclose(loss, F.cross_entropy(logits, b.labels))
    assert set(logs) == {"ce"}


def test_contcoop_kl_distillation(clip):
    m = _attached("contcoop", clip, kd_weight=2.0, kd_temperature=2.0)
    b = _batch()
    _, logs = m.loss(b, m(b))
    assert abs(logs["kd"]) < 1e-5  # starts at the zero-shot prompt: nothing to distil
    _perturb(m)
    logits = m(b)
    loss, logs = m.loss(b, logits)
    zs = methods.create("zero-shot", clip, ensemble=False).attach(clip, NAMES, TEMPLATES)
    p0 = F.softmax(zs(b) / 2, -1)
    logits = logits.detach()
    kl = (p0 * (p0.log() - F.log_softmax(logits / 2, -1))).sum(-1).mean() * 4
    assert logs["kd"] == pytest.approx(kl.item(), rel=1e-4, abs=1e-6)
    assert loss.item() == pytest.approx((F.cross_entropy(logits, b.labels) + 2 * kl).item(),
                                        rel=1e-5)


def test_contcoop_l2_text_distillation(clip):
    m = _attached("contcoop", clip, kd="l2_text")
    _perturb(m)
    b = _batch()
    _, logs = m.loss(b, m(b))
    w0 = methods.create("zero-shot", clip, ensemble=False).attach(clip, NAMES, TEMPLATES).weights
    want = 1 - F.cosine_similarity(m.class_features(), w0, dim=-1).mean()
    assert logs["kd"] == pytest.approx(want.item(), abs=1e-5)


@pytest.mark.parametrize("setting", [{"class_embedding": "word"}, {"kv": "both"},
                                     {"kd": "kl"}, {"heads": 5}])
def test_contcoop_bad_settings_name_the_setting(clip, setting):
    with pytest.raises(ValueError, match=next(iter(setting))):
        methods.create("contcoop", clip, **setting)


def test_contcoop_txt_keys_need_equal_widths():
    wide = _clip("tiny-clip-wide")  # text width 96 = embed dim 96: allowed
    assert methods.create("contcoop", wide, class_embedding="txt").widths() == \
        {"text width": 96, "embed dim": 96}


def test_contcoop_state_is_model_agnostic(clip):
    m = _attached("contcoop", clip)
    keys = set(m.state_dict())
    assert "ctx" in keys and "gamma" in keys
    assert not any(k.startswith(("prompts", "class_", "clip_")) for k in keys)


# --------------------------------------------------------------------------- shared contract
@pytest.mark.parametrize("name", PROMPT_METHODS)
def test_width_mismatch_names_both_widths(clip, name, tmp_path):
    m = methods.create(name, clip)
    wide = _clip("tiny-clip-wide", name="tiny-wide")
    with pytest.raises(methods.WidthMismatchError, match=r"64.*96"):
        m.attach(wide, NAMES)
    path = m.save(tmp_path / f"{name}.safetensors")
    with pytest.raises(methods.WidthMismatchError, match=r"64.*96"):
        methods.load(tmp_path / f"{name}.safetensors", wide, NAMES)
    assert path


@pytest.mark.parametrize("name", PROMPT_METHODS)
def test_save_load_round_trip_gives_identical_logits(clip, name, tmp_path):
    m = _attached(name, clip, init_seed=4, ctx_init=None, n_ctx=3)
    _perturb(m)
    if name == "contcoop":
        with torch.no_grad():
            m.gamma.fill_(0.7)
    path = tmp_path / f"{name}.safetensors"
    m.save(path)
    loaded = methods.load(path, clip, NAMES, TEMPLATES)
    assert type(loaded) is type(m) and loaded.config == m.config
    b = _batch()
    with torch.no_grad():
        assert torch.equal(loaded(b), m(b))


@pytest.mark.parametrize("name", PROMPT_METHODS)
def test_one_training_step_is_finite_and_moves_the_state(clip, name):
    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    ds = data.ImageSet("rand", images, np.array([0, 1, 2, 3, 4, 0, 1, 2]), NAMES, TEMPLATES)
    m = methods.create(name, clip).attach(clip, NAMES, TEMPLATES)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    hist = train.fit(m, ds, train.TrainConfig(epochs=1, batch_size=4, max_steps=2, n_views=1,
                                              lr=0.1), progress=False)
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["loss"]))
    after = m.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_unknown_setting_and_unknown_method(clip):
    with pytest.raises(TypeError, match="n_cxt"):
        methods.create("coop", clip, n_cxt=4)
    for name in PROMPT_METHODS:
        with pytest.raises(TypeError, match="no setting"):
            methods.create(name, clip, bogus=1)
    with pytest.raises(KeyError, match="cocop"):
        methods.create("cocop", clip)


def test_deterministic_initialisation(clip):
    for name in ("cocoop", "contcoop"):
        a = methods.create(name, clip, ctx_init=None)
        torch.manual_seed(123)  # the global generator plays no part
        b = methods.create(name, clip, ctx_init=None)
        assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
