"""The command line: `badapple-jax render` end to end on a tiny checkpoint, presets, side by side with audio, and the
table of bad inputs (one line, exit status 2, nothing written). What a render shows is in test_render.py."""
import json
import os
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from badapple_jax.cli import main

from test_weights import hub, rewrite  # noqa: F401  (the loopback hub fixture)

FAST = ["--steps", "8", "--seeds", "1", "--size", "16", "--max-frames", "3"]  # as test_bad_inputs: one program


@pytest.mark.slow
def test_render_demo_end_to_end(tiny_ckpt, tmp_path):
    out = tmp_path / "demo.mp4"
    cmd = [sys.executable, "-m", "badapple_jax", "render", "demo", "-o", str(out), "--model", str(tiny_ckpt),
           "--steps", "40", "--max-frames", "8", "--size", "32", "--chunk-size", "3", "--save-embeddings"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert "done: 8 frames" in done.stderr
    n_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n_frames == 8
    work = tmp_path / "demo.work"
    pngs = sorted((work / "frames").glob("*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:06d}.png" for i in range(8)]
    assert np.asarray(Image.open(pngs[0])).shape == (32, 32, 3)
    metrics = json.loads((work / "metrics.json").read_text())
    assert len(metrics["per_frame_loss"]) == 8 and len(metrics["per_frame_start"]) == 8
    assert all(np.isfinite(metrics["per_frame_loss"]))
    assert metrics["settings"]["settings"]["steps"] == 40 and metrics["model"]["is_random"] is False
    assert metrics["optimize_seconds"] > 0 and metrics["compile_seconds"] > 0
    assert metrics["device"]["platform"] == "cpu" and metrics["versions"]["jax"]
    assert np.load(work / "embeddings.npy").shape == (8, 33, 64)  # T + 1 tokens: the sink display


def test_random_model_is_labelled(tmp_path, capsys):
    out = tmp_path / "r.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", "random:gpt2", *FAST]) == 0
    assert "RANDOM weights" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "r.work" / "metrics.json").read_text())
    assert metrics["model"]["is_random"] and "RANDOM" in metrics["model"]["source"]


@pytest.mark.parametrize("extra", [[], ["--mode", "full"], ["--color", "--heads", "0,1,2", "--model", "random:gpt2"]])  # colour: 3 heads need n_embd > 6 d_head
def test_preset_fast_with_explicit_overrides(extra, tiny_ckpt, tmp_path):
    out = tmp_path / "fast.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--preset", "fast", "--steps", "8",
                 "--lr", "0.2", "--size", "16", "--max-frames", "2", "-q", *extra]) == 0
    metrics = json.loads((tmp_path / "fast.work" / "metrics.json").read_text())
    chosen = metrics["settings"]["settings"]
    assert (chosen["solver"], chosen["seeds"], chosen["steps"], chosen["lr"]) == ("qk", 1, 8, 0.2)
    assert (chosen["b2"], chosen["schedule"]) == (0.85, "cosine")  # the rest of the preset holds
    assert np.isfinite(metrics["per_frame_loss"]).all() and out.is_file()


def test_side_by_side_with_audio_for_images_and_from_a_video(tiny_ckpt, tmp_path):
    from badapple_jax.video import has_audio, write_video
    from test_video import write_wav

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((20, 20)) * 255).astype(np.uint8)).save(images / f"{i}.png")
    wav = write_wav(tmp_path / "song.wav", seconds=2.0)
    out = tmp_path / "sbs.mp4"
    assert main(["render", str(images), "-o", str(out), "--model", str(tiny_ckpt), "--side-by-side",
                 "--audio", str(wav), "-q", *FAST]) == 0
    reader = imageio_ffmpeg.read_frames(str(out))
    assert next(reader)["size"] == (32, 16)  # target | attention map, each 16 x 16
    reader.close()
    assert has_audio(out)

    clip = tmp_path / "clip.mp4"  # a video with a sound track: its audio is kept by default
    write_video(np.zeros((6, 16, 16, 3), np.uint8), clip, fps=15, audio=str(wav))
    out = tmp_path / "from_video.mp4"
    assert main(["render", str(clip), "-o", str(out), "--model", str(tiny_ckpt), "-q", *FAST]) == 0
    assert has_audio(out)


def test_plots_of_a_missing_workdir_is_one_line(tmp_path, capsys):
    assert main(["plots", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def misshapen(t):
    t["h.0.attn.c_attn.weight"] = t["h.0.attn.c_attn.weight"][:, :-3]
    return t


def missing(t):
    del t["h.0.ln_1.bias"]
    return t


BAD = {
    "missing input": (["/no/such/file.mp4"], "does not exist"),
    "missing input, named before the model is fetched": (["/no/such/file.mp4", "--model", "nobody/nothing"],
                                                        "Input /no/such/file.mp4 does not exist"),
    "unreadable video": (["{garbage}"], "cannot decode"),
    "empty image dir": (["{empty}"], "holds no images"),
    "size above n_positions": (["demo", "--size", "128"], "129 positions with the sink display; the model has 64"),
    "quarter size above n_positions": (["demo", "--mode", "quarter", "--size", "32"],
                                       ("--size 32 needs 65 positions with the sink display; the model has 64: use "
                                        "--size 31 or less (--mode quarter).")),
    "quarter with zscore": (["demo", "--mode", "quarter", "--display", "zscore"],
                            "--mode quarter needs --display sink, got zscore"),
    "quarter with the reference preset": (["demo", "--mode", "quarter", "--preset", "reference"],
                                          "--mode quarter needs --display sink, got zscore"),
    "head out of range": (["demo", "--head", "4"], "head 4 is out of range"),
    "layer out of range": (["demo", "--layer", "2"], "layer 2 is out of range"),
    "too few steps": (["demo", "--steps", "3"], "--steps must be at least 4"),
    "zero max frames": (["demo", "--max-frames", "0"], "--max-frames must be at least 1"),
    "negative lr": (["demo", "--lr", "-1"], "--lr must be a positive number"),
    "nan init scale": (["demo", "--init-scale", "nan"], "--init-scale must be positive"),
    "not a number": (["demo", "--steps", "many"], "invalid int value"),
    "unknown model id": (["demo", "--model", "nobody/nothing"], "unknown model 'nobody/nothing'"),
    "missing key": (["demo", "--model", "{missing}"], "lacks h.0.ln_1.bias"),
    "misshapen key": (["demo", "--model", "{misshapen}"], "h.0.attn.c_attn.weight has shape (64, 189)"),
    "headspace above layer 0": (["demo", "--solver", "headspace", "--layer", "1"], "headspace and qk work at layer 0 only"),
    "warm start without headspace": (["demo", "--solver", "embedding", "--warm-start"], "--warm-start needs --solver headspace"),
    "unknown solver": (["demo", "--solver", "magic"], "invalid choice: 'magic'"),
    "chunk size zero": (["demo", "--chunk-size", "0"], "--chunk-size must be at least 1"),
    "audio file missing": (["demo", "--audio", "/no/song.wav"], "--audio /no/song.wav does not exist"),
    "color without heads": (["demo", "--color"], "--color needs --heads with three heads"),
    "heads without color": (["demo", "--heads", "0,1,2"], "add --color"),
    "heads not numbers": (["demo", "--heads", "a,b"], "--heads takes whole numbers"),
    "colour head out of range": (["demo", "--heads", "0,1,9", "--color"], "head 9 is out of range"),
    "output dir missing": (["demo", "-o", "/no/such/dir/out.mp4"], "does not exist"),
    "output is a directory": (["demo", "-o", "{empty}"], "must end in one of"),
    "output is a directory named .mp4": (["demo", "-o", "{dir_mp4}"], "is a directory"),
    "workdir under a file": (["demo", "--workdir", "{garbage}/work"], "is not a directory"),
    # every numeric option: negative, zero where it cannot be, and absurd
    "negative steps": (["demo", "--steps", "-5"], "--steps must be at least 4"),
    "absurd steps": (["demo", "--steps", "1000000000000"], "--steps must be at most 10000000"),
    "zero seeds": (["demo", "--seeds", "0"], "--seeds must be at least 1"),
    "absurd seeds": (["demo", "--seeds", "100000000"], "--seeds must be at most 10000"),
    "zero lr": (["demo", "--lr", "0"], "--lr must be a positive number"),
    "infinite lr": (["demo", "--lr", "inf"], "--lr must be a positive number"),
    "absurd lr": (["demo", "--lr", "1e9"], "--lr must be at most 1000.0"),
    "negative lr-min": (["demo", "--lr-min", "-0.1"], "--lr-min must be a number >= 0"),
    "lr-min above lr": (["demo", "--lr-min", "5"], "--lr 0.5 is below --lr-min 5"),
    "tiny lr names both": (["demo", "--lr", "1e-30"], "--lr 1e-30 is below --lr-min 0.0001"),
    "negative init scale": (["demo", "--init-scale", "-1"], "--init-scale must be positive"),
    "absurd init scale": (["demo", "--init-scale", "1e30"], "--init-scale must be at most 1000.0"),
    "negative size": (["demo", "--size", "-16"], "--size must be at least 2"),
    "absurd size": (["demo", "--size", "10000000"], "the model has 64"),
    "zero fps": (["demo", "--fps", "0"], "--fps must be in [0.1, 1000] frames per second"),
    "nan fps": (["demo", "--fps", "nan"], "--fps must be in [0.1, 1000] frames per second"),
    "absurd fps": (["demo", "--fps", "1e12"], "--fps must be in [0.1, 1000] frames per second"),
    "tiny fps": (["demo", "--fps", "0.0001"], "--fps must be in [0.1, 1000] frames per second, got 0.0001"),
    "non-ascii head": (["demo", "--color", "--heads", "٠,1,2"], "--heads takes whole numbers separated by commas"),
    "head twice": (["demo", "--color", "--heads", "0,0,1"], "--heads names a head twice: (0, 0, 1)"),
    "fps just above": (["demo", "--fps", "1000.001"], "--fps must be in [0.1, 1000] frames per second, got 1000.001."),
    "negative max frames": (["demo", "--max-frames", "-2"], "--max-frames must be at least 1"),
    "negative chunk size": (["demo", "--chunk-size", "-4"], "--chunk-size must be at least 1"),
    "negative seed": (["demo", "--seed", "-1"], "--seed must be in 0..2147483647"),
    "absurd seed": (["demo", "--seed", "99999999999999"], "--seed must be in 0..2147483647"),
    "negative layer": (["demo", "--layer", "-1"], "--layer must be >= 0"),
    "absurd layer": (["demo", "--layer", "100000"], "layer 100000 is out of range"),
    "negative head": (["demo", "--head", "-1"], "--head must be >= 0"),
    "absurd head": (["demo", "--head", "99999"], "head 99999 is out of range"),
    "negative colour head": (["demo", "--heads", "0,-1,2", "--color"], "--heads takes whole numbers"),
    "absurd colour head": (["demo", "--heads", "0,1,99", "--color"], "out of range"),
    "output not a video": (["demo", "-o", "{tmp}/out.txt"], "must end in one of"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tiny_ckpt, tmp_path, hub, capsys):  # noqa: F811
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(3000))
    (tmp_path / "empty").mkdir()
    (tmp_path / "dir.mp4").mkdir()
    paths = {"dir_mp4": tmp_path / "dir.mp4", "garbage": tmp_path / "garbage.mp4", "empty": tmp_path / "empty", "tmp": tmp_path,
             "missing": rewrite(tiny_ckpt, tmp_path / "missing", missing),
             "misshapen": rewrite(tiny_ckpt, tmp_path / "misshapen", misshapen)}
    args, expected = BAD[case]
    args = [a.format(**paths) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.mp4")]
    if "--model" not in args:
        args += ["--model", str(tiny_ckpt)]
    before = set(os.listdir(tmp_path))
    try:
        code = main(["render", *args, *(["--steps", "8"] if "--steps" not in args else []),
                     *(["--size", "16"] if "--size" not in args else [])])
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert set(os.listdir(tmp_path)) == before


def test_python_dash_m_reports_bad_input_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "badapple_jax", "render", "/no/such.mp4", "-o", str(tmp_path / "o.mp4"),
                           "--model", "random:gpt2"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr


def test_start_later_in_frames_or_seconds_resumes_and_extends(tiny_ckpt, tmp_path, capsys):
    """--start renders the input from that frame (seconds at --fps, to the nearest frame): its targets are those
    frames, a work directory is resumed or grown only with the same start, and another start is refused."""
    from badapple_jax.video import demo_clip

    out = tmp_path / "late.mp4"
    args = ["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--steps", "8", "--size", "16",
            "--chunk-size", "1", "-q"]
    assert main([*args, "--start", "0.4s", "--max-frames", "2"]) == 0  # 0.4 s at 15 fps: frame 6
    work = tmp_path / "late.work"
    metrics = json.loads((work / "metrics.json").read_text())
    assert metrics["settings"]["start"] == 6 and "from frame 6 (0.40 s)" in metrics["input"]
    demo = (demo_clip(size=16).frames * 255).round().astype(np.uint8)
    with np.load(work / "targets.npz") as npz:
        np.testing.assert_array_equal(npz["frames"], demo[6:8])
    first = (work / "frames" / "frame_000000.png").read_bytes()
    assert main([*args, "--start", "6", "--max-frames", "3"]) == 0  # the same start in frames: grown by one
    with np.load(work / "targets.npz") as npz:
        np.testing.assert_array_equal(npz["frames"], demo[6:9])
    assert (work / "frames" / "frame_000000.png").read_bytes() == first
    capsys.readouterr()
    assert main([*args, "--start", "7", "--max-frames", "3"]) == 2
    assert "--start 6 there, 7 here" in capsys.readouterr().err


def test_preset_fast_above_layer_0_uses_the_embedding_solver(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "p.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--preset", "fast", "--layer", "1",
                 "--steps", "40", "--size", "8", "--max-frames", "2"]) == 0
    assert "note: --preset fast uses --solver embedding --lr 0.1 --b2 0.9 at --layer 1" in capsys.readouterr().err
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--preset", "fast", "--layer", "1",
                 "--solver", "headspace", "--size", "8", "--max-frames", "2"]) == 2  # asked for: refused
    err = capsys.readouterr().err
    assert "note: --preset fast uses --steps 200 --b2 0.9 at --layer 1 (the headspace solver's own settings)" in err
    assert "--solver headspace and qk work at layer 0 only" in err
