"""Every bad input of issue 9: one clear error naming the input and the fix, or correct work."""
import json
import pathlib
import shutil
import warnings

import numpy as np
import pytest
import torch

from cliptune import data, methods, models, protocols, results, runtime, train
from cliptune.methods import base


# --------------------------------------------------------------------------- class names
LONG = "word " * 40


@pytest.mark.parametrize("names, message", [
    ([LONG + "cat", LONG + "dog"], r"class name 'word word.*too long for tiny-rand.*context of"),
    (["cat", "dog", "cat"], r"class names repeat: \['cat'\]"),
    (["cat", "Cat "], r"class names repeat"),
    (["cat", ""], r"positions \[1\] are empty or blank"),
    (["cat", "   "], r"positions \[1\] are empty or blank"),
    ([], r"the class list is empty"),
])
def test_bad_class_lists_are_refused_on_attach(tiny_clip, names, message):
    for name in ("zero-shot", "coop"):
        with pytest.raises(ValueError, match=message):
            methods.create(name, tiny_clip).attach(tiny_clip, names)


def test_long_class_names_are_refused_by_the_zero_shot_weights(tiny_clip):
    with pytest.raises(ValueError, match="too long"):
        base.zero_shot_weights(tiny_clip, [LONG + "cat", LONG + "dog"], ("a photo of a {}.",))


def test_long_class_names_are_refused_on_a_real_architecture():
    clip = models.load_clip("ViT-B-16", None, device="cpu")  # random weights: tokenizer only
    with pytest.raises(ValueError, match=r"more than the text context of 77"):
        methods.create("zero-shot", clip).attach(clip, [LONG * 2 + "cat", LONG * 2 + "dog"])


def test_a_string_is_not_a_class_list(tiny_clip):
    with pytest.raises(ValueError, match="list of names"):
        methods.create("zero-shot", tiny_clip).attach(tiny_clip, "cat")


# --------------------------------------------------------------------------- weights
@pytest.fixture
def zoo_copy(tmp_path, monkeypatch):
    """A copy of the committed zoo's v1 and manifest in a temporary folder."""
    for f in ("manifest.json", "tiny-v1.safetensors"):
        shutil.copy(models.ZOO_DIR / f, tmp_path / f)
    monkeypatch.setattr(models, "ZOO_DIR", tmp_path)
    return tmp_path


def test_zoo_file_that_no_longer_matches_its_manifest(zoo_copy):
    models.load_clip("tiny-v1", device="cpu")  # intact: loads
    path = zoo_copy / "tiny-v1.safetensors"
    state = models.load_weights(path)
    state["logit_scale"] = state["logit_scale"] + 1.0
    models.save_weights(state, path)
    with pytest.raises(ValueError, match=r"tiny-v1.safetensors does not match its sha256 in "
                                         r"data/zoo/manifest.json.*git checkout"):
        models.load_clip("tiny-v1", device="cpu", train_if_missing=False)


def test_trained_modules_are_keyed_by_the_weights_not_the_name(zoo_copy):
    clip = models.load_clip("tiny-v1", device="cpu")
    ds = data.few_shot(data.tiny("shapes", "train"), 1, 1)
    cfg = train.TrainConfig()
    before = protocols.checkpoint_path("coop", ds, 1, clip, {}, cfg)
    changed = models.Clip(clip.name, None, clip.model, clip.tokenizer,
                          weights_sha256="f" * 64)
    assert protocols.checkpoint_path("coop", ds, 1, changed, {}, cfg) != before
    assert clip.fingerprint.startswith("tiny-v1@")


def test_damaged_local_weights_file_names_it_and_gives_no_unsafe_advice(tmp_path):
    bad = tmp_path / "damaged.pt"
    model = models._open_clip().create_model("tiny-clip", pretrained=None)
    torch.save(model.state_dict(), bad)
    bad.write_bytes(bad.read_bytes()[: 2000])  # truncated
    with pytest.raises(ValueError, match=r"damaged.pt.*could not be loaded into 'tiny-clip'") \
            as err:
        models.load_clip("tiny-clip", str(bad), device="cpu")
    assert "weights_only=False" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_pickle_with_code_is_refused_without_the_unsafe_advice(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "extra": pathlib.Path("x")}, evil)
    with pytest.raises(ValueError, match="evil.pt") as err:
        models.load_clip("tiny-clip", str(evil), device="cpu")
    assert "weights_only=False" not in str(err.value)


def test_weights_writes_use_a_fresh_temporary_name(tmp_path, monkeypatch):
    seen = []
    real = models.os.replace

    def spy(src, dst):
        seen.append(pathlib.Path(src).name)
        return real(src, dst)

    monkeypatch.setattr(models.os, "replace", spy)
    path = tmp_path / "m.safetensors"
    models.save_weights({"a": torch.zeros(2)}, path)
    models.save_weights({"a": torch.ones(2)}, path)
    models.save_partial(tmp_path / "p.partial.pt", {"step": 1})
    assert len(set(seen)) == 3 and all(n.endswith(".tmp") for n in seen)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert torch.equal(models.load_weights(path)["a"], torch.ones(2))


# --------------------------------------------------------------------------- images and splits
def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    from PIL import Image
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(data.open_image(path))
    assert rgb.shape == (8, 8, 3)
    expected = np.rint(ramp / 65535 * 255).astype(np.uint8)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    assert len(np.unique(rgb[..., 0])) > 30  # not all white


def test_truncated_jpeg_names_the_file(tmp_path):
    from PIL import Image
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:600])
    ds = data.ImageSet("x", [str(path)], np.zeros(1, np.int64), ("a",), ("{}",))
    with pytest.raises(data.DatasetError, match=r"cannot read image .*cut.jpg.*download it again"):
        ds.raw([0])


def test_bad_item_in_an_unused_split_list_names_the_file_and_item(tmp_path):
    folder = tmp_path / "dtd"
    (folder / "images").mkdir(parents=True)
    split = {"train": [["a.jpg", 0, "banded"]], "val": [["b.jpg", 0, "banded"]],
             "test": [["c.jpg", 0, "banded"], ["d.jpg", "one"]]}
    (folder / "split_zhou_DescribableTextures.json").write_text(json.dumps(split))
    with pytest.raises(data.DatasetError, match=r"split_zhou_DescribableTextures.json: item 1 of "
                                                r"'test' is \['d.jpg', 'one'\]"):
        data.coop("dtd", "train", tmp_path)


# --------------------------------------------------------------------------- histories, results
def test_history_is_written_atomically_and_a_damaged_one_does_not_block_reruns(tmp_path,
                                                                               tiny_clip):
    ds = data.few_shot(data.tiny("shapes", "train"), 1, 1)
    cfg = train.TrainConfig(max_steps=2, batch_size=4, n_views=0)
    method = methods.create("coop", tiny_clip).attach(tiny_clip, ds.classnames, ds.templates)
    ckpt = tmp_path / "m.safetensors"
    hist = train.fit(method, ds, cfg, checkpoint=ckpt, progress=False)
    hist_path = ckpt.with_suffix(".history.json")
    assert json.loads(hist_path.read_text())["step"] == hist["step"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    hist_path.write_text(hist_path.read_text()[:10])  # truncated
    again = methods.create("coop", tiny_clip).attach(tiny_clip, ds.classnames, ds.templates)
    with pytest.warns(UserWarning, match=r"m.history.json is damaged.*Delete both files"):
        assert train.fit(again, ds, cfg, checkpoint=ckpt, progress=False) == {}
    assert torch.equal(again.ctx, method.ctx)  # the weights were kept


@pytest.mark.parametrize("value", ["high", None, float("inf"), [1.0], True])
def test_non_numeric_result_value_is_refused_and_nothing_is_lost(tmp_path, value):
    cfg = {"experiment": "e"}
    results.record("exp", cfg, [{"method": "m", "metric": "acc", "value": 1.0}], root=tmp_path)
    with pytest.raises(ValueError, match=r"result value .* of metric 'acc', method 'm' in "
                                         r"experiment 'exp' is not a finite number"):
        results.record("exp", cfg, [{"method": "m", "metric": "acc", "value": value}],
                       root=tmp_path)
    assert results.load("exp", root=tmp_path)["value"].tolist() == [1.0]


def test_numpy_and_torch_scalars_are_numbers(tmp_path):
    results.record("exp", {"a": 1}, [{"method": "m", "metric": "acc", "value": np.float32(2)},
                                     {"method": "m", "metric": "n", "value": torch.tensor(3.0)}],
                   root=tmp_path)
    assert results.load("exp", root=tmp_path)["value"].tolist() == [2.0, 3.0]


def test_a_damaged_result_file_does_not_break_the_others(tmp_path):
    results.record("exp", {"a": 1}, [{"method": "m", "metric": "acc", "value": 1.0}],
                   root=tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x_0123456789ab.csv").write_text(
        "experiment,method,metric,value\nother,m,acc,high\n")
    with pytest.warns(UserWarning, match=r"skipped result file .*x_0123456789ab.csv.*delete it"):
        df = results.load(root=tmp_path)
    assert df["value"].tolist() == [1.0]


def test_result_files_carry_a_readable_name(tmp_path):
    h = results.record("exp", {"experiment": "base_to_new", "method": "coop", "seed": 1},
                       [{"method": "coop", "metric": "acc", "value": 1.0}], root=tmp_path)
    assert [p.name for p in (tmp_path / "exp").iterdir()] == [f"base_to_new-coop_{h}.csv"]
    # a file of the same run under its older (hash only) name is replaced, not duplicated
    (tmp_path / "exp" / f"{h}.csv").write_text((tmp_path / "exp" / f"base_to_new-coop_{h}.csv")
                                               .read_text())
    results.record("exp", {"experiment": "base_to_new", "method": "coop", "seed": 1},
                   [{"method": "coop", "metric": "acc", "value": 2.0}], root=tmp_path)
    assert results.load("exp", root=tmp_path)["value"].tolist() == [2.0]


def test_report_outputs_prints_relative_paths_only(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runtime, "RESULTS_DIR", runtime.ROOT / "build" / "t" / "results")
    runtime._WRITTEN.clear()
    runtime.note_output(runtime.ROOT / "build" / "t" / "results" / "e" / "x_abc.csv")
    runtime.note_output(runtime.ROOT / "figures" / "00_domains.png")
    runtime.report_outputs("e")
    out = capsys.readouterr().out
    assert "build/t/results/e/:" in out and "x_abc.csv" in out and "00_domains.png" in out
    assert str(runtime.ROOT) not in out
    runtime._WRITTEN.clear()
