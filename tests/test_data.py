import json

import numpy as np
import pytest
from PIL import Image

from cliptune import data, world


def _fabricate_dtd(root, n_per_class=3, classes=("banded", "bubbly", "cracked")):
    """A tiny folder in CoOp's layout for DTD: images plus split_zhou_DescribableTextures.json."""
    base = root / "dtd"
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(classes):
        (base / "images" / name).mkdir(parents=True)
        for i in range(n_per_class * 3):
            rel = f"{name}/{name}_{i}.jpg"
            Image.fromarray(np.full((8, 8, 3), 30 * label, np.uint8)).save(base / "images" / rel)
            part = ("train", "val", "test")[i % 3]
            split[part].append([rel, label, name])
    (base / "split_zhou_DescribableTextures.json").write_text(json.dumps(split))
    return base


def test_coop_reader_reads_a_fabricated_folder(tmp_path):
    _fabricate_dtd(tmp_path)
    ds = data.coop("dtd", "train", root=tmp_path)
    assert ds.classnames == ("banded", "bubbly", "cracked")
    assert len(ds) == 9 and sorted(set(ds.labels.tolist())) == [0, 1, 2]
    assert ds.templates == ("{} texture.",)
    imgs = ds.raw([0, 1])
    assert imgs[0].size == (8, 8)


def test_coop_reader_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder .*dtd"):
        data.coop("dtd", root=tmp_path)
    with pytest.raises(KeyError, match="unknown dataset 'dtdd'"):
        data.coop("dtdd", root=tmp_path)
    base = _fabricate_dtd(tmp_path)
    split_file = base / "split_zhou_DescribableTextures.json"
    split_file.write_text("{not json")
    with pytest.raises(data.DatasetError, match="not valid JSON"):
        data.coop("dtd", root=tmp_path)
    split_file.write_text(json.dumps({"train": [["a.jpg", "zero", "x"]], "val": [], "test": []}))
    with pytest.raises(data.DatasetError, match=r"item 0 of 'train'"):
        data.coop("dtd", "train", root=tmp_path)
    split_file.write_text(json.dumps({"train": []}))
    with pytest.raises(data.DatasetError, match="no 'test' list"):
        data.coop("dtd", "test", root=tmp_path)
    split_file.unlink()
    with pytest.raises(FileNotFoundError, match="split file"):
        data.coop("dtd", root=tmp_path)


def test_imagenet_like_reader_and_renames(tmp_path):
    base = tmp_path / "imagenet-sketch"
    for wnid in ("n01", "n02"):
        (base / "images" / wnid).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(base / "images" / wnid / "a.JPEG")
    (base / "classnames.txt").write_text("n01 tench\nn02 goldfish\nn03 great white shark\n")
    ds = data.coop("imagenet_sketch", root=tmp_path)
    assert ds.classnames == ("tench", "goldfish") and ds.labels.tolist() == [0, 1]


def test_few_shot_is_seeded_balanced_and_cached(tmp_path):
    ds = data.tiny("shapes", "train")
    a = data.few_shot(ds, 4, seed=1)
    b = data.few_shot(ds, 4, seed=1)
    c = data.few_shot(ds, 4, seed=2)
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)
    assert np.bincount(a.labels).tolist() == [4] * len(ds.classnames)
    cached = data.few_shot(ds, 2, seed=3, cache_dir=tmp_path)
    assert (tmp_path / "shot_2-seed_3.json").exists()
    again = data.few_shot(ds, 2, seed=3, cache_dir=tmp_path)
    assert np.array_equal(cached.labels, again.labels)
    with pytest.raises(ValueError, match="shots"):
        data.few_shot(ds, 0, seed=1)


def test_base_new_split_like_coop():
    ds = data.tiny("objects", "test")
    base, new = data.base_new(ds)
    assert len(base.classnames) == 40 and len(new.classnames) == 40
    assert base.classnames + new.classnames == ds.classnames
    assert set(new.labels.tolist()) == set(range(40))
    shapes = data.tiny("shapes", "test")
    shapes_base, shapes_new = data.base_new(shapes)
    assert shapes_base.classnames == world.base_classes("shapes")
    assert set(shapes_base.classnames) | set(shapes_new.classnames) == set(shapes.classnames)
    assert len(shapes_new) + len(shapes_base) == len(shapes)
    # relabelled 0..4 within each half, images kept with their own class
    star = shapes_base.classnames.index("star")
    assert np.array_equal(shapes_base.images[shapes_base.labels == star],
                          shapes.images[shapes.labels == world.SHAPES.index("star")])
    # a class subset forgets the task's split and halves as CoOp does
    sub = shapes.select_classes(["ring", "star", "cross"])
    assert data.base_new(sub)[0].classnames == ("ring", "star")


def test_unknown_class_is_a_clear_error():
    ds = data.tiny("shapes", "test")
    with pytest.raises(KeyError, match="no class 'circel'"):
        ds.select_classes(["circel"])
