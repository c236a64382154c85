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
