"""survey.py: a head that cannot display ranks last (sink and zscore displays), vmap over heads equals one head
at a time (loss and fidelity), rows ranked by mean PSNR with their spread and paired interval against NumPy and
scipy, each row's solver, sample frames among those with content, the CLI path."""
import argparse
import json

import imageio.v3 as iio
import numpy as np
import pytest
import scipy.stats

from badapple_jax.chunks import optimize_frames, plan
from badapple_jax.errors import BadInputError
from badapple_jax.outputs import written_by
from badapple_jax.loss import frame_loss
from badapple_jax.optimize import Settings
from badapple_jax.fidelity import has_content
from badapple_jax.survey import add_parser, markdown, parse_layers, sample_frames, survey, t_interval
from badapple_jax.video import read_clip
from badapple_jax.model import pick_head
from badapple_jax.weights import load_layer

from conftest import TINY
from test_weights import rewrite

E, D, DEAD = TINY["n_embd"], TINY["n_embd"] // TINY["n_head"], 2
FAST = dict(steps=8, seeds=1)  # with 2 frames of 16x16: the CLI test below reuses the compiled layer-0 program


@pytest.fixture(scope="module")
def dead_ckpt(tiny_ckpt, tmp_path_factory):
    """The tiny checkpoint with layer 0 head 2's K weights and bias zeroed: k = 0, so its logits are 0 and
    no embedding can change them."""
    def edit(t):
        k = slice(E + DEAD * D, E + (DEAD + 1) * D)
        t["h.0.attn.c_attn.weight"][:, k] = 0
        t["h.0.attn.c_attn.bias"][k] = 0
        return t

    return rewrite(tiny_ckpt, tmp_path_factory.mktemp("dead") / "ckpt", edit)


@pytest.fixture(scope="module")
def frames():
    clip = read_clip("demo", size=16)
    return clip.frames[sample_frames(np.ones(len(clip.frames), bool), 2)]


SURVEYS = {  # name -> (layers, settings): each solver and each display once, three compiled programs in all
    "headspace-sink": ([0, 1], Settings(**FAST, solver="headspace", display="sink")),  # embedding above layer 0
    "embedding-zscore": ([0], Settings(**FAST, solver="embedding", display="zscore")),
}


@pytest.fixture(scope="module")
def surveys(dead_ckpt, frames):
    """name -> rows, for each survey of SURVEYS."""
    return {name: survey(str(dead_ckpt), layers, frames, settings, seed=0)
            for name, (layers, settings) in SURVEYS.items()}


@pytest.mark.parametrize("name", SURVEYS)
def test_dead_head_ranks_last(surveys, frames, name):
    settings = SURVEYS[name][1]
    layer0 = [r for r in surveys[name] if r["layer"] == 0]
    dead, others = layer0[-1], layer0[:-1]
    assert dead["head"] == DEAD
    encoding = settings.encoding(True)
    d = encoding.desired(frames)
    zero_loss = frame_loss(np.zeros_like(d), d, encoding.mask(frames.shape[-1]))
    np.testing.assert_allclose(dead["mean_loss"], np.mean(zero_loss), rtol=1e-5)
    assert dead["mean_loss"] > 3 * max(r["mean_loss"] for r in others)
    assert dead["mean_psnr"] < min(r["mean_psnr"] for r in others)
    assert {r["solver"] for r in layer0} == {settings.solver}


@pytest.mark.parametrize("solver, layer", [("headspace", 0), ("embedding", 1)])  # stacked spaces; shared blocks
def test_vmap_over_heads_equals_one_head(surveys, dead_ckpt, frames, solver, layer):
    head = 1
    w = pick_head(load_layer(str(dead_ckpt), layer)[0], head)
    settings = Settings(**FAST, solver=solver)
    program = plan(w, frames.shape[-1], len(frames), settings, chunk_size=len(frames))
    (_, result), = optimize_frames(program, frames, seed=0)
    row, = [r for r in surveys["headspace-sink"] if (r["layer"], r["head"]) == (layer, head)]
    assert row["solver"] == solver
    np.testing.assert_allclose([row["mean_loss"], row["median_loss"], row["max_loss"]],
                               [result.loss.mean(), np.median(result.loss), result.loss.max()],
                               rtol=1e-5)
    np.testing.assert_allclose([row["mean_psnr"], row["median_psnr"]], [result.psnr.mean(), np.median(result.psnr)],
                               rtol=1e-4)
    np.testing.assert_allclose(row["per_frame_psnr"], result.psnr, rtol=1e-4)
    np.testing.assert_allclose(row["mean_ssim"], result.ssim.mean(), atol=1e-4)


def test_two_layers(surveys):
    rows = surveys["headspace-sink"]
    assert len(rows) == 2 * TINY["n_head"]
    assert sorted((r["layer"], r["head"]) for r in rows) == [(L, h) for L in (0, 1) for h in range(TINY["n_head"])]
    assert all(np.isfinite([r["mean_loss"], r["median_loss"], r["max_loss"]]).all() for r in rows)
    assert all(r["median_loss"] <= r["max_loss"] and r["mean_loss"] <= r["max_loss"] for r in rows)
    assert {r["layer"]: r["solver"] for r in rows} == {0: "headspace", 1: "embedding"}
    table = markdown(rows, "caption", "note").splitlines()
    header = [cell.strip() for cell in table[5].strip("|").split("|")]
    cells = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in table[7:]]
    assert [(int(c["layer"]), c["solver"]) for c in cells] == [(r["layer"], r["solver"]) for r in rows]


@pytest.mark.parametrize("name", SURVEYS)
def test_spread_and_ties_against_numpy(surveys, frames, name):
    """Each row's summaries, standard deviation and paired 95% t-interval to the best, recomputed from its
    per-frame PSNR with NumPy (t_{0.975, 1} = 12.7062 from the tables: two frames)."""
    rows = surveys[name]
    best = np.array(rows[0]["per_frame_psnr"])
    for r in rows:
        p = np.array(r["per_frame_psnr"])
        assert len(p) == len(frames) and r["content_frames"] == len(frames) and r["blank_frames"] == 0
        np.testing.assert_allclose([r["mean_psnr"], r["median_psnr"], r["sd_psnr"]],
                                   [p.mean(), np.median(p), np.std(p, ddof=1)], rtol=1e-12)
        d = p - best
        half = 12.706204736 * np.std(d, ddof=1) / np.sqrt(len(d))
        np.testing.assert_allclose(r["vs_best_ci"], [d.mean() - half, d.mean() + half], rtol=1e-9, atol=1e-9)
        assert r["vs_best"] == pytest.approx(d.mean()) and r["tie_with_best"] == (abs(d.mean()) <= half)
    assert rows[0]["vs_best"] == 0 and rows[0]["tie_with_best"]


def test_t_interval_against_scipy():
    x = np.random.default_rng(0).normal(60, 3, size=8)
    expected = scipy.stats.ttest_1samp(x, 0).confidence_interval(0.95)
    np.testing.assert_allclose(t_interval(x), [expected.low, expected.high], rtol=1e-12)
    assert t_interval(x[:1]) is None


def test_sample_frames_skip_blank_frames():
    """Demo frames with black ones interleaved: samples are content frames only, spread evenly over them."""
    demo = read_clip("demo", size=16).frames[:12]
    clip = np.zeros((24, 16, 16), np.float32)
    clip[1::2] = demo  # frames 0, 2, 4, ... black
    content = has_content(clip, Settings().encoding(True).region(16))
    assert content.tolist() == [False, True] * 12
    assert sample_frames(content, 4).tolist() == [1, 9, 15, 23]  # content frames 0, 4, 7, 11 (0, 3.67, 7.33, 11)
    assert sample_frames(content, 30).tolist() == list(range(1, 24, 2))  # fewer than asked: every content frame
    assert sample_frames(np.zeros(5, bool), 3).tolist() == []

@pytest.mark.parametrize("name", SURVEYS)
def test_ranked_by_psnr(surveys, name):
    rows = surveys[name]
    psnr = [r["mean_psnr"] for r in rows]
    assert psnr == sorted(psnr, reverse=True) and np.isfinite(psnr).all()
    assert len(set(psnr)) > 1  # the ranking tells heads apart
    assert all(np.isfinite(r["median_psnr"]) and -1 <= r["mean_ssim"] <= 1 for r in rows)


def test_parse_layers():
    assert parse_layers("all", TINY["n_layer"]) == [0, 1]
    for bad in ("x", "0,", "2", "-1", ""):
        with pytest.raises(BadInputError, match="layers") as err:
            parse_layers(bad, 2)
        assert "\n" not in str(err.value)
    assert sample_frames(np.ones(30, bool), 4).tolist() == [0, 10, 19, 29]
    assert sample_frames(np.ones(2, bool), 8).tolist() == [0, 1]


def parse(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def image_clip(folder, content_at, n):
    """A directory of n 16x16 PNGs, demo frames at `content_at` and black elsewhere."""
    folder.mkdir()
    demo = read_clip("demo", size=16).frames
    for i in range(n):
        frame = demo[i] if i in content_at else np.zeros((16, 16))
        iio.imwrite(folder / f"{i:02d}.png", (frame * 255).round().astype(np.uint8))
    return folder


def test_cli(tiny_ckpt, tmp_path, capsys):
    clip = image_clip(tmp_path / "clip", content_at=(1, 4), n=6)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["survey", str(clip), "--model", str(tiny_ckpt), "--layers", "0", "--frames", "2", "--size", "16",
            "--steps", "8", "-o", str(out_dir / "s")]
    args = parse(argv)
    assert args.func(args) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "wrote" in out and len(out.splitlines()) == 1 + TINY["n_head"] + 1
    assert "frames [1, 4] of 6 (2 with content)" in captured.err and "note" not in captured.err
    summary = json.loads((out_dir / "s.json").read_text())
    assert len(summary["rows"]) == TINY["n_head"] and summary["frames"] == [1, 4]  # the black frames skipped
    assert (summary["frames_asked"], summary["clip_frames"], summary["clip_content_frames"]) == (2, 6, 2)
    assert "frames_note" not in summary and {r["solver"] for r in summary["rows"]} == {"qk"}
    table = (out_dir / "s.md").read_text().splitlines()
    assert table[0] == "<!-- written by badapple-jax survey -->"  # the mark that lets a rerun replace it
    assert "2 content frames" in table[1] and "standard deviation" in table[3] and "solver" in table[3]
    assert table[5] == ("| rank | layer | head | solver | mean PSNR | PSNR sd | mean - best [95% t-interval] | "
                        "median PSNR | mean SSIM | mean loss | median loss | max loss |")
    assert len(table) == 7 + TINY["n_head"]
    assert summary["settings"]["display"] == "sink" and summary["sink_z"] == Settings().encoding(True).constants(16)["sink_z"]
    fast = [summary[k][f] for k in ("settings", "settings_above_layer_0") for f in ("solver", "lr", "b2", "schedule")]
    assert fast == ["qk", 0.5, 0.85, "cosine", "embedding", 0.1, 0.9, "cosine"]  # --preset fast's optimiser
    rows = [line.split("|") for line in table[7:]]
    assert [r[4].strip() for r in rows] == ["qk"] * TINY["n_head"]
    psnr = [float(r[5]) for r in rows]
    assert psnr == sorted(psnr, reverse=True)
    png = iio.imread(out_dir / "s.png")
    assert png.ndim == 3 and png.shape[0] > 100 and png.shape[1] > 100
    assert sorted(p.name for p in out_dir.iterdir()) == ["s.json", "s.md", "s.png"]  # no temp files left
    assert [written_by(out_dir / f"s.{ext}") for ext in ("json", "md", "png")] == ["survey"] * 3
    more = parse(argv + ["--frames", "3"])
    assert more.func(more) == 0  # a rerun replaces its own files; the clip has 2 content frames, not 3
    assert "note: only 2 of the 6 frames have content: surveying 2, not 3" in capsys.readouterr().err
    summary = json.loads((out_dir / "s.json").read_text())
    assert summary["frames"] == [1, 4] and summary["frames_asked"] == 3 and "only 2" in summary["frames_note"]
    for option, value in [("--layers", "x"), ("--layers", "2"), ("--frames", "0"), ("--steps", "3"),
                          ("--size", "65"), ("--size", "64"), ("--lr", "0"), ("-o", ".")]:
        bad = parse(argv + [option, value])
        with pytest.raises(BadInputError) as err:
            bad.func(bad)
        assert "\n" not in str(err.value)


def test_clip_without_content_is_refused(tiny_ckpt, tmp_path, capsys):
    from badapple_jax.cli import main

    clip = image_clip(tmp_path / "clip", content_at=(), n=3)
    assert main(["survey", str(clip), "--model", str(tiny_ckpt), "--size", "16", "-o", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "No frame of the 3" in err and "has content" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]


@pytest.mark.parametrize("args, expected", [
    (["--seeds", "1000000"], "--seeds must be at most 10000"),
    (["--steps", "100000000"], "--steps must be at most 10000000"),
    (["--seed", "-1"], "--seed must be in 0..2147483647"),
    (["--fps", "0"], "--fps must be in [0.1, 1000] frames per second"),
    (["--lr", "1e-30"], "--lr 1e-30 is below --lr-min"),
    (["--frames", "0"], "--frames must be in 1..256"),
], ids=["seeds", "steps", "seed", "fps", "lr", "frames"])
def test_survey_shares_renders_option_rules(args, expected, tmp_path, capsys):
    from badapple_jax.cli import main

    assert main(["survey", "demo", "--model", "random:gpt2", "-o", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_survey_output_naming_a_directory_is_refused(tmp_path, capsys):
    from badapple_jax.cli import main

    assert main(["survey", "demo", "--model", "random:gpt2", "-o", str(tmp_path) + "/"]) == 2
    assert "-o takes a file name prefix" in capsys.readouterr().err
    assert not list(tmp_path.parent.glob(tmp_path.name + ".*"))  # nothing written beside the directory
