import dataclasses

import pytest
import torch

from cliptune import data, features


@pytest.fixture()
def loaded_clip(tiny_clip, tmp_path, monkeypatch):
    """tiny_clip as if loaded from a weights file, with the disk cache in a temporary folder."""
    monkeypatch.setenv("CLIPTUNE_FEATURE_CACHE", str(tmp_path / "features"))
    features.clear()
    return dataclasses.replace(tiny_clip, weights_sha256="ab" * 32)


def test_features_of_a_loaded_model_persist_and_are_read_back(loaded_clip, tmp_path,
                                                               monkeypatch):
    ds = data.tiny("shapes", "train").subset(range(40))
    first = features.image_features(loaded_clip, ds)
    assert len(list((tmp_path / "features").rglob("*.safetensors"))) == 1
    features.clear()  # a new process: only the disk cache is left

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again instead of reading the cache")
    monkeypatch.setattr(loaded_clip.model, "encode_image", no_encoding)
    assert torch.equal(features.image_features(loaded_clip, ds), first)


def test_a_model_changed_in_place_is_encoded_again(loaded_clip, tmp_path):
    ds = data.tiny("shapes", "train").subset(range(40))
    before = features.image_features(loaded_clip, ds)
    saved = {k: v.clone() for k, v in loaded_clip.model.state_dict().items()}
    try:
        with torch.no_grad():
            next(loaded_clip.model.visual.parameters()).add_(0.5)
        features.clear()
        after = features.image_features(loaded_clip, ds)
        assert not torch.equal(before, after)
        assert len(list((tmp_path / "features").iterdir())) == 2  # one folder per weights
    finally:
        loaded_clip.model.load_state_dict(saved)


def test_fine_tuned_copies_and_switched_off_cache_write_nothing(tiny_clip, tmp_path,
                                                                 monkeypatch):
    ds = data.tiny("shapes", "train").subset(range(20))
    monkeypatch.setenv("CLIPTUNE_FEATURE_CACHE", str(tmp_path / "f"))
    features.clear()
    features.image_features(tiny_clip, ds)  # no weights file behind it
    monkeypatch.setenv("CLIPTUNE_FEATURE_CACHE", "off")
    assert features.disk_dir() is None
    assert not (tmp_path / "f").exists()


def test_a_subset_reuses_its_parents_features_but_not_its_augmented_views(loaded_clip,
                                                                            monkeypatch):
    parent = data.tiny("shapes", "train").subset(range(0, 480, 4), name="some shapes")
    whole = features.image_features(loaded_clip, parent)
    base, _ = data.base_new(parent)  # a subset of a subset: indices compose
    picked = base.subset([5, 0, 7])
    direct = loaded_clip.encode_images(picked.images)
    features.clear()  # only the disk cache holds the parent now

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded a subset whose parent is cached")
    monkeypatch.setattr(loaded_clip.model, "encode_image", no_encoding)
    sliced = features.image_features(loaded_clip, picked)
    assert torch.allclose(sliced, direct, atol=1e-5)
    assert torch.equal(features.image_features(loaded_clip, base),
                       whole[torch.as_tensor(base.origin[0][1])])
    with pytest.raises(AssertionError, match="encoded a subset"):
        features.image_features(loaded_clip, picked, view=1)  # augmented: encoded afresh
