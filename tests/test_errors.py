"""errors.py: one message, two terms: the API names its parameters (steps, lr_min), the command line its flags
(--steps, --lr-min)."""
import pytest

import badapple_jax as bj
from badapple_jax.cli import main
from badapple_jax.errors import OptionError

CASES = {  # a call into the API -> what its message says there, and as the command line shows it
    "steps": (lambda: bj.Settings(steps=2).check(), "steps must be at least 4", "--steps must be at least 4"),
    "lr_min": (lambda: bj.Settings(lr=0.01, lr_min=0.1).check(), "lr 0.01 is below lr_min 0.1",
               "--lr 0.01 is below --lr-min 0.1"),
    "warm_start": (lambda: bj.Settings(warm_start=True).check(), "warm_start needs solver headspace",
                   "--warm-start needs --solver headspace"),
    "size": (lambda: bj.read_clip("demo", size=0), "size must be at least 1", "--size must be at least 1"),
    "max_frames": (lambda: bj.read_clip("demo", size=8, max_frames=0), "max_frames must be at least 1",
                   "--max-frames must be at least 1"),
    "layer 1": (lambda: bj.head_space(bj.pick_head(bj.load_layer("random:minilm", 1)[0], 0)),
                "solver headspace and qk work at layer 0 only", "--solver headspace and qk work at layer 0 only"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_api_names_parameters_and_the_command_line_names_flags(case):
    call, api, cli = CASES[case]
    with pytest.raises(OptionError) as e:
        call()
    assert api in str(e.value) and "--" not in str(e.value) and "`" not in str(e.value)
    assert cli in e.value.flags()


def test_command_line_shows_flags(tmp_path, capsys):
    assert main(["render", "demo", "-o", str(tmp_path / "o.mp4"), "--steps", "2"]) == 2
    assert "error: --steps must be at least 4 (explore is steps // 4), got 2." in capsys.readouterr().err


def test_adam_flags_are_named_as_flags(tmp_path, capsys):
    assert main(["render", "demo", "-o", str(tmp_path / "o.mp4"), "--b2", "1"]) == 2
    assert capsys.readouterr().err.strip() == "badapple-jax: error: --b2 must be in [0, 1), got 1.0."
