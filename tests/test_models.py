import json

import pytest
import torch

from cliptune import models


def test_unknown_model_and_tag_are_clear_errors():
    with pytest.raises(KeyError, match="unknown model 'ViT-B-61'"):
        models.load_clip("ViT-B-61")
    with pytest.raises(KeyError, match="no pretrained tag 'laion9b'"):
        models.load_clip("ViT-B-16", "laion9b")


def test_uncached_weights_name_the_tag_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(models.WeightsNotCachedError, match="laion2b_s34b_b88k.*create_model"):
        models.load_clip("ViT-B-16", "laion2b_s34b_b88k", device="cpu")


def test_local_weights_file_path_is_accepted(tmp_path):
    model = models._open_clip().create_model("tiny-clip", pretrained=None)
    path = tmp_path / "w.safetensors"
    models.save_weights(model.state_dict(), path)
    clip = models.load_clip("tiny-clip", str(path), device="cpu")
    assert torch.equal(clip.model.logit_scale, model.logit_scale)


def test_corrupt_and_missing_checkpoints(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        models.load_weights(bad)
    with pytest.raises(FileNotFoundError):
        models.load_weights(tmp_path / "absent.safetensors")


def test_missing_zoo_weights_without_training(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "ZOO_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="pretrain"):
        models.load_clip("tiny-v1", train_if_missing=False)


def test_build_tiny_is_deterministic():
    a, b = models.build_tiny(seed=3), models.build_tiny(seed=3)
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), k


@pytest.mark.parametrize("ssl_weight", [0.0, 0.5])
def test_pretrain_is_deterministic_and_resumes(monkeypatch, tmp_path, ssl_weight):
    # a miniature recipe: 6 steps, checkpoint at 3; interrupted run resumes to the same weights
    # (with the self-supervised term, its head and BatchNorm statistics resume too)
    monkeypatch.setattr(models, "ZOO_DIR", tmp_path)
    recipe = models.Recipe("tiny-test", corpus_size=64, steps=6, batch_size=16,
                           ssl_weight=ssl_weight)
    monkeypatch.setitem(models.ZOO, "tiny-test", recipe)
    models.pretrain("tiny-test", progress=False, checkpoint_every=3)
    first = models.load_weights(tmp_path / "tiny-test.safetensors")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["tiny-test"]["sha256"] == models.sha256(tmp_path / "tiny-test.safetensors")
    # interrupted after 3 steps: keep the partial checkpoint, then resume
    (tmp_path / "tiny-test.safetensors").unlink()
    monkeypatch.setitem(models.ZOO, "tiny-test", recipe)
    real_checkpoint = models._checkpoint

    def checkpoint_then_stop(*args):
        real_checkpoint(*args)
        raise KeyboardInterrupt
    monkeypatch.setattr(models, "_checkpoint", checkpoint_then_stop)
    with pytest.raises(KeyboardInterrupt):
        models.pretrain("tiny-test", progress=False, checkpoint_every=3)
    monkeypatch.setattr(models, "_checkpoint", real_checkpoint)
    assert (tmp_path / "tiny-test.partial.pt").exists()
    models.pretrain("tiny-test", progress=False, checkpoint_every=3)
    resumed = models.load_weights(tmp_path / "tiny-test.safetensors")
    for k in first:
        assert torch.allclose(first[k], resumed[k], atol=1e-6), k


def test_simclr_loss_rewards_matching_views():
    z = torch.eye(8)  # eight orthogonal embeddings
    matched = models.simclr_loss(z, z.clone(), temperature=0.1)
    shuffled = models.simclr_loss(z, z[torch.arange(8).roll(1)], temperature=0.1)
    assert matched < 0.01 < shuffled
    # a known value: every view equally similar to all others -> log(2N - 1)
    same = models.simclr_loss(torch.ones(4, 3), torch.ones(4, 3), temperature=0.1)
    assert torch.isclose(same, torch.log(torch.tensor(7.0)), atol=1e-5)


def test_ssl_view_is_seeded_and_changes_the_image():
    x = torch.randn(5, 3, 32, 32)
    a = models.ssl_view(x, torch.Generator().manual_seed(0))
    b = models.ssl_view(x, torch.Generator().manual_seed(0))
    c = models.ssl_view(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a, x)


def test_zoo_manifest_matches_committed_weights():
    path = models.ZOO_DIR / "manifest.json"
    if not path.exists():
        pytest.skip("no zoo yet")
    assert all(models.verify_zoo().values())


def test_the_committed_zoo_was_trained_under_the_worlds_caption_and_rendering_knobs():
    # a knob changed in world.py without retraining the zoo would leave the zoo's corpus and
    # the tasks' images drawn from two different worlds
    from cliptune import world
    path = models.ZOO_DIR / "manifest.json"
    if not path.exists():
        pytest.skip("no zoo yet")
    manifest = json.loads(path.read_text())
    assert {name: entry["captions"] for name, entry in manifest.items()} == \
        {name: world.caption_knobs() for name in manifest}


def test_weights_cached_reads_the_hub_cache_without_network(monkeypatch, tmp_path):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert not models.weights_cached("ViT-B-16", "laion2b_s34b_b88k")
    repo = tmp_path / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "open_clip_model.safetensors").write_bytes(b"x")
    assert models.weights_cached("ViT-B-16", "laion2b_s34b_b88k")


def test_conv_stem_keeps_the_token_grid_and_the_prompted_path():
    """The zoo's conv stem gives patch-8 tokens, and the opened-up ViT reproduces encode_image."""
    import torch
    from cliptune import vision
    model = models.build_tiny("tiny-clip", seed=0, stem="conv").eval()
    assert isinstance(model.visual.conv1, models.ConvStem)
    x = torch.randn(2, 3, 32, 32)
    assert model.visual.conv1(x).shape == (2, 128, 4, 4)
    assert vision.vision_width(model) == 128
    with torch.no_grad():
        assert torch.allclose(vision.encode_prompted(model, x), model.encode_image(x), atol=1e-5)
    with pytest.raises(ValueError, match="stem must be"):
        models.build_tiny("tiny-clip", stem="resnet")
