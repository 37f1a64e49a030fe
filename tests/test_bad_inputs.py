"""Bad inputs to `badapple-jax render` give one line on stderr, exit status 2 and write nothing; unusual but valid
inputs (no audio, one frame, mixed image modes, non-square frames) render."""
import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from badapple_jax.cli import main
from badapple_jax.video import has_audio, write_video

from test_video import write_wav
from test_weights import SHA, hub  # noqa: F401  (the loopback hub fixture)

FAST = ["--steps", "8", "--seeds", "1", "--size", "16", "--max-frames", "3", "-q"]
REPO = Path(__file__).resolve().parents[1]


def run(args, capsys) -> tuple[int, str]:
    """`badapple-jax render` with the fast settings (options in `args` override them) -> (exit status, stderr)."""
    try:
        code = main(["render", *FAST, *args])
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    return code, capsys.readouterr().err


def assert_refused(code, err, expected):
    assert code == 2, err
    assert expected in err, err
    assert err.count("\n") == 1 and err.startswith("badapple-jax: error: ") and "Traceback" not in err, err


def noise_video(path, n=30, height=32, width=32, fps=15):
    write_video(np.random.default_rng(0).integers(0, 256, (n, height, width, 3), np.uint8), path, fps=fps)
    return path


def frame_count(path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


# --- inputs ------------------------------------------------------------------------------------------------------


def empty_file(tmp):
    (tmp / "empty.mp4").touch()
    return tmp / "empty.mp4"


def truncated_video(tmp):  # cut in the frame data: the index (moov, written last) is lost
    path = noise_video(tmp / "half.mp4")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def truncated_index(tmp):  # the index survives in part: ffmpeg opens the file but finds no stream
    path = noise_video(tmp / "cut.mp4", n=2)
    path.write_bytes(path.read_bytes()[:-500])  # the index (moov, with our tag) sits at the end: cut into it
    return path


def text_file(tmp):
    (tmp / "notes.mp4").write_text("not a video\n")
    return tmp / "notes.mp4"


def audio_only(tmp):
    return write_wav(tmp / "song.wav")


def no_images(tmp):
    (tmp / "docs").mkdir()
    (tmp / "docs" / "notes.txt").write_text("not an image")
    write_wav(tmp / "docs" / "song.wav")
    return tmp / "docs"


def image_dir(tmp, bad: bytes):
    (tmp / "images").mkdir()
    for i in (1, 2):  # 3.png is the third: --max-frames 3 reads it
        Image.new("L", (20, 20), 60 * i).save(tmp / "images" / f"{i}.png")
    (tmp / "images" / "3.png").write_bytes(bad)
    return tmp / "images"


def corrupt_image(tmp):
    return image_dir(tmp, np.random.default_rng(0).bytes(500))


def truncated_image(tmp):
    return image_dir(tmp, png_bytes()[:300])


def png_bytes():
    """A real 64 x 64 gray PNG of noise (a few kB, so a cut at 300 bytes lands in its pixel data)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


BAD_MEDIA = {
    "empty file": (empty_file, "Input {path} is empty (0 bytes)."),
    "truncated video": (truncated_video, "cannot decode {path} as a video: Error opening input files: Invalid data"),
    "truncated video index": (truncated_index, "cannot decode {path} as a video: it holds no decodable video stream"),
    "device file": (lambda tmp: Path("/dev/null"), "Input /dev/null is neither a file nor a directory."),
    "text file named .mp4": (text_file, "cannot decode {path} as a video: Error opening input files: Invalid data"),
    "audio only": (audio_only, "cannot decode {path} as a video: it holds no decodable video stream"),
    "directory without images": (no_images, "Directory {path} holds no images"),
    "corrupt image": (corrupt_image, "Cannot read image {path}/3.png: cannot identify image file"),
    "truncated image": (truncated_image, "Cannot read image {path}/3.png: image file is truncated"),
}


@pytest.mark.parametrize("case", list(BAD_MEDIA))
def test_bad_media_is_one_line_and_writes_nothing(case, tiny_ckpt, tmp_path, capsys):
    make, expected = BAD_MEDIA[case]
    path = make(tmp_path)
    before = set(os.listdir(tmp_path))
    code, err = run([str(path), "-o", str(tmp_path / "out.mp4"), "--model", str(tiny_ckpt)], capsys)
    assert_refused(code, err, expected.format(path=path))
    assert set(os.listdir(tmp_path)) == before


def test_video_without_audio_renders_silent(tiny_ckpt, tmp_path, capsys):
    clip = noise_video(tmp_path / "silent.mp4")
    assert not has_audio(clip)
    out = tmp_path / "out.mp4"
    assert run([str(clip), "-o", str(out), "--model", str(tiny_ckpt)], capsys)[0] == 0
    assert frame_count(out) == 3 and not has_audio(out)


@pytest.mark.parametrize("fps", [15, 60])  # at 60 fps one frame lasts less than half a frame at --fps 15
def test_single_frame_video_renders_one_frame(fps, tiny_ckpt, tmp_path, capsys):
    clip = noise_video(tmp_path / "one.mp4", n=1, fps=fps)
    out = tmp_path / "out.mp4"
    assert run([str(clip), "-o", str(out), "--model", str(tiny_ckpt)], capsys)[0] == 0
    assert frame_count(out) == 1


def test_png_named_mp4_renders_as_one_frame(tiny_ckpt, tmp_path, capsys):
    clip = tmp_path / "picture.mp4"  # ffmpeg goes by the content, not the name
    clip.write_bytes(png_bytes())
    out = tmp_path / "out.mp4"
    assert run([str(clip), "-o", str(out), "--model", str(tiny_ckpt)], capsys)[0] == 0
    assert frame_count(out) == 1


def test_image_directory_of_mixed_sizes_and_modes(tiny_ckpt, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (20, 20), 200).save(images / "a.png")
    Image.new("RGB", (31, 17), (255, 0, 0)).save(images / "b.png")  # BT.601 luma of red: 76
    Image.new("RGBA", (40, 40), (255, 255, 255, 128)).save(images / "c.png")  # half white on black
    palette = Image.new("P", (12, 30), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 1 is blue: luma 29
    palette.save(images / "d.gif")
    Image.fromarray(np.full((9, 13), 65535, np.uint16)).save(images / "e.png")  # 16-bit gray, white
    out = tmp_path / "out.mp4"
    assert run([str(images), "-o", str(out), "--model", str(tiny_ckpt), "--max-frames", "5"], capsys)[0] == 0
    targets = np.load(tmp_path / "out.work" / "targets.npz")["frames"]
    assert targets.shape == (5, 16, 16)
    np.testing.assert_allclose(targets.mean((1, 2)), [200, 76, 128, 29, 255], atol=1.5)
    assert frame_count(out) == 5


def test_non_square_video_is_scaled_not_cropped(tiny_ckpt, tmp_path, capsys):
    rgb = np.zeros((3, 24, 48, 3), np.uint8)
    rgb[:, :, :24] = 255  # left half white: scaled to T x T it stays the left half, over every row
    clip = tmp_path / "wide.mp4"
    write_video(rgb, clip, fps=15)
    out = tmp_path / "out.mp4"
    assert run([str(clip), "-o", str(out), "--model", str(tiny_ckpt)], capsys)[0] == 0
    targets = np.load(tmp_path / "out.work" / "targets.npz")["frames"] / 255
    assert targets.shape == (3, 16, 16)
    assert targets[:, :, :6].min() > 0.9 and targets[:, :, 10:].max() < 0.1
    reader = imageio_ffmpeg.read_frames(str(out))
    assert next(reader)["size"] == (16, 16)
    reader.close()


# --- checkpoints -------------------------------------------------------------------------------------------------


def edit_header(edit):
    """Bytes of a safetensors file -> the same file with its JSON header edited by `edit(header)`."""
    def apply(data):
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        edit(header)
        raw = json.dumps(header).encode()
        return struct.pack("<Q", len(raw)) + raw + data[8 + n :]

    return apply


def header_length(data):
    return struct.unpack("<Q", data[:8])[0]


def set_entry(key, **fields):
    return edit_header(lambda h: h[key].update(fields))


SAFETENSORS_EDITS = {
    "truncated in the data": (lambda d: d[: len(d) // 2], "model.safetensors is truncated or corrupt: "),
    "truncated in the header": (lambda d: d[:200], "model.safetensors is truncated: its header needs"),
    "header not JSON": (lambda d: d[:8] + b"#" * header_length(d) + d[8 + header_length(d) :],
                        "model.safetensors is not a safetensors file: its header is not valid JSON."),
    "header length absurd": (lambda d: struct.pack("<Q", 2**62) + d[8:],
                             f"model.safetensors is not a safetensors file: its header length {2**62} is impossible."),
    "data offsets beyond the file": (set_entry("wpe.weight", data_offsets=[10**9, 10**9 + 64 * 64 * 4]),
                                     "model.safetensors is truncated or corrupt: wpe.weight ends at byte 10000"),
    "unknown dtype": (set_entry("wpe.weight", dtype="I64"), "wpe.weight has dtype I64, expected F32, F16 or BF16."),
    "missing key": (edit_header(lambda h: h.pop("h.0.ln_1.bias")), "lacks h.0.ln_1.bias"),
    "wrong shape": (set_entry("wpe.weight", shape=[32, 128]), "wpe.weight has shape (32, 128), expected (64, 64)."),
}
CONFIG_EDITS = {"config.json missing": None, "config.json garbage": b"{n_layer: 2"}


def broken_checkpoint(tiny_ckpt, dst, case):
    shutil.copytree(tiny_ckpt, dst)
    if case in SAFETENSORS_EDITS:
        data = (dst / "model.safetensors").read_bytes()
        (dst / "model.safetensors").write_bytes(SAFETENSORS_EDITS[case][0](data))
    elif CONFIG_EDITS[case] is None:
        (dst / "config.json").unlink()
    else:
        (dst / "config.json").write_bytes(CONFIG_EDITS[case])
    return dst


@pytest.mark.parametrize("case", [*SAFETENSORS_EDITS, *CONFIG_EDITS])
def test_broken_local_checkpoint(case, tiny_ckpt, tmp_path, capsys):
    ckpt = broken_checkpoint(tiny_ckpt, tmp_path / "ckpt", case)
    expected = {"config.json missing": f"{ckpt} has no config.json",
                "config.json garbage": f"{ckpt}/config.json is not a readable model config.json."}.get(case)
    before = set(os.listdir(tmp_path))
    code, err = run(["demo", "-o", str(tmp_path / "out.mp4"), "--model", str(ckpt)], capsys)
    assert_refused(code, err, expected or SAFETENSORS_EDITS[case][1])
    assert str(ckpt) in err
    assert set(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("case", [*SAFETENSORS_EDITS, *CONFIG_EDITS])
def test_broken_hub_checkpoint(case, tiny_ckpt, tmp_path, hub, capsys):  # noqa: F811
    hub.repos["bad/ckpt"] = broken_checkpoint(tiny_ckpt, tmp_path / "ckpt", case)
    expected = {"config.json missing": "model 'bad/ckpt' has no config.json on the hub.",
                "config.json garbage": f"snapshots/{SHA}/config.json is not a readable model config.json."}.get(case)
    before = set(os.listdir(tmp_path))
    code, err = run(["demo", "-o", str(tmp_path / "out.mp4"), "--model", "bad/ckpt"], capsys)
    assert_refused(code, err, expected or SAFETENSORS_EDITS[case][1])
    if expected is None:  # the message names the file by repo, revision and name
        assert f"bad/ckpt@{SHA}/model.safetensors" in err
    assert set(os.listdir(tmp_path)) - {"hf"} == before  # hf: the caches, checked below
    cache = tmp_path / "hf" / "badapple_jax" / "bad--ckpt"
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    for config in cache.rglob("config.json"):  # what is cached was checked first
        assert json.loads(config.read_text())["n_embd"] == 64


# --- model ids, the hub offline, the work directory --------------------------------------------------------------


BAD_MODELS = {
    "random:gpt9": "unknown random model 'random:gpt9': use one of random:gpt2, random:gpt2-medium, "
                   "random:gpt2-large, random:gpt2-xl, random:minilm, random:bert-base, random:llama-3.2-1b, "
                   "random:smollm2-135m, random:qwen2.5-0.5b, random:pythia-160m.",
    "bad id!/x y": "unknown model 'bad id!/x y': not a local directory and not a valid hub repo id.",
    "a/b/c": "unknown model 'a/b/c': not a local directory and not a valid hub repo id.",
    "./no/such/dir": "model './no/such/dir' is not a directory holding config.json and *.safetensors.",
}


@pytest.mark.parametrize("model", list(BAD_MODELS))
def test_unknown_model(model, tmp_path, capsys):
    code, err = run(["demo", "-o", str(tmp_path / "out.mp4"), "--model", model], capsys)
    assert_refused(code, err, BAD_MODELS[model])
    assert os.listdir(tmp_path) == []


def test_offline_with_nothing_cached_suggests_random_weights(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "hf").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env |= {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "BADAPPLE_JAX_CACHE": str(tmp_path / "cache"),
            "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "badapple_jax", "render", "demo", "-o", str(tmp_path / "X.mp4"), "-q"],
                          check=False, capture_output=True, text=True, env=env, timeout=120)
    assert_refused(done.returncode, done.stderr, "cannot fetch gpt2-xl: HF_HUB_OFFLINE is set and the weights are not")
    assert "--model random:gpt2-xl" in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["cache", "hf"]
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("workdir", ["{tmp}/plain/work", "/proc/badapple"])
def test_unusable_workdir(workdir, tiny_ckpt, tmp_path, capsys):
    (tmp_path / "plain").write_text("a regular file, not a directory")
    workdir = workdir.format(tmp=tmp_path)
    code, err = run(["demo", "-o", str(tmp_path / "out.mp4"), "--model", str(tiny_ckpt), "--workdir", workdir], capsys)
    assert_refused(code, err, f"Cannot use work directory {workdir}: ")
    assert os.listdir(tmp_path) == ["plain"]
