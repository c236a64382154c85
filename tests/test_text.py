import pytest
import torch

from cliptune import models, text


def test_encode_text_reproduces_open_clip_exactly(tiny_clip):
    tokens = tiny_clip.tokenize(["a photo of a red star.", "two blue circles on a grey background."])
    assert torch.equal(text.encode_text(tiny_clip.model, tokens), tiny_clip.model.encode_text(tokens))


def test_the_causal_mask_matters(tiny_clip):
    # without the explicit mask the result differs: the test above is not vacuous
    tower = text.text_tower(tiny_clip.model)
    tokens = tiny_clip.tokenize(["a photo of a red star."])
    x = text.embed_tokens(tiny_clip.model, tokens) + tower.positional_embedding
    for block in tower.transformer.resblocks:
        x = block(x)
    unmasked = text._pool_and_project(tower, x, tokens)
    assert not torch.allclose(unmasked, tiny_clip.model.encode_text(tokens), atol=1e-4)


def test_chunking_does_not_change_features(tiny_clip):
    tokens = tiny_clip.tokenize([f"a photo of a {i} square." for i in range(7)])
    full = text.encode_text(tiny_clip.model, tokens, chunk_size=100)
    chunked = text.encode_text(tiny_clip.model, tokens, chunk_size=3)
    assert torch.allclose(full, chunked, atol=1e-6)


def test_deep_prompts_replace_positions_and_zero_prompts_are_identity(tiny_clip):
    tokens = tiny_clip.tokenize(text.placeholder_prompts(["red star"], 2))
    emb = text.embed_tokens(tiny_clip.model, tokens)
    plain = text.encode_embedded(tiny_clip.model, emb, tokens)
    empty = text.encode_embedded(tiny_clip.model, emb, tokens, deep_prompts=[torch.zeros(0, 64)] * 2)
    assert torch.equal(plain, empty)
    prompted = text.encode_embedded(tiny_clip.model, emb, tokens, deep_prompts=[torch.ones(2, 64)])
    assert not torch.allclose(plain, prompted)


def test_real_architectures_random_init_forward():
    clip = models.load_clip("ViT-B-16", None, device="cpu")
    tokens = clip.tokenize(["a photo of a dog."])
    assert torch.equal(text.encode_text(clip.model, tokens), clip.model.encode_text(tokens))
    img = torch.randn(1, 3, 224, 224)
    assert clip.model.encode_image(img).shape == (1, 512)
    assert text.text_tower(clip.model).width == 512


def test_placeholder_prompts():
    assert text.placeholder_prompts(["red_star"], 3) == ["X X X red star."]
    assert text.placeholder_prompts(["dog"], 0) == ["dog."]
