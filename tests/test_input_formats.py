"""Inputs that used to be read wrong without a word: image sample types, multi-frame images, file names that ffmpeg
would take for protocols, sampling rates that collapse a clip, the empty input name."""
import os

import numpy as np
import pytest
from PIL import Image

from badapple_jax.cli import main
from badapple_jax.errors import BadInputError
from badapple_jax.video import FPS_RANGE, check_source, has_audio, read_clip, write_video

from test_bad_inputs import assert_refused
from test_video import write_wav

CLI_FAST = ["--model", "random:gpt2", "--steps", "8", "--seeds", "1", "--size", "16", "--max-frames", "2", "-q"]


def picture(height=24, width=20):
    """[H, W] uint8: a diagonal ramp over the whole 0..255 range, with a black and a white corner."""
    ramp = np.add.outer(np.arange(height), np.arange(width)) * 255 / (height + width - 2)
    return np.round(ramp).astype(np.uint8)


def save(array, path, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return path


def save_frames(path, values, **kwargs):
    """Frames of uniform gray `values` as one multi-frame file (GIF, APNG or multi-page TIFF)."""
    frames = [Image.new("L", (12, 12), v) for v in values]
    frames[0].save(path, save_all=True, append_images=frames[1:], **kwargs)
    return path


def refusal(source, **kwargs) -> str:
    with pytest.raises(BadInputError) as err:
        read_clip(str(source), size=16, **kwargs)
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --- sample types --------------------------------------------------------------------------------------------------


SAME_PICTURE = {  # the picture of `picture()` in other sample types: each must give the uint8 PNG's targets
    "float32 TIFF in [0, 1]": lambda p, tmp: save(p.astype(np.float32) / 255, tmp / "f32.tif"),
    "uint16 PNG": lambda p, tmp: save(p.astype(np.uint16) * 257, tmp / "u16.png"),
    "uint16 TIFF": lambda p, tmp: save(p.astype(np.uint16) * 257, tmp / "u16.tif"),
    "RGB PNG": lambda p, tmp: save(np.stack([p] * 3, -1), tmp / "rgb.png"),
}


@pytest.mark.parametrize("case", list(SAME_PICTURE))
def test_sample_types_map_to_unit_range_by_type(case, tmp_path):
    p = picture()
    reference = read_clip(str(save(p, tmp_path / "u8.png")), size=16).frames
    alone = read_clip(str(SAME_PICTURE[case](p, tmp_path)), size=16)
    assert alone.frames.shape == (1, 16, 16) and alone.label.startswith("image ")
    np.testing.assert_allclose(alone.frames, reference, atol=1 / 255 + 1e-6)
    in_dir = read_clip(str(tmp_path), size=16).frames  # u8.png and the other: the same picture twice
    np.testing.assert_allclose(in_dir, np.concatenate([reference] * 2), atol=1 / 255 + 1e-6)
    assert reference.min() < 0.02 and reference.max() > 0.98  # the whole range, not a black target


def test_uint16_scales_by_65535_and_alpha_reads_alike_alone_and_in_a_directory(tmp_path):
    assert read_clip(str(save(np.full((8, 8), 32768, np.uint16), tmp_path / "half.png")), size=4).frames.mean() \
        == pytest.approx(128 / 255)
    (tmp_path / "dir").mkdir()
    rgba = save(np.full((8, 8, 4), [255, 255, 255, 128], np.uint8), tmp_path / "dir" / "rgba.png")
    alone = read_clip(str(rgba), size=4).frames
    np.testing.assert_array_equal(alone, read_clip(str(tmp_path / "dir"), size=4).frames)
    assert alone.mean() == pytest.approx(128 / 255)  # composited on black, as in a directory (ffmpeg dropped alpha)


SAMPLE_REFUSALS = {
    "int32 TIFF": (lambda tmp: save(picture().astype(np.int32), tmp / "i32.tif"),
                   "Image {path} holds signed 32-bit integers (0..255), which have no white level: "),
    "float TIFF in 0..255": (lambda tmp: save(picture().astype(np.float32), tmp / "f255.tif"),
                             "Image {path} holds float samples in [0, 255]; float images must lie in [0, 1]"),
    "float TIFF below 0": (lambda tmp: save(np.full((4, 4), -0.5, np.float32), tmp / "neg.tif"),
                           "Image {path} holds float samples in [-0.5, -0.5]; float images must lie in [0, 1]"),
    "float TIFF with NaN": (lambda tmp: save(np.full((4, 4), np.nan, np.float32), tmp / "nan.tif"),
                            "Image {path} holds NaN or infinite float samples"),
}


@pytest.mark.parametrize("case", list(SAMPLE_REFUSALS))
def test_ambiguous_sample_types_are_refused(case, tmp_path):
    make, expected = SAMPLE_REFUSALS[case]
    path = make(tmp_path)
    assert expected.format(path=path) in refusal(path)
    save(picture(), tmp_path / "a.png")  # in a directory, after a good image: the same refusal
    assert expected.format(path=path) in refusal(tmp_path)


# --- multi-frame images --------------------------------------------------------------------------------------------


MULTI_FRAME = {
    "GIF": lambda tmp: save_frames(tmp / "anim.gif", [0, 128, 255], duration=250, loop=0),
    "APNG": lambda tmp: save_frames(tmp / "anim.png", [0, 128, 255], duration=250, loop=0),
    "multi-page TIFF": lambda tmp: save_frames(tmp / "pages.tif", [0, 128, 255]),
}


@pytest.mark.parametrize("case", list(MULTI_FRAME))
def test_multi_frame_image_alone_gives_every_frame(case, tmp_path):
    clip = read_clip(str(MULTI_FRAME[case](tmp_path)), size=8, fps=4)  # animations: 4 frames a second, as timed
    np.testing.assert_allclose(clip.frames.mean((1, 2)), [0, 128 / 255, 1], atol=1.5 / 255)
    assert read_clip(str(MULTI_FRAME[case](tmp_path)), size=8, fps=4, max_frames=2).frames.shape == (2, 8, 8)


@pytest.mark.parametrize("case", list(MULTI_FRAME))
def test_multi_frame_image_in_a_directory_is_refused(case, tmp_path):
    save(picture(), tmp_path / "0.png")
    path = MULTI_FRAME[case](tmp_path)
    assert refusal(tmp_path) == (f"Image {path} holds 3 frames; a directory is read as one image per frame: "
                                 "give the animation itself as the input.")


# --- file names ffmpeg would read as protocols ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pipe:0.mp4", "sub/concat:x.mp4", "./subfile:x.mp4", "-"])
def test_relative_paths_named_like_protocols_are_files(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    write_wav(tmp_path / "pipe:1.wav")
    rgb = np.zeros((4, 16, 16, 3), np.uint8)
    rgb[:, :, :8] = 255  # left half white
    target = name if name != "-" else "-.mp4"  # write_video wants a video suffix; "-" is renamed below
    write_video(rgb, target, fps=4, audio="pipe:1.wav")
    if name == "-":
        os.rename(target, name)
    assert has_audio(name)
    clip = read_clip(name, size=8, fps=4)
    assert clip.frames.shape == (4, 8, 8) and os.path.samefile(clip.audio, name)
    assert clip.frames[:, :, :3].min() > 0.9 and clip.frames[:, :, 5:].max() < 0.1


# --- sampling rate, empty input -----------------------------------------------------------------------------------


def test_sampling_rate_outside_its_range_is_refused():
    assert FPS_RANGE == (0.1, 1000.0)
    for fps in (0.0001, 0.0999, 1000.5, float("nan")):
        assert refusal("demo", fps=fps).startswith("fps must be in [0.1, 1000] frames per second, got ")
    assert read_clip("demo", size=8, fps=0.1).frames.shape == (1, 8, 8)


def test_empty_input_is_refused_not_read_as_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save(picture(), tmp_path / "a.png")  # "" used to read the current directory's images
    expected = "Input is empty (give a video file, a directory of images, 'demo' or 'badapple')."
    assert refusal("") == expected
    with pytest.raises(BadInputError, match=r"^Input is empty"):
        check_source("")


# --- through the command line --------------------------------------------------------------------------------------


def gif_in_directory(tmp):
    (tmp / "frames").mkdir()
    save(picture(), tmp / "frames" / "0.png")
    MULTI_FRAME["GIF"](tmp / "frames")
    return tmp / "frames", "Image {path}/anim.gif holds 3 frames; a directory is read as one image per frame"


CLI_REFUSALS = {
    "int32 TIFF": lambda tmp: (SAMPLE_REFUSALS["int32 TIFF"][0](tmp), SAMPLE_REFUSALS["int32 TIFF"][1]),
    "GIF in a directory": gif_in_directory,
    "empty input": lambda tmp: ("", "Input is empty"),
}


@pytest.mark.parametrize("case", list(CLI_REFUSALS))
def test_refusals_reach_the_command_line_and_write_nothing(case, tmp_path, capsys):
    path, expected = CLI_REFUSALS[case](tmp_path)
    before = set(os.listdir(tmp_path))
    code = main(["render", str(path), "-o", str(tmp_path / "out.mp4"), *CLI_FAST])
    assert_refused(code, capsys.readouterr().err, expected.format(path=path))
    assert set(os.listdir(tmp_path)) == before
