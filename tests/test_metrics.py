"""metrics.py: metrics.json has one documented schema, written by render and read back by the same module."""
import json
import re

import numpy as np
import pytest

import badapple_jax as bj
import badapple_jax.metrics as metrics
from badapple_jax.cli import main
from badapple_jax.workdir import WorkDir


def test_every_key_a_render_writes_is_documented_and_read_back(tiny_ckpt, tmp_path):
    out = tmp_path / "r.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--preset", "fast", "--size", "8",
                 "--steps", "8", "--max-frames", "3", "--color", "--heads", "0,1,2", "--solver", "embedding",
                 "-q"]) == 0
    work = WorkDir.beside(out)
    written = json.loads(work.metrics.read_text())
    documented = set(re.findall(r"[a-z][a-z0-9_]+", metrics.__doc__))
    assert set(written) <= documented, set(written) - documented
    run = work.finished_run()
    assert run.colour and np.array_equal(run.loss, written["per_frame_loss"]) and run.fps == written["fps"]
    assert run.frame(2).shape == (8, 8, 3) and run.targets.shape == (3, 8, 8)


def test_the_loss_quoted_is_the_one_recomputed_from_the_saved_embeddings(tiny_ckpt, tmp_path):
    """per_frame_loss (and the closing line's mean) is the loss of embeddings.npy against the targets."""
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
