"""workdir.py: never destroy or mix a user's data, and reuse a render only for the very same job.

Outputs that are inputs, two renders on one work directory, damaged work directories and full disks are refused in
one line, and nothing is left half-written; a finished render is reused only for the very same job (config
included), a work directory never holds the input, growing one gives a fresh render's bytes or is refused, and a
refused command leaves every byte as it was."""
import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from badapple_jax.cli import main
from badapple_jax.model import ModelConfig, pick_head
from badapple_jax.optimize import Settings
from badapple_jax.render import Job
from badapple_jax.video import demo_clip, write_video
from badapple_jax.weights import random_layer
from badapple_jax.identity import differences, identity
from badapple_jax.workdir import LOCK, WorkDir

from conftest import FAST_COMPILE
from test_video import write_wav

FAST = ["--steps", "8", "--seeds", "1", "--size", "16", "--max-frames", "4", "--chunk-size", "2", "-q"]
FEW = ["--steps", "8", "--seeds", "1", "--size", "16", "-q"]  # frames and chunks left to each test


def render(args, capsys, model) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["render", "--model", str(model), *FAST, *args])  # options in `args` override FAST
    return code, capsys.readouterr().err


def assert_refused(code, err, expected):
    assert code == 2, err
    assert expected in err, err
    assert err.count("\n") == 1 and err.startswith("badapple-jax: error: ") and "Traceback" not in err, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict:
    """Every file under `folder` (the lock file too) with its bytes, and every directory."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


# --- an output that is an input ---------------------------------------------------------------------------


@pytest.fixture
def clip(tmp_path):
    wav = write_wav(tmp_path / "song.wav", seconds=1.0)
    path = tmp_path / "clip.mp4"
    write_video(np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), np.uint8), path, fps=15, audio=str(wav))
    return path


def test_the_input_video_is_never_the_output(clip, tiny_ckpt, capsys, monkeypatch):
    before = digest(clip)
    monkeypatch.chdir(clip.parent)
    for spelling in (str(clip), "clip.mp4", "./clip.mp4", str(clip.parent / ".." / clip.parent.name / "clip.mp4")):
        assert_refused(*render([str(clip), "-o", spelling], capsys, tiny_ckpt), "is the input itself")
    os.symlink(clip, clip.parent / "alias.mp4")
    assert_refused(*render([str(clip), "-o", "alias.mp4"], capsys, tiny_ckpt), "is the input itself")
    assert digest(clip) == before and not (clip.parent / "clip.work").exists()


def test_the_audio_source_is_never_the_output(clip, tiny_ckpt, tmp_path, capsys):
    before = digest(clip)
    assert_refused(*render(["demo", "--audio", str(clip), "-o", str(clip)], capsys, tiny_ckpt),
                   "is the audio file itself")
    assert digest(clip) == before


def test_no_output_inside_the_input_directory_or_the_work_directory(tiny_ckpt, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(images / f"{i}.png")
    assert_refused(*render([str(images), "-o", str(images / "out.mp4")], capsys, tiny_ckpt),
                   "inside the input directory")
    work = tmp_path / "w"
    (work / "frames").mkdir(parents=True)  # a work directory from an earlier render
    assert_refused(*render(["demo", "-o", str(work / "frames" / "x.mp4"), "--workdir", str(work)], capsys, tiny_ckpt),
                   "is a file of the work directory")
    assert sorted(p.name for p in images.iterdir()) == ["0.png", "1.png", "2.png"]


# --- one writer per work directory ------------------------------------------------------------------------


def test_a_second_render_on_a_held_work_directory_is_refused_naming_the_holder(tiny_ckpt, tmp_path, capsys):
    work = tmp_path / "held.work"
    with WorkDir(work).one_writer():
        code, err = render(["demo", "-o", str(tmp_path / "held.mp4")], capsys, tiny_ckpt)
    assert_refused(code, err, f"is in use by another render (pid {os.getpid()}")
    assert not (work / "manifest.json").exists()
    (work / LOCK).write_text("pid 999999 on a host that died")  # a stale lock file: its flock went with its process
    assert render(["demo", "-o", str(tmp_path / "held.mp4")], capsys, tiny_ckpt)[0] == 0


@pytest.mark.slow
def test_two_processes_on_one_work_directory_never_mix(tiny_ckpt, tmp_path):
    work = tmp_path / "shared.work"

    def start(steps, name):
        return subprocess.Popen([sys.executable, "-m", "badapple_jax", "render", "demo", "-o", str(tmp_path / name),
                                 "--workdir", str(work), "--model", str(tiny_ckpt), "--steps", steps, "--size", "16",
                                 "--max-frames", "4", "--chunk-size", "2", "-q"], stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "XLA_FLAGS": FAST_COMPILE})  # its steps' speed does not matter

    first = start("200000", "a.mp4")  # far longer than the second takes to start: stopped below
    while not (work / LOCK).is_file() or not (work / LOCK).read_text():
        assert first.poll() is None, first.communicate()[1]
        time.sleep(0.01)
    second = start("8", "b.mp4")
    err = second.communicate(timeout=120)[1]
    assert second.returncode == 2 and err.count("\n") == 1 and "is in use by another render (pid " in err, err
    while not (work / "manifest.json").is_file():  # compiled, its chunks under way
        assert first.poll() is None, first.communicate()[1]
        time.sleep(0.01)
    first.send_signal(signal.SIGINT)
    time.sleep(0.2)
    first.send_signal(signal.SIGINT)  # the second stops it at once, not after its long chunk
    assert first.wait(timeout=300) == 130, first.communicate()[1]
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["options"]["steps"] == 200000 and not (tmp_path / "b.mp4").exists()


# --- a damaged work directory -------------------------------------------------------------------------------


def npz_without(field):
    def damage(work):
        path = work / "chunks" / "chunk_000002.npz"
        with np.load(path) as z:
            kept = {k: z[k] for k in z.files if k != field}
        buffer = io.BytesIO()
        np.savez(buffer, **kept)
        path.write_bytes(buffer.getvalue())
    return damage


def truncate(relative, keep=40):
    def damage(work):
        path = work / relative
        path.write_bytes(path.read_bytes()[:keep])
    return damage


def edit_manifest(**changes):
    def damage(work):
        path = work / "manifest.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return damage


def wrong_size_frame(work):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(work / "frames" / "frame_000001.png")


def white_frame(work):  # of the right size, but no map of ours: not a magma picture at all
    Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(work / "frames" / "frame_000002.png")


def swap(a, b):
    def damage(work):
        pa, pb = work / a, work / b
        data = pa.read_bytes()
        pa.write_bytes(pb.read_bytes())
        pb.write_bytes(data)
    return damage


def nested_manifest(work):
    (work / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)


DAMAGE = {  # name -> (damage(work), expected words); every case is refused in one line suggesting --restart
    "chunk record not a zip": (truncate("chunks/chunk_000000.npz"), "chunk_000000.npz cannot be read"),
    "chunk record without psnr": (npz_without("psnr"), "chunk_000002.npz cannot be read"),
    "chunk record without its job": (npz_without("job"), "chunk_000002.npz cannot be read"),
    "frame truncated": (truncate("frames/frame_000003.png"), "frame_000003.png is not the frame its record"),
    "frame of another size": (wrong_size_frame, "frame_000001.png is not the frame its record chunk_000000.npz"),
    "frame all white": (white_frame, "frame_000002.png is not the frame its record chunk_000002.npz names"),
    "frames swapped": (swap("frames/frame_000000.png", "frames/frame_000001.png"), "frame_000000.png is not the"),
    "chunk records swapped": (swap("chunks/chunk_000000.npz", "chunks/chunk_000002.npz"),
                              "chunk_000000.npz is the record of the chunk at frame 2, not 0"),
    "manifest nested too deep": (nested_manifest, "manifest.json (maximum recursion depth exceeded"),
    "manifest chunk size a string": (edit_manifest(chunk_size="2"), "its chunk_size is \"2\", not a int"),
    "manifest options a list": (edit_manifest(options=[1]), "its options is [1], not a dict"),
    "manifest chunk size edited": (edit_manifest(chunk_size=4), "--chunk-size 4 there, 2 here"),
    "manifest input hash edited": (edit_manifest(input={"label": "x", "sha256": "0" * 64}), "--restart"),
}


@pytest.fixture(scope="module")
def finished_work(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("done") / "r.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), *FAST]) == 0
    return out.with_suffix(".work")


@pytest.mark.parametrize("name", DAMAGE)
def test_a_damaged_work_directory_is_refused_in_one_line_and_restart_recovers(name, finished_work, tiny_ckpt,
                                                                               tmp_path, capsys):
    damage, expected = DAMAGE[name]
    work = tmp_path / "r.work"
    shutil.copytree(finished_work, work)
    damage(work)
    out = tmp_path / "r.mp4"
    before = snapshot(work)
    code, err = render(["demo", "-o", str(out)], capsys, tiny_ckpt)
    assert_refused(code, err, expected)
    assert "--restart" in err and not out.exists()
    assert snapshot(work) == before  # refused before the first byte is written
    if name == "manifest chunk size edited":  # and as that line suggests: records of 2 frames are not chunks of 4
        assert_refused(*render(["demo", "-o", str(out), "--chunk-size", "auto"], capsys, tiny_ckpt),
                       "of another job or of an edited manifest.json")
    if name in ("chunk record not a zip", "frame of another size"):  # --restart recovers (each case costs a render)
        assert render(["demo", "-o", str(out), "--restart"], capsys, tiny_ckpt)[0] == 0
        assert out.exists()


# --- a full disk ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 48 KiB tmpfs (root only; skipped where mounting is not allowed), grown by `grow()`."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def grow(mount):
    subprocess.run(["mount", "-o", "remount,size=16m", str(mount)], check=True)


@pytest.mark.parametrize("extra", [[], ["--save-embeddings"]], ids=["frames", "embeddings"])
def test_a_full_disk_is_one_line_and_the_rerun_after_freeing_space_completes(small_disk, extra, tiny_ckpt, tmp_path,
                                                                          capsys):
    out, work = tmp_path / "r.mp4", small_disk / "r.work"
    args = ["demo", "-o", str(out), "--workdir", str(work), "--max-frames", "24", *extra]
    code, err = render(args, capsys, tiny_ckpt)
    assert_refused(code, err, "No space left on device")
    assert "run the same command again to resume" in err and not out.exists()
    assert not [p for p in work.rglob("*") if p.name.endswith(".tmp")]  # nothing half-written
    grow(small_disk)
    code, err = render(args, capsys, tiny_ckpt)
    assert code == 0, err
    metrics = json.loads((work / "metrics.json").read_text())
    assert len(metrics["per_frame_psnr"]) == 24


# --- the smaller ones -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_backend_that_cannot_start_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "badapple_jax", "render", "demo", "-o", str(tmp_path / "x.mp4"),
                           "--model", "random:gpt2", *FAST], capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cuda"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "JAX cannot start a device backend (JAX_PLATFORMS=cuda)" in done.stderr
    assert not list(tmp_path.iterdir())


def test_audio_that_is_a_directory_is_named_so(tiny_ckpt, tmp_path, capsys):
    assert_refused(*render(["demo", "-o", str(tmp_path / "x.mp4"), "--audio", str(tmp_path)], capsys, tiny_ckpt),
                   "is a directory, not a file with a sound track")


def test_a_late_refusal_leaves_no_empty_directories(tiny_ckpt, tmp_path, capsys):
    work = tmp_path / "a" / "b" / "w"
    assert_refused(*render(["demo", "-o", str(tmp_path / "x.mp4"), "--workdir", str(work), "--layer", "7"], capsys,
                           tiny_ckpt), "layer 7 is out of range")
    assert not (tmp_path / "a").exists()


# --- a writer killed with -9 ---------------------------------------------------------------------------------


def test_a_rerun_removes_the_temporary_video_a_killed_render_left(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "r.mp4"
    assert render(["demo", "-o", str(out)], capsys, tiny_ckpt)[0] == 0
    left = [tmp_path / ".r.a1b2c3d4.mp4", tmp_path / ".r.zz_9yx8w.mp4"]  # as mkstemp names them
    mine = [tmp_path / ".r.notours.mp4", tmp_path / ".r.mp4.bak"]  # a user's files of similar names stay
    for p in left + mine:
        p.write_bytes(b"partial")
    assert render(["demo", "-o", str(out)], capsys, tiny_ckpt)[0] == 0  # recomputes nothing, writes the video
    assert not any(p.exists() for p in left) and all(p.exists() for p in mine)


def test_a_users_metrics_json_in_a_directory_without_a_render_is_never_overwritten(tiny_ckpt, tmp_path, capsys):
    work = tmp_path / "mine"
    work.mkdir()
    (work / "metrics.json").write_text('{"my": "numbers"}')
    for extra in ([], ["--restart"]):
        assert_refused(*render(["demo", "-o", str(tmp_path / "x.mp4"), "--workdir", str(work), *extra], capsys,
                               tiny_ckpt), "holds metrics.json but no render")
    assert (work / "metrics.json").read_text() == '{"my": "numbers"}'


@pytest.mark.slow
def test_a_work_directory_removed_mid_render_is_one_line(tiny_ckpt, tmp_path):
    work = tmp_path / "gone.work"
    process = subprocess.Popen([sys.executable, "-m", "badapple_jax", "render", "demo", "-o", str(tmp_path / "g.mp4"),
                                "--workdir", str(work), "--model", str(tiny_ckpt), "--steps", "2000", "--size", "16",
                                "--max-frames", "8", "--chunk-size", "2", "-q"], stderr=subprocess.PIPE, text=True)
    while not (work / "chunks" / "chunk_000000.npz").exists():
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.01)
    shutil.rmtree(work, ignore_errors=True)  # the render writes on meanwhile, and clears what it made on failing
    err = process.communicate(timeout=300)[1]
    assert process.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "The render stopped" in err and "run the same command again" in err


def test_after_the_interrupted_line_a_late_signal_cannot_change_the_exit_status(monkeypatch, capsys):
    import signal

    import badapple_jax.cli as cli
    from badapple_jax.errors import Interrupted
    from badapple_jax.interrupt import Command

    def stopped(*args, **kwargs):
        raise Interrupted("interrupted: 2 of 4 frames are saved in w; run the same command again", busy=False)

    monkeypatch.setattr(cli, "render", stopped)
    monkeypatch.setattr("badapple_jax.interrupt._command", Command())  # as the `badapple-jax` process is
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert cli.main(["render", "demo", "-o", "x.mp4", "--model", "random:gpt2"]) == 130
        assert all(signal.getsignal(s) == signal.SIG_IGN for s in previous)  # a second SIGTERM: still 130, not 143
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert capsys.readouterr().err.startswith("badapple-jax: interrupted: 2 of 4 frames")


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.2, 0.9, 2.0])  # while JAX loads or starts its backend, and after
def test_ctrl_c_while_the_command_starts_is_one_line_exit_130(delay, tmp_path):
    import signal

    process = subprocess.Popen([sys.executable, "-m", "badapple_jax", "render", "demo", "-o", str(tmp_path / "x.mp4"),
                                "--model", "random:gpt2", *FAST], stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("badapple-jax: interrupted")


def test_an_empty_model_is_refused_and_a_path_object_is_a_model(tiny_ckpt, tmp_path, capsys):
    from badapple_jax.weights import load_layer

    assert_refused(*render(["demo", "-o", str(tmp_path / "x.mp4"), "--model", ""], capsys, tiny_ckpt),
                   "model is empty")
    assert load_layer(Path(tiny_ckpt))[1].config.n_embd == 64


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("badapple-jax 0.")


# --- identity, growing, siblings --------------------------------------------------------------------------------------


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


def render_auto(capsys, *args) -> tuple[int, str]:
    """A render with the chunk size and frame count left to `args` (auto unless given)."""
    capsys.readouterr()
    code = main(["render", *FEW, *args])
    return code, capsys.readouterr().err


def test_a_render_is_not_reused_for_a_model_of_another_config(tiny_ckpt, tmp_path, capsys):
    """The same tensors with another LayerNorm epsilon: neither a sibling's finished render nor --workdir is
    taken for it."""
    other = tmp_path / "eps"
    shutil.copytree(tiny_ckpt, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "layer_norm_epsilon": 1e-3}))
    common = ["demo", "--max-frames", "2"]
    assert render_auto(capsys, *common, "--model", str(tiny_ckpt), "-o", str(tmp_path / "a.mp4"))[0] == 0
    code, err = render_auto(capsys, *common, "--model", str(other), "-o", str(tmp_path / "b.mp4"), "--workdir",
                       str(tmp_path / "a.work"))
    assert_refused(code, err, "the model's eps (1e-05 there, 0.001 here)")
    capsys.readouterr()
    assert main(["render", *FEW[:-1], *common, "--model", str(other), "-o", str(tmp_path / "b.mp4")]) == 0
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
        code, err = render_auto(capsys, str(source), "--model", str(tiny_ckpt), "-o", str(tmp_path / "x.mp4"),
                           "--workdir", str(work))
        assert_refused(code, err, f"Work directory {work} {expected}")
    assert snapshot(tmp_path) == before


def test_growing_gives_a_fresh_renders_bytes_or_is_refused_changing_nothing(tiny_ckpt, tmp_path, capsys):
    """Chunks of 2 frames grow to 4 frames only in chunks of 2: a fresh render of 4 frames takes chunks of 4 (with
    --seed-select chunk another start may win), so asking for that is refused, before any byte is written."""
    common = ["demo", "--model", str(tiny_ckpt), "--seed-select", "chunk", "-o", str(tmp_path / "g.mp4")]
    assert render_auto(capsys, *common, "--max-frames", "2", "--chunk-size", "16")[0] == 0
    work = tmp_path / "g.work"
    before = snapshot(work)
    for chunk in (["--chunk-size", "16"], []):  # 16 (fitted to 4 frames: 4), auto: 4
        code, err = render_auto(capsys, *common, "--max-frames", "4", *chunk)
        assert_refused(code, err, "holds 2 frames computed in chunks of 2, but a fresh render of 4 frames takes "
                                  "chunks of 4")
        assert "--chunk-size 2 to extend it" in err
        assert snapshot(work) == before
    assert render_auto(capsys, *common, "--max-frames", "4", "--chunk-size", "2")[0] == 0
    fresh = tmp_path / "apart" / "f.mp4"
    fresh.parent.mkdir()
    assert render_auto(capsys, *common[:-1], str(fresh), "--max-frames", "4", "--chunk-size", "2")[0] == 0
    for name in ("frames/frame_000000.png", "frames/frame_000003.png", "chunks/chunk_000002.npz"):
        assert (work / name).read_bytes() == (fresh.with_suffix(".work") / name).read_bytes(), name
    metrics = [json.loads((w / "metrics.json").read_text()) for w in (work, fresh.with_suffix(".work"))]
    assert metrics[0]["per_frame_loss"] == metrics[1]["per_frame_loss"]
    assert metrics[0]["per_frame_start"] == metrics[1]["per_frame_start"]


def test_a_sibling_neither_blocks_a_new_output_nor_removes_the_users_directory(tiny_ckpt, tmp_path, capsys):
    common = ["demo", "--model", str(tiny_ckpt), "--max-frames", "3"]
    assert render_auto(capsys, *common, "--chunk-size", "2", "-o", str(tmp_path / "a.mp4"))[0] == 0
    (tmp_path / "b.work").mkdir()  # the user's own, empty
    code = main(["render", *FEW[:-1], *common, "--chunk-size", "2", "-o", str(tmp_path / "b.mp4")])
    assert code == 0 and "a.work holds this render, finished" in capsys.readouterr().err
    assert (tmp_path / "b.work").is_dir() and not list((tmp_path / "b.work").iterdir())
    code, err = render_auto(capsys, *common, "--chunk-size", "3", "-o", str(tmp_path / "c.mp4"))  # a.work's: 2
    assert code == 0, err
    assert json.loads((tmp_path / "c.work" / "manifest.json").read_text())["chunk_size"] == 3
