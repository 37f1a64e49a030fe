"""survey.py: a head that cannot display ranks last (sink and zscore displays), vmap over heads equals one head
at a time (loss and fidelity), rows ranked by mean PSNR, the CLI path."""
import argparse
import json

import imageio.v3 as iio
import numpy as np
import pytest

from badapple_jax.chunks import optimize_frames
from badapple_jax.errors import BadInputError
from badapple_jax.outputs import written_by
from badapple_jax.loss import frame_loss
from badapple_jax.optimize import Settings
from badapple_jax.survey import add_parser, parse_layers, sample_frames, survey
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
    return clip.frames[sample_frames(len(clip.frames), 2)]


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
    (_, result), = optimize_frames(w, frames, settings, seed=0, chunk_size=len(frames), progress=False)
    row, = [r for r in surveys["headspace-sink"] if (r["layer"], r["head"]) == (layer, head)]
    assert row["solver"] == solver
    np.testing.assert_allclose([row["mean_loss"], row["median_loss"], row["max_loss"]],
                               [result.loss.mean(), np.median(result.loss), result.loss.max()],
                               rtol=1e-5)
    np.testing.assert_allclose([row["mean_psnr"], row["median_psnr"]], [result.psnr.mean(), np.median(result.psnr)],
                               rtol=1e-4)
    np.testing.assert_allclose(row["mean_ssim"], result.ssim.mean(), atol=1e-4)


def test_two_layers(surveys):
    rows = surveys["headspace-sink"]
    assert len(rows) == 2 * TINY["n_head"]
    assert sorted((r["layer"], r["head"]) for r in rows) == [(L, h) for L in (0, 1) for h in range(TINY["n_head"])]
    assert all(np.isfinite([r["mean_loss"], r["median_loss"], r["max_loss"]]).all() for r in rows)
    assert all(r["median_loss"] <= r["max_loss"] and r["mean_loss"] <= r["max_loss"] for r in rows)
    assert {r["layer"]: r["solver"] for r in rows} == {0: "headspace", 1: "embedding"}


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
    assert sample_frames(30, 4).tolist() == [0, 10, 19, 29]
    assert sample_frames(2, 8).tolist() == [0, 1]


def parse(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli(tiny_ckpt, tmp_path, capsys):
    argv = ["survey", "demo", "--model", str(tiny_ckpt), "--layers", "0", "--frames", "2", "--size", "16",
            "--steps", "8", "-o", str(tmp_path / "s")]
    args = parse(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and len(out.splitlines()) == 1 + TINY["n_head"] + 1
    summary = json.loads((tmp_path / "s.json").read_text())
    assert len(summary["rows"]) == TINY["n_head"] and summary["frames"] == [0, 29]
    table = (tmp_path / "s.md").read_text().splitlines()
    assert table[0] == "<!-- written by badapple-jax survey -->"  # the mark that lets a rerun replace it
    assert table[3] == ("| rank | layer | head | mean PSNR | median PSNR | mean SSIM | mean loss | median loss | "
                        "max loss |") and len(table) == 5 + TINY["n_head"]
    assert summary["settings"]["display"] == "sink" and summary["sink_z"] == Settings().encoding(True).constants(16)["sink_z"]
    fast = [summary[k][f] for k in ("settings", "settings_above_layer_0") for f in ("solver", "lr", "b2", "schedule")]
    assert fast == ["headspace", 0.5, 0.9, "cosine", "embedding", 0.1, 0.9, "cosine"]  # --preset fast's optimiser
    psnr = [float(line.split("|")[4]) for line in table[5:]]
    assert psnr == sorted(psnr, reverse=True)
    png = iio.imread(tmp_path / "s.png")
    assert png.ndim == 3 and png.shape[0] > 100 and png.shape[1] > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.md", "s.png"]  # no temp files left
    assert [written_by(tmp_path / f"s.{ext}") for ext in ("json", "md", "png")] == ["survey"] * 3
    assert args.func(args) == 0  # a rerun replaces its own files
    for option, value in [("--layers", "x"), ("--layers", "2"), ("--frames", "0"), ("--steps", "3"),
                          ("--size", "65"), ("--size", "64"), ("--lr", "0"), ("-o", ".")]:
        bad = parse(argv + [option, value])
        with pytest.raises(BadInputError) as err:
            bad.func(bad)
        assert "\n" not in str(err.value)


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
