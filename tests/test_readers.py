"""What the readers accept: checkpoint shards (weights, safetensors_range), a finished work directory for plots
and viewer, and survey's --layers. Anything ambiguous or foreign is one BadInputError line naming it."""
import json
import shutil
import struct

import imageio.v3 as iio
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import badapple_jax.plots as plots
from badapple_jax.cli import main
from badapple_jax.errors import BadInputError
from badapple_jax.safetensors_range import file_reader, read_header
from badapple_jax.survey import parse_layers
from badapple_jax.viewer import write_viewer
from badapple_jax.weights import load_layer
from badapple_jax.workdir import WorkDir
from test_plots import T, fake_workdir
from test_weights import assert_layer_equal, rewrite

QKV = "h.0.attn.c_attn.weight"  # read for layer 0


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --- one tensor in two places of a checkpoint --------------------------------------------------------------------

def split_with(src, dst, copy):
    """`src` as a first shard and `copy` (stored key -> array) as a second."""
    dst.mkdir()
    shutil.copy(src / "config.json", dst)
    tensors = load_file(src / "model.safetensors")
    save_file(tensors, dst / "model-00001-of-00002.safetensors")
    save_file(copy, dst / "model-00002-of-00002.safetensors")
    return tensors


@pytest.mark.parametrize("change", [lambda x: x * 0.5, lambda x: x[:, :-1]], ids=["values", "shape"])
def test_a_tensor_in_two_shards_that_differ_is_refused(tiny_ckpt, tmp_path, change):
    tensors = load_file(tiny_ckpt / "model.safetensors")
    split_with(tiny_ckpt, tmp_path / "ck", {QKV: np.ascontiguousarray(change(tensors[QKV]))})
    with pytest.raises(BadInputError) as err:
        load_layer(tmp_path / "ck", 0)
    message = one_line(err)
    assert f"two different {QKV}" in message
    assert "model-00001-of-00002.safetensors" in message and "model-00002-of-00002.safetensors" in message


def test_a_tensor_stored_with_and_without_the_prefix_that_differ_is_refused(tiny_ckpt, tmp_path):
    def edit(t):
        return {**t, "transformer." + QKV: t[QKV] + 1}

    rewrite(tiny_ckpt, tmp_path / "ck", edit)
    with pytest.raises(BadInputError) as err:
        load_layer(tmp_path / "ck", 0)
    assert f"(as transformer.{QKV})" in one_line(err)


def test_identical_copies_are_one_tensor(tiny_ckpt, tmp_path):
    """A shard left beside a re-sharded checkpoint holds the same values: no doubt which the model means."""
    tensors = split_with(tiny_ckpt, tmp_path / "ck", {QKV: load_file(tiny_ckpt / "model.safetensors")[QKV]})
    w, _ = load_layer(tmp_path / "ck", 0)
    assert_layer_equal(w, tensors)


def header_file(path, header: bytes, data: bytes = b"") -> str:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return str(path)


def test_a_key_twice_in_one_header_is_refused(tmp_path):
    entry = lambda begin: f'{{"dtype": "F32", "shape": [1], "data_offsets": [{begin}, {begin + 4}]}}'  # noqa: E731
    header = f'{{"a": {entry(0)}, "a": {entry(4)}}}'.encode()
    name = header_file(tmp_path / "twice.safetensors", header, np.arange(2, dtype="<f4").tobytes())
    with pytest.raises(BadInputError) as err:
        read_header(file_reader(name), name)
    assert one_line(err).endswith("its header names a twice.")


def test_a_deeply_nested_header_is_refused(tmp_path):
    name = header_file(tmp_path / "deep.safetensors", b"[" * 100_000)
    with pytest.raises(BadInputError, match="header is not valid JSON"):
        read_header(file_reader(name), name)


# --- a finished work directory, as plots and viewer read it ------------------------------------------------------

def frame(work, i):
    return WorkDir(work).frame(i)


FRAME_BREAKERS = {  # id: (what the message says, the damage to frame 2)
    "not-png": ("not a decodable PNG", lambda p: p.write_text("garbage")),
    "truncated": ("not a decodable PNG", lambda p: p.write_bytes(p.read_bytes()[:60])),
    "white": ("outside the magma colormap", lambda p: iio.imwrite(p, np.full((T, T, 3), 255, np.uint8))),
    "gray": ("uint8 [32, 32]", lambda p: iio.imwrite(p, np.zeros((T, T), np.uint8))),
    "rgba": ("uint8 [32, 32, 4]", lambda p: iio.imwrite(p, np.zeros((T, T, 4), np.uint8))),
    "16-bit": ("uint16 [32, 32]", lambda p: iio.imwrite(p, np.zeros((T, T), np.uint16))),
    "other-size": ("uint8 [16, 16, 3]", lambda p: iio.imwrite(p, iio.imread(p)[:16, :16])),
}


@pytest.mark.parametrize("says, damage", FRAME_BREAKERS.values(), ids=FRAME_BREAKERS.keys())
@pytest.mark.parametrize("reader", [plots.make_plots, write_viewer], ids=["plots", "viewer"])
def test_a_frame_that_is_not_ours_is_refused_naming_it(tmp_path, reader, says, damage):
    work = fake_workdir(tmp_path / "run.work", [0.1, 0.2, 0.3, 0.4])
    damage(frame(work, 2))
    with pytest.raises(BadInputError) as err:
        reader(work)
    message = one_line(err)
    assert str(frame(work, 2)) in message and says in message
    assert not list(work.glob("*.png")) and not list(work.glob("*.html"))


def test_a_colour_render_has_any_rgb_frames(tmp_path):
    work = fake_workdir(tmp_path / "run.work", [0.1, 0.2, 0.3])
    metrics = json.loads((work / "metrics.json").read_text())
    (work / "metrics.json").write_text(json.dumps({**metrics, "settings": {**metrics["settings"], "color": True}}))
    iio.imwrite(frame(work, 1), np.full((T, T, 3), 255, np.uint8))
    run = WorkDir(work).finished_run()
    assert run.colour and run.frame(1).min() == 255


TARGET_BREAKERS = {
    "other-size": np.zeros((4, 2 * T, 2 * T), np.uint8),
    "not-square": np.zeros((4, T, T - 1), np.uint8),
    "too-many": np.zeros((5, T, T), np.uint8),
    "float": np.zeros((4, T, T), np.float32),
    "rgb": np.zeros((4, T, T, 3), np.uint8),
}


@pytest.mark.parametrize("targets", TARGET_BREAKERS.values(), ids=TARGET_BREAKERS.keys())
@pytest.mark.parametrize("reader", [plots.make_plots, write_viewer], ids=["plots", "viewer"])
def test_targets_of_another_shape_are_refused(tmp_path, reader, targets):
    work = fake_workdir(tmp_path / "run.work", [0.1, 0.2, 0.3, 0.4])
    np.savez(work / "targets.npz", frames=targets)
    with pytest.raises(BadInputError) as err:
        reader(work)
    assert str(work / "targets.npz") in one_line(err) and f"expected uint8 [4, {T}, {T}]" in str(err.value)


@pytest.mark.parametrize("command", ["plots", "viewer"])
def test_a_file_is_not_a_work_directory(tmp_path, capsys, command):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"a video")
    assert main([command, str(video)]) == 2
    err = capsys.readouterr().err
    assert err == f"badapple-jax: error: {video} is a file, not a work directory.\n"
    assert video.read_bytes() == b"a video"


# --- survey --layers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["٠", "0,١", "²", "0_1", "+1", "-1", "1.0", "0 1", "", ","])
def test_layers_are_ascii_digits(text):
    with pytest.raises(BadInputError, match="layers must be a layer") as err:
        parse_layers(text, 2)
    one_line(err)


@pytest.mark.parametrize("text", ["0,0", "1,0,1", "0,00"])
def test_a_layer_named_twice_is_refused(text):
    with pytest.raises(BadInputError, match="names layer . twice") as err:
        parse_layers(text, 2)
    one_line(err)


def test_layers_accepted():
    assert parse_layers("1, 0", 2) == [0, 1]
    assert parse_layers(" all ", 2) == [0, 1]
    assert parse_layers("01", 2) == [1]
