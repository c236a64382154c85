import dataclasses

import numpy as np
import pytest

from cliptune import world


def test_render_is_deterministic_and_seed_dependent():
    scene = world.Scene("star", "red", "striped", "large", 1, "grey", "photo")
    a, b, c = world.render(scene, 7), world.render(scene, 7), world.render(scene, 8)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("domain", world.DOMAINS)
def test_every_domain_draws_the_object_in_its_colour(domain):
    # the label's evidence survives the shift: some pixels are close to the object colour
    scene = world.Scene("circle", "blue", "plain", "large", 1, "white", domain)
    img = world.render(scene, 0).astype(float) / 255
    dist = np.linalg.norm(img - np.array(world.COLOURS["blue"]), axis=-1)
    assert (dist < 0.35).sum() >= 10


def test_shapes_differ_from_each_other():
    imgs = {s: world.render(world.Scene(s, "red", "plain", "large", 1, "white", "cartoon"), 0)
            for s in world.SHAPES}
    masks = {s: (im.astype(int).sum(-1) < 600) for s, im in imgs.items()}
    for a in world.SHAPES:
        for b in world.SHAPES:
            if a < b:
                assert (masks[a] != masks[b]).sum() > 5, (a, b)


def test_task_split_labels_and_disjoint_seeds():
    x_tr, y_tr, s_tr = world.task_split("objects", "train")
    x_te, y_te, s_te = world.task_split("objects", "test")
    spec = world.TASKS["objects"]
    assert len(spec.classnames) >= 50
    assert np.bincount(y_tr).tolist() == [spec.train_per_class] * len(spec.classnames)
    for y, s in zip(y_te, s_te):
        assert spec.classnames[y] == f"{s.colour} {s.shape}"
    # no test image is also a training image
    tr = {im.tobytes() for im in x_tr}
    assert not any(im.tobytes() in tr for im in x_te)


def test_task_labels_match_scenes_for_every_task():
    for task in world.TASKS:
        _, y, scenes = world.task_split(task, "test", "sketch")
        names = world.TASKS[task].classnames
        for label, scene in list(zip(y, scenes))[::17]:
            attr = {"shapes": scene.shape, "colours": scene.colour,
                    "objects": f"{scene.colour} {scene.shape}", "textures": scene.texture,
                    "counts": world.COUNTS[scene.count - 1]}[task]
            assert names[label] == attr
            assert scene.domain == "sketch"


def test_unknown_task_domain_split_are_clear_errors():
    with pytest.raises(KeyError, match="unknown task 'cars'"):
        world.task_split("cars", "test")
    with pytest.raises(KeyError, match="unknown domain"):
        world.task_split("shapes", "test", "xray")
    with pytest.raises(ValueError, match="split"):
        world.task_split("shapes", "val")


def test_corpora_are_deterministic_captioned_and_distinct():
    a_img, a_cap, a_sc = world.corpus("retrieval", 50)
    b_img, b_cap, _ = world.corpus("retrieval", 50)
    c_img, _, _ = world.corpus("pretrain-v1", 50)
    assert np.array_equal(a_img, b_img) and a_cap == b_cap
    assert not np.array_equal(a_img, c_img)
    for cap, sc in zip(a_cap, a_sc):
        # the fine shape, its description, or the coarse word free captions often use instead
        words = (sc.shape, world.SHAPE_DESCRIPTION[sc.shape], world.SHAPE_FAMILY[sc.shape])
        assert (any(w in cap for w in words) or "shapes" in cap or "object" in cap
                or "pattern" in cap)


def test_pretraining_mix_has_coverage_gaps():
    _, _, scenes = world.corpus("pretrain-v1", 2000)
    share = {d: np.mean([s.domain == d for s in scenes]) for d in world.DOMAINS}
    assert share["photo"] > 0.6 and 0 < share["clutter"] < 0.06


def test_captioner_names_every_attribute():
    s = world.Scene("hexagon", "pink", "dotted", "small", 3, "beige", "painting")
    cap = world.captioner(s)
    for word in ("hexagons", "pink", "dotted", "small", "three", "beige", "painting"):
        assert word in cap


def test_free_captions_name_fine_attributes_only_part_of_the_time():
    """Coarse words stand in for the fine shape and colour in part of the free captions, and
    most captions that tell the fine shape apart describe it rather than name it; the
    captioner (rich) always names the fine ones."""
    _, caps, scenes = world.corpus("pretrain-v1", 2000)
    named = np.mean([s.shape in c.split(" ") or s.shape + "s" in c for c, s in zip(caps, scenes)])
    described = np.mean([world.SHAPE_DESCRIPTION[s.shape] in c for c, s in zip(caps, scenes)])
    coarse = np.mean([world.SHAPE_FAMILY[s.shape] in c and
                      world.SHAPE_DESCRIPTION[s.shape] not in c for c, s in zip(caps, scenes)])
    expected_named = world.FINE_SHAPE_P * world.SHAPE_NAME_P
    assert abs(named - expected_named) < 0.03 and described > 3 * named and coarse > 0.1
    assert all(s.shape in world.captioner(s) and s.colour in world.captioner(s)
               for s in scenes[:50])


def test_textures_are_described_more_often_than_named():
    _, caps, scenes = world.corpus("pretrain-v1", 2000)
    textured = [(c, s) for c, s in zip(caps, scenes) if s.texture != "plain"]
    named = np.mean([s.texture in c for c, s in textured])
    described = np.mean([world.TEXTURE_DESCRIPTION[s.texture] in c for c, s in textured])
    assert described > 2 * named > 0


def test_name_noise_swaps_names_for_look_alikes_only_when_asked(monkeypatch):
    """NAME_NOISE_P = 0 never misnames; above 0 a share of the captions that name a shape use
    a look-alike of the same family instead."""
    monkeypatch.setattr(world, "SHAPE_NAME_P", 1.0)
    monkeypatch.setattr(world, "NAME_NOISE_P", 0.0)
    rng = np.random.default_rng(0)
    assert {world._shape_words("diamond", rng, rich=False) for _ in range(200)} \
        <= {"diamond", world.SHAPE_FAMILY["diamond"]}
    monkeypatch.setattr(world, "NAME_NOISE_P", 0.5)
    scene = world.Scene("diamond", "red", "plain", "small", 1, "black", "photo")
    names = [world._shape_words("diamond", rng, rich=False) for _ in range(400)]
    named = [n for n in names if n in world.SHAPE_FAMILY]
    wrong = [n for n in named if n != "diamond"]
    assert set(wrong) <= {"square", "triangle", "hexagon"}  # diamond's family: polygons
    assert 0.35 < len(wrong) / len(named) < 0.65
    assert "diamond" in world.captioner(scene)  # the world's captioner never misnames
    assert world.caption_knobs()["NAME_NOISE_P"] == 0.5


def test_texture_noise_sets_the_texture_share_apart_from_the_shapes(monkeypatch):
    monkeypatch.setattr(world, "NAME_NOISE_P", 1.0)
    monkeypatch.setattr(world, "TEXTURE_NOISE_P", None)
    rng = np.random.default_rng(0)
    assert "TEXTURE_NOISE_P" not in world.caption_knobs()  # None: as NAME_NOISE_P
    assert world._misnamed("checkered", rng) == "dotted"
    monkeypatch.setattr(world, "TEXTURE_NOISE_P", 0.0)
    assert {world._misnamed("checkered", rng) for _ in range(50)} == {"checkered"}
    assert world._misnamed("diamond", rng) != "diamond"  # shapes keep NAME_NOISE_P
    assert world.caption_knobs()["TEXTURE_NOISE_P"] == 0.0


def test_name_noise_to_common_names_only_moves_towards_the_everyday_name(monkeypatch):
    monkeypatch.setattr(world, "NAME_NOISE_P", 1.0)
    monkeypatch.setattr(world, "NAME_NOISE_TO", "common")
    monkeypatch.setattr(world, "TEXTURE_NOISE_P", None)
    rng = np.random.default_rng(0)
    assert [world._misnamed(n, rng) for n in ("ring", "diamond", "cross", "wavy", "checkered")] \
        == ["circle", "square", "star", "striped", "dotted"]
    assert [world._misnamed(n, rng) for n in ("circle", "square", "star", "striped")] \
        == ["circle", "square", "star", "striped"]  # the everyday names stay
    monkeypatch.setattr(world, "NAME_NOISE_TO", "sibling")
    with pytest.raises(ValueError, match="NAME_NOISE_TO='sibling'"):
        world._misnamed("ring", rng)


def test_cartoon_wobble_changes_cartoons_only(monkeypatch):
    monkeypatch.setattr(world, "CARTOON_WOBBLE", 0.0)
    cartoon = world.Scene("star", "red", "plain", "large", 1, "white", "cartoon")
    photo = dataclasses.replace(cartoon, domain="photo")
    flat, shot = world.render(cartoon, 3), world.render(photo, 3)
    monkeypatch.setattr(world, "CARTOON_WOBBLE", 0.08)
    drawn = world.render(cartoon, 3)
    assert np.array_equal(world.render(photo, 3), shot)
    ink = lambda im: int((im.max(-1) < 20).sum())  # noqa: E731  (near-black pixels)
    assert not np.array_equal(drawn, flat) and ink(drawn) > 1.5 * ink(flat)


def test_a_cached_split_is_never_handed_out_after_the_rendering_knob_changes(monkeypatch):
    monkeypatch.setattr(world, "CARTOON_WOBBLE", 0.0)
    flat = world.task_split("shapes", "test", "cartoon")[0]
    monkeypatch.setattr(world, "CARTOON_WOBBLE", 0.08)
    assert not np.array_equal(world.task_split("shapes", "test", "cartoon")[0], flat)


@pytest.mark.parametrize("knob, value, texture", [("CHECKER_FREQ", 8.0, "checkered"),
                                                   ("WAVE_AMPLITUDE", 4.0, "wavy")])
def test_a_pattern_knob_changes_its_own_texture_only_and_is_recorded(monkeypatch, knob, value,
                                                                     texture):
    for k, first in world.FIRST_ZOO_PATTERNS.items():  # start from the first zoos' patterns
        monkeypatch.setattr(world, k, first)
    scene = world.Scene("square", "red", texture, "large", 1, "white", "photo")
    stripes = dataclasses.replace(scene, texture="striped")
    before, striped = world.render(scene, 3), world.render(stripes, 3)
    split = world.task_split("textures", "test")[0]
    v, u = np.mgrid[-1:1:64j, -1:1:64j]
    edges = lambda: int(np.diff(world._texture_mask(texture, u, v), axis=1).sum())  # noqa: E731
    edges_before = edges()
    assert knob not in world.caption_knobs()  # the first zoos' pattern
    monkeypatch.setattr(world, knob, value)
    assert edges() > 1.2 * edges_before  # finer checks, steeper waves: more light/dark edges
    assert not np.array_equal(world.render(scene, 3), before)
    assert np.array_equal(world.render(stripes, 3), striped)
    assert world.caption_knobs()[knob] == value
    assert not np.array_equal(world.task_split("textures", "test")[0], split)  # not the cache


def test_texture_task_shapes_changes_the_textures_task_only(monkeypatch):
    monkeypatch.setattr(world, "TEXTURE_TASK_SHAPES", world.SHAPES)
    assert {s.shape for s in world.task_split("textures", "train")[2]} == set(world.SHAPES)
    shapes_before = world.task_split("shapes", "train")[0]
    monkeypatch.setattr(world, "TEXTURE_TASK_SHAPES", world.FILLED_SHAPES)
    _, labels, scenes = world.task_split("textures", "train")
    assert {s.shape for s in scenes} == set(world.FILLED_SHAPES)
    assert [world.TEXTURES.index(s.texture) for s in scenes] == labels.tolist()
    assert np.array_equal(world.task_split("shapes", "train")[0], shapes_before)
    monkeypatch.setattr(world, "TEXTURE_TASK_SHAPES", ("circle", "oval"))
    with pytest.raises(ValueError, match="TEXTURE_TASK_SHAPES"):
        world.task_split("textures", "train")


def test_textures_base_knob_chooses_the_base_half(monkeypatch):
    assert world.base_classes("textures") == ("plain", "striped", "checkered")  # the default
    monkeypatch.setattr(world, "TEXTURES_BASE", ())
    assert world.base_classes("textures") == ("plain", "striped", "dotted")  # CoOp's first half
    monkeypatch.setattr(world, "TEXTURES_BASE", ("checkered", "plain", "striped"))
    assert world.base_classes("textures") == ("plain", "striped", "checkered")  # class order
    from cliptune import data
    base, new = data.base_new(data.tiny("textures", "test"))
    assert new.classnames == ("dotted", "wavy", "hatched")
    assert len(base) + len(new) == len(world.TEXTURES) * world.TASKS["textures"].test_per_class
    monkeypatch.setattr(world, "TEXTURES_BASE", ("plain", "stripy"))
    with pytest.raises(ValueError, match="TEXTURES_BASE"):
        world.base_classes("textures")


def test_shapes_base_classes_split_every_look_alike_family():
    base = world.base_classes("shapes")
    assert len(base) == 5 and set(base) <= set(world.SHAPES)
    for family in set(world.SHAPE_FAMILY.values()):
        members = [s for s in world.SHAPES if world.SHAPE_FAMILY[s] == family]
        in_base = sum(s in base for s in members)
        assert in_base == len(members) - in_base  # half of every family is base
    assert world.base_classes("objects") == world.TASKS["objects"].classnames[:40]
    with pytest.raises(KeyError, match="unknown task 'shape'"):
        world.base_classes("shape")


@pytest.fixture
def restore_textures(monkeypatch):
    """use_textures rebinds world.TEXTURES and the textures task: put both back afterwards."""
    monkeypatch.setattr(world, "TEXTURES", world.TEXTURES)
    monkeypatch.setitem(world.TASKS, "textures", world.TASKS["textures"])


def test_use_textures_adds_a_pattern_to_every_draw_and_to_the_task(restore_textures):
    five = world.task_split("textures", "test")
    world.use_textures(world.FIRST_ZOO_TEXTURES)
    assert "TEXTURES" not in world.caption_knobs()  # the first zoos' five: nothing to record
    world.use_textures(world.PATTERNS)
    assert world.TASKS["textures"].classnames == world.PATTERNS
    images, labels, scenes = world.task_split("textures", "test")  # not the cached five
    assert len(images) == len(world.PATTERNS) * world.TASKS["textures"].test_per_class \
        != len(five[0])
    assert [world.PATTERNS.index(s.texture) for s in scenes] == labels.tolist()
    assert world.base_classes("textures") == ("plain", "striped", "checkered")
    # zigzags are drawn, differ from waves, and a caption names or describes them
    v, u = np.mgrid[-1:1:64j, -1:1:64j]
    assert world._texture_mask("zigzag", u, v).mean() > 0.1
    assert (world._texture_mask("zigzag", u, v) != world._texture_mask("wavy", u, v)).mean() > 0.1
    scene = world.Scene("square", "red", "zigzag", "large", 1, "white", "photo")
    assert "zigzag" in world.captioner(scene)
    assert world.caption_knobs()["TEXTURES"] == list(world.PATTERNS)
    rng = np.random.default_rng(0)
    assert any(s.texture == "zigzag" for s in (world.random_scene(rng, {"photo": 1.0})
                                               for _ in range(200)))


def test_hatched_is_a_lattice_of_lines_named_in_one_token_and_balances_the_halves(
        restore_textures):
    v, u = np.mgrid[-1:1:64j, -1:1:64j]
    hatched = world._texture_mask("hatched", u, v)
    assert 0.2 < hatched.mean() < 0.6
    for other in ("checkered", "striped", "dotted"):  # its own pattern, not a look-alike's
        assert (hatched != world._texture_mask(other, u, v)).mean() > 0.2
    assert world.TEXTURE_LOOKALIKE["hatched"] == "checkered"
    assert "crossing lines" in world.TEXTURE_DESCRIPTION["hatched"]
    world.use_textures(("plain", "striped", "dotted", "checkered", "wavy", "hatched"))
    base = world.base_classes("textures")
    new = [c for c in world.TEXTURES if c not in base]
    # three and three: each half holds one line pattern and one lattice
    assert len(base) == len(new) == 3
    assert {"striped", "checkered"} <= set(base) and {"wavy", "hatched"} <= set(new)
    scene = world.Scene("square", "red", "hatched", "large", 1, "white", "photo")
    assert any("hatched" in world.captioner(scene, k) or "crossing lines" in
               world.captioner(scene, k) for k in range(20))


@pytest.mark.parametrize("names, why", [
    (("plain", "striped", "spotted"), "no pattern named spotted"),
    (("striped", "plain"), "put 'plain' first"),
    (("plain", "wavy", "wavy"), "name each texture once"),
    ((), "put 'plain' first")])
def test_use_textures_refuses_unknown_repeated_or_plainless_sets(restore_textures, names, why):
    with pytest.raises(ValueError, match="TEXTURES=") as err:
        world.use_textures(names)
    assert why in str(err.value)
    assert world.TEXTURES == ("plain", "striped", "dotted", "checkered", "wavy",
                              "hatched")  # unchanged


def test_use_recorded_rendering_redraws_the_world_a_manifest_recorded(restore_textures,
                                                                       monkeypatch):
    for knob in ("CHECKER_FREQ", "WAVE_AMPLITUDE", "ZIGZAG_AMPLITUDE", "CARTOON_WOBBLE"):
        monkeypatch.setattr(world, knob, getattr(world, knob))
    world.use_textures(("plain", "striped", "dotted", "checkered", "wavy", "hatched"))
    recorded = world.caption_knobs()
    drawn = world.task_split("textures", "test")[0]
    world.use_recorded_rendering({})  # a first-zoo record: every pattern knob left out
    assert world.TEXTURES == world.FIRST_ZOO_TEXTURES and world.CARTOON_WOBBLE == 0.0
    assert world.CHECKER_FREQ == world.FIRST_ZOO_PATTERNS["CHECKER_FREQ"]
    world.use_recorded_rendering(recorded)
    assert world.caption_knobs() == recorded
    assert np.array_equal(world.task_split("textures", "test")[0], drawn)
