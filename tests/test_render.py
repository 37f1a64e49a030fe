"""render.py end to end, where only a render can show it: written frames are what transformers computes from the
saved embeddings; both displays, full and quarter mode and colour carry the choice and its fidelity into
metrics.json, the PNGs and the video (SPEC 11-12, 14); non-finite frames are listed."""
import dataclasses
import json

import imageio.v3 as iio
import numpy as np
import pytest

import imageio_ffmpeg

from badapple_jax.cli import main
from badapple_jax.display import gray_of
from badapple_jax.errors import BadInputError
from badapple_jax.fidelity import psnr
from badapple_jax.optimize import LIMITS, Settings
from badapple_jax.render import Job, render
from badapple_jax.video import read_clip

from test_kernel import hf_attentions

SMALL = ["--size", "16", "--max-frames", "3", "--seeds", "1", "-q"]


def assert_same_fidelity(shown, targets, region, recorded):
    """PSNR of the decoded PNGs against the recorded PSNR (of the unrounded pictures): their RMSEs differ by at
    most the magma bins' rounding, 1/512 (triangle inequality)."""
    rmse = lambda db: 10 ** (-np.asarray(db) / 20)  # noqa: E731
    np.testing.assert_allclose(rmse(psnr(shown, targets, region)), rmse(recorded), atol=1 / 512 + 1e-6)


def rendered(work, colour=False):  # -> frames shown [N, (3,) T, T] decoded from the PNGs, metrics
    metrics = json.loads((work / "metrics.json").read_text())
    pngs = sorted((work / "frames").glob("frame_*.png"))
    return np.stack([gray_of(iio.imread(p), colour) for p in pngs]), metrics


@pytest.mark.parametrize("layer, solver, extra", [(0, "headspace", ["--warm-start"]), (1, "embedding", [])])
def test_written_frames_are_the_maps_transformers_computes_from_the_saved_embeddings(tiny_ckpt, tmp_path, layer,
                                                                                    solver, extra):
    out = tmp_path / "s.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--layer", str(layer), "--head", "1",
                 "--solver", solver, "--steps", "200", "--save-embeddings", "--chunk-size", "auto", *extra,
                 *SMALL]) == 0
    shown, metrics = rendered(tmp_path / "s.work")
    assert metrics["settings"]["settings"]["solver"] == solver and 1 <= metrics["chunk_size"] <= 3
    if solver == "headspace":  # both losses recorded: the lifted embedding's and head space's, equal
        lifted, space = np.asarray(metrics["per_frame_loss"]), np.asarray(metrics["per_frame_headspace_loss"])
        np.testing.assert_allclose(lifted, space, rtol=1e-4, atol=1e-6)
    x = np.load(tmp_path / "s.work" / "embeddings.npy")
    assert x.shape == (3, 17, 64)  # T + 1 tokens: token 0 the sink
    assert metrics["display"] == "sink" and metrics["sink_z"] == 2.0 * 16
    Z, black = metrics["sink_z"], metrics["sink_black"]
    tri = np.tri(16, dtype=bool)
    for i in range(3):
        a = hf_attentions(tiny_ckpt, x[i])[layer][1]  # [17, 17]
        v = np.clip(Z * a[1:, 1:] - black, 0, 1) * tri
        np.testing.assert_allclose(shown[i], v, atol=1 / 256 + 1e-4)  # within one magma bin
    targets = read_clip("demo", size=16, max_frames=3).frames
    assert_same_fidelity(shown, targets, tri, metrics["per_frame_psnr"])
    assert metrics["median_psnr"] > 20  # it really shows the frame, not a row-normalised shadow of it


def test_zscore_display_names_itself_and_a_rerun_with_the_other_display_is_refused(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "z.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--steps", "40", "--save-embeddings",
                 "--preset", "reference", *SMALL]) == 0
    shown, metrics = rendered(tmp_path / "z.work")
    assert metrics["display"] == "zscore" and "sink_z" not in metrics
    assert np.load(tmp_path / "z.work" / "embeddings.npy").shape == (3, 16, 64)
    assert len(metrics["per_frame_psnr"]) == 3 and all(-1 <= s <= 1 for s in metrics["per_frame_ssim"])
    assert metrics["flicker"] > 0 and metrics["target_flicker"] > 0
    capsys.readouterr()
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--steps", "40", "--save-embeddings",
                 "--preset", "reference", "--display", "sink", *SMALL]) == 2
    assert "--display zscore there, sink here" in capsys.readouterr().err


def test_full_mode_sink_shows_the_whole_frame_without_a_seam_and_plots_follow(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "f.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--mode", "full", "--solver",
                 "headspace", "--steps", "200", "--save-embeddings", "--chunk-size", "2", *SMALL]) == 0
    shown, metrics = rendered(tmp_path / "f.work")
    lower, upper = np.asarray(metrics["per_frame_loss_lower"]), np.asarray(metrics["per_frame_loss_upper"])
    np.testing.assert_allclose(metrics["per_frame_loss"], (lower + upper) / 2)
    assert np.load(tmp_path / "f.work" / "embeddings.npy").shape == (3, 2, 17, 64)
    frame = iio.imread(tmp_path / "f.work" / "frames" / "frame_000000.png").astype(int)
    assert frame[np.triu_indices(16, 1)].sum() > 0  # no black triangle
    targets = read_clip("demo", size=16, max_frames=3).frames
    whole = np.ones((16, 16), bool)
    assert_same_fidelity(shown, targets, whole, metrics["per_frame_psnr"])
    upper = np.triu(whole, 1)
    assert np.abs(shown - targets)[:, upper].mean() < 0.1  # the upper half shows the frame too, same units
    capsys.readouterr()
    assert main(["plots", str(tmp_path / "f.work")]) == 0
    written = capsys.readouterr().out.split()
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == [
        "best_worst.png", "comparison_grid.png", "fidelity_histogram.png", "fidelity_timeline.png", "loss_histogram.png",
        "loss_timeline.png"]


@pytest.mark.parametrize("layer, solver, extra", [(0, "headspace", ["--warm-start"]), (1, "embedding", [])])
def test_quarter_mode_frames_are_the_bottom_left_quarter_of_one_map_transformers_computes(tiny_ckpt, tmp_path, layer,
                                                                                        solver, extra):
    out = tmp_path / "q.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--layer", str(layer), "--head", "1",
                 "--mode", "quarter", "--solver", solver, "--steps", "200", "--save-embeddings", *extra, *SMALL]) == 0
    shown, metrics = rendered(tmp_path / "q.work")
    x = np.load(tmp_path / "q.work" / "embeddings.npy")
    assert x.shape == (3, 33, 64)  # 2T + 1 tokens: the sink, T column tokens, T row tokens; one embedding a frame
    assert metrics["settings"]["settings"]["mode"] == "quarter" and metrics["sink_z"] == 2.0 * 16
    Z, black = metrics["sink_z"], metrics["sink_black"]
    for i in range(3):
        a = hf_attentions(tiny_ckpt, x[i])[layer][1]  # [33, 33]: one genuine causal map
        np.testing.assert_allclose(shown[i], np.clip(Z * a[17:, 1:17] - black, 0, 1), atol=1 / 256 + 1e-4)
    targets = read_clip("demo", size=16, max_frames=3).frames
    whole = np.ones((16, 16), bool)
    assert_same_fidelity(shown, targets, whole, metrics["per_frame_psnr"])
    assert metrics["median_psnr"] > 20 and np.abs(shown - targets)[:, np.triu(whole, 1)].mean() < 0.1  # no triangle


def test_colour_sink_shows_true_colours_from_three_heads(tiny_ckpt, tmp_path):
    out = tmp_path / "c.mp4"
    assert main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--heads", "2,0,1", "--color",
                 "--side-by-side", "--solver", "embedding", "--steps", "200", *SMALL]) == 0
    # three heads of d_head 16 fill n_embd 64: no head space, so the embedding solver
    shown, metrics = rendered(tmp_path / "c.work", colour=True)  # [3, 3, T, T]
    assert metrics["heads"] == [2, 0, 1] and np.asarray(metrics["per_frame_head_loss"]).shape == (3, 3)
    frame = iio.imread(tmp_path / "c.work" / "frames" / "frame_000000.png")
    assert frame.shape == (16, 16, 3) and len(np.unique(frame.reshape(-1, 3), axis=0)) > 10  # not gray
    reader = imageio_ffmpeg.read_frames(str(out))
    assert next(reader)["size"] == (32, 16)  # target | attention map, each 16 x 16
    reader.close()
    targets = np.moveaxis(read_clip("demo", size=16, max_frames=3, colour=True).frames, -1, 1)
    tri = np.tri(16, dtype=bool)
    assert_same_fidelity(shown, targets, tri, metrics["per_frame_psnr"])
    assert metrics["median_psnr"] > 15


def test_the_readme_lines_on_the_sink(tiny_ckpt, rng):
    import badapple_jax as bj

    w = bj.pick_head(bj.load_layer(str(tiny_ckpt))[0], head=0)
    T, frame = 16, rng.random((16, 16)).astype(np.float32)
    x = rng.normal(0, 1, (T + 1, 64)).astype(np.float32)
    enc = bj.Sink()
    d, mask = enc.desired(frame), enc.mask(T)
    v = enc.picture(bj.attention(x, w))
    assert d.shape == mask.shape == (T + 1, T + 1) and v.shape == (T, T)
    a = np.asarray(bj.attention(x, w))
    np.testing.assert_allclose(v, np.clip(enc.Z(T) * a[1:, 1:] - enc.black, 0, 1) * np.tri(T), atol=1e-6)
    assert np.isfinite(bj.frame_loss(bj.head_logits(x, w), d, mask))
    assert bj.Settings().encoding(True) == enc and bj.Settings(display="zscore").encoding(True) == bj.ZScore()


@pytest.fixture
def absurd_lr(monkeypatch):
    monkeypatch.setitem(LIMITS, "lr", 1e40)  # every command and Settings.check refuse such rates


def test_render_lists_retried_and_failed_frames(tiny_ckpt, tmp_path, absurd_lr):
    settings = Settings(steps=40, seeds=2, lr=1e38, lr_min=0)
    job = Job(input="demo", output=str(tmp_path / "nan.mp4"), model=str(tiny_ckpt), size=16, max_frames=2,
              settings=settings)
    messages = []
    metrics = render(job, log=messages.append, progress=False)
    assert metrics["retried_frames"] == [0, 1] and metrics["failed_frames"] == [0, 1]
    assert any("frames [0, 1] non-finite again, shown from its best finite state" in m for m in messages)
    assert np.isfinite(metrics["per_frame_loss"]).all()
    with pytest.raises(BadInputError, match="lr must be at most 1e"):
        render(dataclasses.replace(job, settings=dataclasses.replace(settings, lr=1e41)))
