"""workdir.py: a finished render is reused only for the very same job (config included), a work directory
never holds the input, growing one gives a fresh render's bytes or is refused, and a refused command leaves
every byte as it was."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from badapple_jax.cli import main
from badapple_jax.model import ModelConfig, pick_head
from badapple_jax.optimize import Settings
from badapple_jax.render import Job
from badapple_jax.video import demo_clip
from badapple_jax.weights import random_layer
from badapple_jax.workdir import differences, identity

from test_workdir_safety import assert_refused, snapshot

FAST = ["--steps", "8", "--seeds", "1", "--size", "16", "-q"]


def changed(value):
    """Another value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    return f"{value}-other"


@pytest.fixture(scope="module")
def job_parts():
    config = ModelConfig(n_layer=1, n_head=2, n_embd=8, n_positions=32, eps=1e-5)
    w = pick_head(random_layer(config), 0)
    clip = demo_clip(size=8, seconds=0.2)
    return Job(input="demo", output="x.mp4"), clip, w


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ModelConfig)])
def test_every_config_value_of_the_model_is_part_of_the_identity(field, job_parts):
    job, clip, w = job_parts
    base = identity(job, clip, clip.frames, w, "m")
    other = w.replace(config=dataclasses.replace(w.config, **{field: changed(getattr(w.config, field))}))
    found = differences(base, identity(job, clip, clip.frames, other, "m"))
    assert found and found[0].startswith(f"the model's {field} ("), found


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Settings)])
def test_every_setting_is_part_of_the_identity(field, job_parts):
    job, clip, w = job_parts
    base = identity(job, clip, clip.frames, w, "m")
    settings = dataclasses.replace(job.settings, **{field: changed(getattr(job.settings, field))})
    found = differences(base, identity(dataclasses.replace(job, settings=settings), clip, clip.frames, w, "m"))
    assert found == [f"`{field}` {getattr(job.settings, field)} there, {getattr(settings, field)} here"]


def render(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["render", *FAST, *args])
    return code, capsys.readouterr().err


def test_a_render_is_not_reused_for_a_model_of_another_config(tiny_ckpt, tmp_path, capsys):
    """The same tensors with another LayerNorm epsilon: neither a sibling's finished render nor --workdir is
    taken for it."""
    other = tmp_path / "eps"
    shutil.copytree(tiny_ckpt, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "layer_norm_epsilon": 1e-3}))
    common = ["demo", "--max-frames", "2"]
    assert render(capsys, *common, "--model", str(tiny_ckpt), "-o", str(tmp_path / "a.mp4"))[0] == 0
    code, err = render(capsys, *common, "--model", str(other), "-o", str(tmp_path / "b.mp4"), "--workdir",
                       str(tmp_path / "a.work"))
    assert_refused(code, err, "the model's eps (1e-05 there, 0.001 here)")
    capsys.readouterr()
    assert main(["render", *FAST[:-1], *common, "--model", str(other), "-o", str(tmp_path / "b.mp4")]) == 0
    assert "holds this render" not in capsys.readouterr().err  # a.work is a sibling of another model
    eps = [json.loads((tmp_path / f"{n}.work" / "metrics.json").read_text())["model"]["config"]["eps"] for n in "ab"]
    assert eps == [1e-5, 1e-3]


def test_a_work_directory_apart_from_the_input_only(tiny_ckpt, tmp_path, capsys):
    project = tmp_path / "proj"
    (project / "frames").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((16, 16), 60 * i, np.uint8)).save(project / "frames" / f"frame_{i:06d}.png")
    before = snapshot(tmp_path)
    for source, work, expected in ((project / "frames", project, "holds the input"),
                                   (project / "frames", project / "frames", "holds the input"),
                                   (project, project / "out", "is inside the input")):
        code, err = render(capsys, str(source), "--model", str(tiny_ckpt), "-o", str(tmp_path / "x.mp4"),
                           "--workdir", str(work))
        assert_refused(code, err, f"Work directory {work} {expected}")
    assert snapshot(tmp_path) == before


def test_growing_gives_a_fresh_renders_bytes_or_is_refused_changing_nothing(tiny_ckpt, tmp_path, capsys):
    """Chunks of 2 frames grow to 4 frames only in chunks of 2: a fresh render of 4 frames takes chunks of 4 (with
    --seed-select chunk another start may win), so asking for that is refused, before any byte is written."""
    common = ["demo", "--model", str(tiny_ckpt), "--seed-select", "chunk", "-o", str(tmp_path / "g.mp4")]
    assert render(capsys, *common, "--max-frames", "2", "--chunk-size", "16")[0] == 0
    work = tmp_path / "g.work"
    before = snapshot(work)
    for chunk in (["--chunk-size", "16"], []):  # 16 (fitted to 4 frames: 4), auto: 4
        code, err = render(capsys, *common, "--max-frames", "4", *chunk)
        assert_refused(code, err, "holds 2 frames computed in chunks of 2, but a fresh render of 4 frames takes "
                                  "chunks of 4")
        assert "--chunk-size 2 to extend it" in err
        assert snapshot(work) == before
    assert render(capsys, *common, "--max-frames", "4", "--chunk-size", "2")[0] == 0
    fresh = tmp_path / "apart" / "f.mp4"
    fresh.parent.mkdir()
    assert render(capsys, *common[:-1], str(fresh), "--max-frames", "4", "--chunk-size", "2")[0] == 0
    for name in ("frames/frame_000000.png", "frames/frame_000003.png", "chunks/chunk_000002.npz"):
        assert (work / name).read_bytes() == (fresh.with_suffix(".work") / name).read_bytes(), name
    metrics = [json.loads((w / "metrics.json").read_text()) for w in (work, fresh.with_suffix(".work"))]
    assert metrics[0]["per_frame_loss"] == metrics[1]["per_frame_loss"]
    assert metrics[0]["per_frame_start"] == metrics[1]["per_frame_start"]


def test_a_sibling_neither_blocks_a_new_output_nor_removes_the_users_directory(tiny_ckpt, tmp_path, capsys):
    common = ["demo", "--model", str(tiny_ckpt), "--max-frames", "3"]
    assert render(capsys, *common, "--chunk-size", "2", "-o", str(tmp_path / "a.mp4"))[0] == 0
    (tmp_path / "b.work").mkdir()  # the user's own, empty
    code = main(["render", *FAST[:-1], *common, "--chunk-size", "2", "-o", str(tmp_path / "b.mp4")])
    assert code == 0 and "a.work holds this render, finished" in capsys.readouterr().err
    assert (tmp_path / "b.work").is_dir() and not list((tmp_path / "b.work").iterdir())
    code, err = render(capsys, *common, "--chunk-size", "3", "-o", str(tmp_path / "c.mp4"))  # a.work's chunks are 2
    assert code == 0, err
    assert json.loads((tmp_path / "c.work" / "manifest.json").read_text())["chunk_size"] == 3
