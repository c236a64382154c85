"""tools/zoo_trial.py refuses bad knobs before it creates or trains anything."""
import pathlib
import subprocess
import sys

import pytest

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "zoo_trial.py"


@pytest.mark.parametrize("knob, message", [
    ("TEXTURES=plain,spotted", "no pattern named spotted"),
    ("TEXTURES=striped,plain", "put 'plain' first"),
    ("NO_SUCH_KNOB=1", "cliptune.world has no knob 'NO_SUCH_KNOB'"),
])
def test_a_bad_knob_is_one_clear_error_and_creates_nothing(tmp_path, knob, message):
    out = tmp_path / "trial"
    run = subprocess.run([sys.executable, str(TOOL), str(out), "--set", knob],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert f"--set {knob}" in run.stderr and message in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()


PER_CLASS = TOOL.parent / "trial_per_class.py"


@pytest.mark.parametrize("argv, message", [
    (["only-a-folder"], "in pairs"),
    (["some/folder", "no such trial label"], "no trial 'no such trial label'"),
])
def test_trial_per_class_refuses_bad_arguments_before_measuring(tmp_path, argv, message):
    before = (TOOL.parents[1] / "data" / "zoo" / "trials.json").read_bytes()
    run = subprocess.run([sys.executable, str(PER_CLASS), *argv], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
    assert (TOOL.parents[1] / "data" / "zoo" / "trials.json").read_bytes() == before


def test_trial_per_class_needs_a_trained_trial_folder(tmp_path):
    run = subprocess.run([sys.executable, str(PER_CLASS), str(tmp_path), "N14 texture names in "
                          "20 per cent of captions"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "has no manifest.json" in run.stderr


def test_trial_per_class_refuses_a_model_its_folder_does_not_record(tmp_path):
    (tmp_path / "manifest.json").write_text('{"tiny-v1": {"captions": {}}}')
    before = (TOOL.parents[1] / "data" / "zoo" / "trials.json").read_bytes()
    run = subprocess.run([sys.executable, str(PER_CLASS), "--model", "tiny-v2-retrained",
                          "--create", "a note", str(tmp_path), "Z0 a new label"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "records no model 'tiny-v2-retrained'" in run.stderr
    assert (TOOL.parents[1] / "data" / "zoo" / "trials.json").read_bytes() == before
