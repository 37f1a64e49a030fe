"""metrics.py: metrics.json has one documented schema, written by render and read back by the same module."""
import json
import re

import numpy as np

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
