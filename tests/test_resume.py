"""Resuming, interrupts and the non-finite guard: an interrupted render loses no finished chunk; a different job on
the same work directory is refused. A render killed outright (SIGKILL of the lock's holder) and rerun gives bytes
identical to an uninterrupted one: tests/test_processes.py, where the killed process is the first of two."""
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

from badapple_jax.cli import main
from badapple_jax.identity import FORMAT, differences
from badapple_jax.workdir import LOCK

# Six chunks of two frames, each about half a second on the tiny model: a signal sent when the first
# chunk's record appears lands well before the last.
SLOW = ["--steps", "8000", "--size", "32", "--max-frames", "12", "--chunk-size", "2", "--save-embeddings"]


def command(tiny_ckpt, out, *extra):
    return [sys.executable, "-m", "badapple_jax", "render", "demo", "-o", str(out), "--model", str(tiny_ckpt),
            *SLOW, *extra]


def start_and_wait_for_first_chunk(cmd, work: Path) -> subprocess.Popen:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (work / "chunks" / "chunk_000000.npz").exists():
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.01)
    return process


def leftovers(work: Path) -> list[str]:
    return [p.name for p in work.rglob(".*") if p.name != LOCK]  # the lock file stays: only its flock is held


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_stops_after_the_chunk_in_hand_and_says_how_to_resume(signum, tiny_ckpt, tmp_path):
    out = tmp_path / "s.mp4"
    work = out.with_suffix(".work")
    process = start_and_wait_for_first_chunk(command(tiny_ckpt, out, "-q"), work)
    process.send_signal(signum)
    err = process.communicate()[1]
    assert process.returncode == 130, err
    lines = err.splitlines()
    assert lines[0].startswith(f"{signal.Signals(signum).name} received: stopping after the chunk in hand")
    assert lines[-1].startswith("badapple-jax: interrupted: ") and "run the same command again to resume" in lines[-1]
    saved = int(lines[-1].split("interrupted: ")[1].split()[0])
    assert saved == 2 * len(list((work / "chunks").iterdir())) and 2 <= saved < 12
    assert "Traceback" not in err and not out.exists() and leftovers(work) == []
    assert len(list((work / "frames").iterdir())) == saved  # nothing of an unrecorded chunk


@pytest.mark.slow
def test_a_second_signal_stops_at_once_without_partial_files(tiny_ckpt, tmp_path):
    out = tmp_path / "s.mp4"
    work = out.with_suffix(".work")
    process = start_and_wait_for_first_chunk(command(tiny_ckpt, out, "-q", "--steps", "30000"), work)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    err = process.communicate()[1]
    assert process.returncode == 130, err
    assert "Traceback" not in err and "run the same command again to resume" in err.splitlines()[-1]
    assert not out.exists() and leftovers(work) == [] and not (work / "metrics.json").exists()
    assert len(list((work / "chunks").iterdir())) == 1  # the chunk computing when asked was abandoned


FAST = ["--steps", "8", "--seeds", "2", "--size", "16", "--max-frames", "4", "--chunk-size", "2", "-q"]


def render_fast(tiny_ckpt, out, *extra):
    return main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), *FAST, *extra])


@pytest.fixture(scope="module")
def finished(tiny_ckpt, tmp_path_factory):
    """A finished FAST render's output and work directory, copied by each test that changes it."""
    out = tmp_path_factory.mktemp("finished") / "r.mp4"
    assert render_fast(tiny_ckpt, out) == 0
    return out


@pytest.mark.parametrize("change, named", [
    (["--steps", "9"], "--steps 8 there, 9 here"),
    (["--lr", "0.05", "--seed", "3"], "--lr 0.5 there, 0.05 here; --seed 0 there, 3 here"),
    (["--max-frames", "3"], "--max-frames 4 there, 3 here"),
    (["--head", "1"], "--head 0 there, 1 here"),
    (["--mode", "full"], "--mode causal there, full here"),
    (["--b2", "0.99"], "--b2 0.85 there, 0.99 here"),
    (["--chunk-size", "4"], "--chunk-size 2 there, 4 here"),
    (["--model", "random:gpt2"], "the model (local"),
])
def test_a_different_job_on_a_work_directory_is_refused_unless_restarted(change, named, finished, tiny_ckpt, tmp_path,
                                                                         capsys):
    out = tmp_path / "r.mp4"
    shutil.copy(finished, out)
    shutil.copytree(finished.with_suffix(".work"), out.with_suffix(".work"))
    before = {p: p.read_bytes() for p in out.with_suffix(".work").rglob("*") if p.is_file() and p.name != LOCK}
    capsys.readouterr()
    args = ["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), *FAST]
    assert main([*args, *change]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "--restart" in err, err
    assert {p: p.read_bytes() for p in before} == before  # untouched


@pytest.mark.parametrize("change", [["--steps", "9"], ["--max-frames", "3"]])
def test_restart_replaces_the_work_directory_of_another_job(change, finished, tiny_ckpt, tmp_path):
    out = tmp_path / "r.mp4"
    shutil.copytree(finished.with_suffix(".work"), out.with_suffix(".work"))
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), *FAST, *change, "--restart"]) == 0
    metrics = json.loads((out.with_suffix(".work") / "metrics.json").read_text())
    assert len(metrics["per_frame_loss"]) == (3 if change[0] == "--max-frames" else 4)
    job = metrics["settings"]
    assert (job["max_frames"], job["settings"]["steps"]) == ((3, 8) if change[0] == "--max-frames" else (4, 9))


def test_a_different_input_with_the_same_options_is_refused(tiny_ckpt, tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "r.mp4"
    assert main(["render", str(images), "-o", str(out), "--model", str(tiny_ckpt), *FAST]) == 0
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(images / "3.png")  # same name, new content
    capsys.readouterr()
    assert main(["render", str(images), "-o", str(out), "--model", str(tiny_ckpt), *FAST]) == 2
    err = capsys.readouterr().err
    assert "the input (4 images in" in err and "not the same decoded frames" in err, err


def test_resuming_a_finished_render_recomputes_nothing_and_may_change_the_assembly(tiny_ckpt, tmp_path, capsys,
                                                                                 monkeypatch):
    out = tmp_path / "r.mp4"
    assert render_fast(tiny_ckpt, out) == 0
    for module in (sys.modules["badapple_jax.chunks"], sys.modules["badapple_jax.render"]):  # a finished render needs no program at all
        monkeypatch.setattr(module, "compile_chunk", lambda *a, **k: pytest.fail("compiled for a finished render"))
    frames = {p.name: p.read_bytes() for p in (out.with_suffix(".work") / "frames").iterdir()}
    manifest = out.with_suffix(".work") / "manifest.json"
    started = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**started, "device": {"platform": "gpu", "kind": "H100", "count": 1}}))
    capsys.readouterr()
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), *FAST[:-1], "--chunk-size", "auto",
                 "--side-by-side"]) == 0
    err = capsys.readouterr().err
    assert "resuming: 4 of 4 frames" in err and "compiling" not in err
    assert "was started on {'platform': 'gpu', 'kind': 'H100', 'count': 1}" in err  # a note, not a refusal
    assert {p.name: p.read_bytes() for p in (out.with_suffix(".work") / "frames").iterdir()} == frames
    metrics = json.loads((out.with_suffix(".work") / "metrics.json").read_text())
    assert metrics["resumed_frames"] == 4 and metrics["seconds_per_frame"] is None


def test_a_work_directory_without_manifest_is_refused(tiny_ckpt, tmp_path, capsys):
    work = tmp_path / "r.work"
    (work / "frames").mkdir(parents=True)
    (work / "frames" / "frame_000000.png").write_bytes(b"an older render")
    (work / "notes.txt").write_text("the user's own")
    assert render_fast(tiny_ckpt, tmp_path / "r.mp4") == 2
    err = capsys.readouterr().err
    assert "without a manifest.json" in err and err.count("\n") == 1
    assert render_fast(tiny_ckpt, tmp_path / "r.mp4", "--restart") == 0
    assert (work / "notes.txt").read_text() == "the user's own"  # --restart deletes only what a render writes


def test_a_chunk_that_cannot_fit_the_memory_is_refused_and_leaves_nothing(tiny_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("badapple_jax.chunks.free_bytes_per_device", lambda mesh: 1000)
    before = set(os.listdir(tmp_path))
    assert render_fast(tiny_ckpt, tmp_path / "r.mp4") == 2
    err = capsys.readouterr().err
    assert "GiB per device but 0.0 GiB are free: lower --chunk-size" in err and err.count("\n") == 1
    assert set(os.listdir(tmp_path)) == before


def test_differences_name_options_before_hashes():
    manifest = {"format": FORMAT, "options": {"steps": 8, "max_frames": None},
                "input": {"label": "a", "sha256": "1"}, "model": {"source": "m", "config": {"eps": 1e-5}, "sha256": "2"}}
    assert differences(manifest, manifest) == []
    assert differences(manifest, {**manifest, "options": {"steps": 8, "max_frames": 5}}) == [
        "`max_frames` unset there, 5 here"]  # as OptionError marks options: the command line shows --max-frames
    other = {**manifest, "input": {"label": "b", "sha256": "3"}}
    assert differences(manifest, other) == ["the input (a there, b here: not the same decoded frames)"]
    assert differences({**manifest, "format": 0}, manifest) == [f"the layout (format 0 there, {FORMAT} here)"]


@pytest.mark.parametrize("text", ['{"format": 1', "[1, 2]", '{"format": 1, "options": {}}'])
def test_a_corrupt_manifest_is_refused_and_restart_recovers(text, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "r.mp4"
    assert render_fast(tiny_ckpt, out) == 0
    (out.with_suffix(".work") / "manifest.json").write_text(text)
    capsys.readouterr()
    assert render_fast(tiny_ckpt, out) == 2
    err = capsys.readouterr().err
    assert "Cannot read" in err and "--restart" in err and err.count("\n") == 1, err
    assert render_fast(tiny_ckpt, out, "--restart") == 0


@pytest.mark.parametrize("embeddings", [False, True])
def test_more_frames_extend_a_work_directory(tiny_ckpt, tmp_path, embeddings, capsys):
    """--max-frames raised (or dropped) keeps the complete chunks, recomputes the padded last one, and ends with
    the bytes a fresh render of all the frames writes."""
    extra = ["--save-embeddings"] if embeddings else []
    common = ["demo", "--model", str(tiny_ckpt), "--size", "8", "--steps", "24", "--seeds", "1", "--chunk-size", "2",
              "-q", *extra]
    (tmp_path / "apart").mkdir()  # not beside grown.work, which it would otherwise assemble from
    grown, fresh = tmp_path / "grown.mp4", tmp_path / "apart" / "fresh.mp4"
    assert main(["render", *common, "-o", str(grown), "--max-frames", "5"]) == 0  # chunks 0, 2 and a partial 4
    first = [p.read_bytes() for p in sorted((tmp_path / "grown.work" / "frames").glob("*.png"))[:4]]
    assert main(["render", *common, "-o", str(grown), "--max-frames", "9"]) == 0
    metrics = json.loads((tmp_path / "grown.work" / "metrics.json").read_text())
    assert metrics["frames"] == 9 and metrics["resumed_frames"] == 4  # chunk 4 computed again, with frame 5 in it
    assert [p.read_bytes() for p in sorted((tmp_path / "grown.work" / "frames").glob("*.png"))[:4]] == first
    assert main(["render", *common, "-o", str(fresh), "--max-frames", "9"]) == 0
    names = ["frames/" + p.name for p in sorted((tmp_path / "apart" / "fresh.work" / "frames").glob("*.png"))]
    assert len(names) == 9
    for name in names:
        assert (tmp_path / "grown.work" / name).read_bytes() == (tmp_path / "apart" / "fresh.work" / name).read_bytes()
    if embeddings:
        np.testing.assert_array_equal(np.load(tmp_path / "grown.work" / "embeddings.npy"),
                                      np.load(tmp_path / "apart" / "fresh.work" / "embeddings.npy"))
    capsys.readouterr()
    assert main(["render", *common, "-o", str(grown), "--max-frames", "9", "--steps", "32"]) == 2  # more AND other
    assert "--steps 24 there, 32 here" in capsys.readouterr().err


def test_only_more_frames_of_the_same_input_and_weights_grow_a_work_directory():
    from badapple_jax.identity import FORMAT, grows

    def manifest(frames, sha, steps=8, model="m", max_frames=None):
        return {"format": FORMAT, "options": {"steps": steps, "max_frames": max_frames},
                "input": {"frames": frames, "sha256": sha}, "model": {"config": {"eps": 1e-5}, "sha256": model}}

    old = manifest(5, "first5", max_frames=5)
    prefix = {5: "first5"}.get
    assert grows(old, manifest(9, "all9", max_frames=9), prefix)
    assert grows(old, manifest(9, "all9"), prefix)  # --max-frames dropped: all the frames
    assert not grows(old, manifest(9, "all9", max_frames=9), {5: "other"}.get)  # another input
    assert not grows(old, manifest(4, "first4", max_frames=4), prefix)  # fewer frames
    assert not grows(old, manifest(9, "all9", steps=9, max_frames=9), prefix)  # another option too
    assert not grows(old, manifest(9, "all9", model="n", max_frames=9), prefix)  # other weights


def test_a_new_output_of_a_finished_render_is_assembled_from_it(tiny_ckpt, tmp_path, capsys):
    """Issue 15, item 7: without --workdir, a new -o of a finished job finds its work directory beside it and only
    assembles the video; another job, or an unfinished twin, computes in its own OUT.work as before."""
    common = ["demo", "--model", str(tiny_ckpt), "--size", "8", "--steps", "24", "--seeds", "1", "--max-frames", "3",
              "--chunk-size", "2"]
    assert main(["render", *common, "-o", str(tmp_path / "a.mp4"), "-q"]) == 0
    frames = [p.read_bytes() for p in sorted((tmp_path / "a.work" / "frames").glob("*.png"))]
    capsys.readouterr()
    assert main(["render", *common, "-o", str(tmp_path / "b.mp4"), "--side-by-side"]) == 0
    assert "a.work holds this render, finished: " in capsys.readouterr().err
    assert (tmp_path / "b.mp4").stat().st_size > 0 and not (tmp_path / "b.work").exists()
    metrics = json.loads((tmp_path / "a.work" / "metrics.json").read_text())
    assert metrics["resumed_frames"] == 3 and metrics["compile_seconds"] == 0
    assert [p.read_bytes() for p in sorted((tmp_path / "a.work" / "frames").glob("*.png"))] == frames
    assert main(["render", *common, "-o", str(tmp_path / "c.mp4"), "--steps", "16", "-q"]) == 0  # another job
    assert (tmp_path / "c.work" / "metrics.json").is_file()
    (tmp_path / "a.work" / "chunks" / "chunk_000002.npz").unlink()  # a is unfinished now: not a twin
    assert main(["render", *common, "-o", str(tmp_path / "d.mp4"), "-q"]) == 0
    assert (tmp_path / "d.work" / "metrics.json").is_file()
