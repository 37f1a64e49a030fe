"""plots.py on small fake work directories: the four PNGs, short and degenerate clips, bad input."""
import io
import json

import imageio.v3 as iio
import numpy as np
import pytest

import badapple_jax.plots as plots
from badapple_jax.errors import BadInputError

T = 32


def fake_workdir(path, loss, fps=15.0, seed=0):
    """A work directory as render leaves it, for the given per-frame losses."""
    rng = np.random.default_rng(seed)
    n = len(loss)
    (path / "frames").mkdir(parents=True)
    tri = np.tri(T, dtype=bool)
    for i in range(n):
        rgb = (rng.random((T, T, 3)) * 255).astype(np.uint8) * tri[..., None]
        iio.imwrite(path / "frames" / f"frame_{i:06d}.png", rgb)
    yy, xx = np.mgrid[:T, :T]
    targets = np.stack([(((xx - 3 * i) ** 2 + (yy - T / 2) ** 2) < (T / 4) ** 2) * 255 for i in range(n)])
    np.savez_compressed(path / "targets.npz", frames=targets.astype(np.uint8))
    metrics = {
        "model": {"name": "random:gpt2-xl"},
        "settings": {"layer": 0, "head": 0, "size": T, "settings": {"steps": 1500, "seeds": 3, "solver": "embedding"}},
        "frames": n,
        "fps": fps,
        "per_frame_loss": [float(v) for v in loss],
    }
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def spread_loss(n, seed=0):
    """n losses log-uniform over 1e-4..2, as in a real run's range."""
    return 10 ** np.random.default_rng(seed).uniform(-4, np.log10(2), n)


def assert_written(workdir, paths):
    assert paths == [workdir / name for name in plots.FIGURES]
    for path in paths:
        image = iio.imread(path)
        assert image.ndim == 3 and image.dtype == np.uint8
        assert 1000 <= image.shape[1] <= 2500 and 300 <= image.shape[0] <= 1500, (path.name, image.shape)
    assert not [p.name for p in workdir.iterdir() if "tmp" in p.name]


def test_writes_the_four_pngs(tmp_path):
    work = fake_workdir(tmp_path / "run.work", spread_loss(12))
    assert_written(work, plots.make_plots(work))
    (work / "loss_timeline.png").write_bytes(b"stale")
    assert_written(work, plots.make_plots(str(work)))  # a second run replaces the first's files


@pytest.mark.parametrize("n", [1, 3])
def test_short_clips(tmp_path, n):
    work = fake_workdir(tmp_path / "run.work", spread_loss(n))
    assert_written(work, plots.make_plots(work))


@pytest.mark.parametrize("n, best, worst", [(1, [0], []), (3, [0, 1], [2]), (7, [0, 1, 2, 3], [6, 5, 4]),
                                            (12, [0, 1, 2, 3], [11, 10, 9, 8])])
def test_best_worst_picks_distinct_frames(tmp_path, monkeypatch, n, best, worst):
    drawn = []
    monkeypatch.setattr(plots, "draw_pairs", lambda fig, run, indices, title: drawn.append(list(indices)))
    work = fake_workdir(tmp_path / "run.work", np.linspace(0.01, 1.0, n))
    plots.best_worst(plots.read_run(work))
    assert drawn == ([best, worst] if worst else [best])


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("loss", [np.full(10, 0.3), np.zeros(10), np.r_[np.zeros(5), spread_loss(5)], [1e-30, 1e30]],
                         ids=["constant", "zero", "some-zero", "extreme"])
def test_degenerate_losses_draw(tmp_path, loss):
    run = plots.read_run(fake_workdir(tmp_path / "run.work", loss))
    for figure in (plots.loss_timeline, plots.loss_histogram):
        figure(run).savefig(io.BytesIO(), format="png", dpi=40)


def break_metrics(text):
    return lambda work: (work / "metrics.json").write_text(text)


BREAKERS = {
    "no-workdir": lambda work: work.rename(work.with_name("elsewhere")),
    "no-metrics": lambda work: (work / "metrics.json").unlink(),
    "bad-json": break_metrics('{"per_frame_loss": [0.1,'),
    "json-list": break_metrics("[1, 2]"),
    "no-loss": break_metrics('{"fps": 15}'),
    "empty-loss": break_metrics('{"fps": 15, "per_frame_loss": []}'),
    "text-loss": break_metrics('{"fps": 15, "per_frame_loss": ["low", "high"]}'),
    "nan-loss": break_metrics('{"fps": 15, "per_frame_loss": [NaN, 0.1, 0.1, 0.1]}'),
    "no-fps": break_metrics('{"per_frame_loss": [0.1, 0.2, 0.3, 0.4]}'),
    "infinite-fps": break_metrics('{"fps": Infinity, "per_frame_loss": [0.1, 0.2, 0.3, 0.4]}'),
    "no-targets": lambda work: (work / "targets.npz").unlink(),
    "corrupt-targets": lambda work: (work / "targets.npz").write_bytes(b"not a zip"),
    "wrong-key": lambda work: np.savez(work / "targets.npz", other=np.zeros((4, T, T), np.uint8)),
    "too-few-targets": lambda work: np.savez(work / "targets.npz", frames=np.zeros((3, T, T), np.uint8)),
    "no-frames-dir": lambda work: [p.unlink() for p in (work / "frames").iterdir()] and (work / "frames").rmdir(),
    "missing-png": lambda work: (work / "frames" / "frame_000002.png").unlink(),
}


@pytest.mark.parametrize("breaker", BREAKERS.values(), ids=BREAKERS.keys())
def test_bad_input_is_one_line_naming_the_path(tmp_path, breaker):
    work = fake_workdir(tmp_path / "run.work", [0.1, 0.2, 0.3, 0.4])
    breaker(work)
    with pytest.raises(BadInputError) as err:
        plots.make_plots(work)
    message = str(err.value)
    assert "\n" not in message and str(work) in message
    assert not list(tmp_path.glob("**/*.png.*")) and not list(tmp_path.glob("**/*tmp*"))
