"""The API as researchers use it (issue 15): errors in the caller's terms (the API names its parameters, the
command line its flags, from one message), a preset that never blames the user for an option it chose, and
the loss quoted being the one anyone recomputes from the saved embeddings."""
import inspect
import json

import numpy as np
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
                "solver headspace works at layer 0 only", "--solver headspace works at layer 0 only"),
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


def test_preset_fast_above_layer_0_uses_the_embedding_solver(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "p.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--preset", "fast", "--layer", "1",
                 "--steps", "40", "--size", "8", "--max-frames", "2"]) == 0
    assert "note: --preset fast uses --solver embedding --lr 0.1 at --layer 1" in capsys.readouterr().err
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--preset", "fast", "--layer", "1",
                 "--solver", "headspace", "--size", "8", "--max-frames", "2"]) == 2  # asked for: refused
    assert "--solver headspace works at layer 0 only" in capsys.readouterr().err


def test_api_frames_errors_are_in_api_terms(tiny_ckpt):
    w = bj.pick_head(bj.load_layer(tiny_ckpt)[0], 0)
    with pytest.raises(bj.BadInputError, match=r"frames must be .* square T x T frames, got shape \(2, 8, 6\)"):
        next(bj.optimize_frames(bj.plan(w, 8, 2, bj.Settings(steps=8, seeds=1)), np.zeros((2, 8, 6), np.float32)))


def test_the_loss_quoted_is_the_one_recomputed_from_the_saved_embeddings(tiny_ckpt, tmp_path):
    """Item 3: per_frame_loss (and the closing line's mean) is the loss of embeddings.npy against the targets."""
    out = tmp_path / "l.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--size", "12", "--max-frames", "3",
                 "--steps", "40", "--seeds", "2", "--save-embeddings", "-q"]) == 0
    work = tmp_path / "l.work"
    metrics = json.loads((work / "metrics.json").read_text())
    x = np.load(work / "embeddings.npy")
    frames = bj.read_clip("demo", size=12, max_frames=3).frames  # the exact targets
    with np.load(work / "targets.npz") as t:  # the same, rounded to uint8
        np.testing.assert_allclose(t["frames"] / 255.0, frames, atol=1 / 510 + 1e-7)
    w = bj.pick_head(bj.load_layer(tiny_ckpt)[0], 0)
    enc = bj.Settings().encoding(w.config.causal)
    recomputed = [float(bj.frame_loss(bj.head_logits(xi, w), enc.desired(f), enc.mask(12))) for xi, f in zip(x, frames)]
    np.testing.assert_allclose(metrics["per_frame_loss"], recomputed, rtol=1e-4, atol=1e-7)
    assert metrics["mean_loss"] == pytest.approx(np.mean(recomputed), rel=1e-4)
    assert len(metrics["per_frame_last_step_loss"]) == 3 and set(metrics["per_frame_start"]) <= {0, 1}


def test_chunk_result_and_loss_document_themselves():
    assert "the loss of the saved embedding" in bj.ChunkResult.__doc__
    assert "LOGITS" in bj.frame_loss.__doc__ and "logits" in inspect.signature(bj.frame_loss).parameters
