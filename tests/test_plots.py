"""plots.py on small fake work directories: the six PNGs, short and degenerate clips, bad input."""
import io
import json

import imageio.v3 as iio
import numpy as np
import pytest
from matplotlib.figure import Figure

import badapple_jax.plots as plots
from badapple_jax.display import colourise
from badapple_jax.errors import BadInputError
from badapple_jax.fidelity import summary
from badapple_jax.outputs import mark
from badapple_jax.workdir import WorkDir

T = 32


def fake_workdir(path, loss, fps=15.0, seed=0, blank=0, display="sink"):
    """A work directory as render leaves it, for the given per-frame losses (fidelity drawn at random), its first
    `blank` targets black."""
    rng = np.random.default_rng(seed)
    n = len(loss)
    content = (np.arange(n) >= blank).tolist()
    psnr, ssim = rng.uniform(10, 60, n), rng.uniform(0, 1, n)
    work = WorkDir(path)
    work.frame(0).parent.mkdir(parents=True)
    tri = np.tri(T, dtype=bool)
    for i in range(n):
        rgb = colourise(rng.random((T, T)) * tri)  # magma, as render draws a gray picture
        iio.imwrite(work.frame(i), rgb)
    yy, xx = np.mgrid[:T, :T]
    disc = lambda i: ((xx - 3 * i) ** 2 + (yy - T / 2) ** 2) < (T / 4) ** 2  # noqa: E731
    targets = np.stack([disc(i) * 255 * c for i, c in enumerate(content)])
    np.savez_compressed(work.targets_npz, frames=targets.astype(np.uint8))
    metrics = {
        "model": {"name": "random:gpt2-xl"},
        "settings": {"layer": 0, "head": 0, "size": T, "settings": {"steps": 1500, "seeds": 3, "solver": "embedding"}},
        "frames": n,
        "fps": fps,
        "per_frame_loss": [float(v) for v in loss],
        "display": display,
        "per_frame_psnr": psnr.tolist(),
        "per_frame_ssim": ssim.tolist(),
        "per_frame_content": content,
        **summary(psnr, ssim, content),
        "flicker": 0.02,
        "target_flicker": 0.03,
    }
    work.metrics.write_text(json.dumps(metrics))
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


def test_writes_the_six_pngs(tmp_path):
    work = fake_workdir(tmp_path / "run.work", spread_loss(12))
    (work / "loss_timeline.png").write_bytes(f"stale: {mark('plots')}".encode())  # an earlier run's figure, replaced
    assert_written(work, plots.make_plots(str(work)))
    assert list(plots.FIGURES)[-2:] == ["fidelity_timeline.png", "fidelity_histogram.png"]
    for name in ("fidelity_timeline.png", "fidelity_histogram.png"):
        image = iio.imread(work / name)
        assert image.shape[1] == plots.WIDTH * plots.DPI and 500 <= image.shape[0] <= 900, (name, image.shape)
        assert image.std() > 10  # drawn on, not blank


def test_reads_fidelity(tmp_path):
    run = WorkDir(fake_workdir(tmp_path / "run.work", spread_loss(12))).finished_run()
    assert run.psnr.shape == run.ssim.shape == (12,) and 10 <= run.psnr.min() and run.ssim.max() <= 1
    assert (run.flicker, run.target_flicker, run.display) == (0.02, 0.03, "sink")
    assert "sink display" in run.caption


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
    plots.best_worst(WorkDir(work).finished_run())
    assert drawn == ([best, worst] if worst else [best])


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("loss", [np.full(10, 0.3), np.zeros(10), np.r_[np.zeros(5), spread_loss(5)], [1e-30, 1e30]],
                         ids=["constant", "zero", "some-zero", "extreme"])
def test_degenerate_losses_draw(tmp_path, loss):
    run = WorkDir(fake_workdir(tmp_path / "run.work", loss)).finished_run()
    for figure in (plots.loss_timeline, plots.loss_histogram):
        figure(run).savefig(io.BytesIO(), format="png", dpi=40)


def set_fidelity(work, **fields):
    """Rewrite metrics.json with the fields changed; None removes one."""
    metrics = json.loads((work / "metrics.json").read_text())
    metrics.update(fields)
    (work / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if v is not None}))


@pytest.mark.filterwarnings("error")
def test_identical_frames_draw(tmp_path):
    """Every frame shown exactly: PSNR at its cap, SSIM 1, no flicker on either side (no 0 / 0)."""
    work = fake_workdir(tmp_path / "run.work", [0.1, 0.2, 0.3, 0.4])
    set_fidelity(work, per_frame_psnr=[100.0] * 4, per_frame_ssim=[1.0] * 4, flicker=0.0, target_flicker=0.0)
    run = WorkDir(work).finished_run()
    for figure in (plots.fidelity_timeline, plots.fidelity_histogram):
        figure(run).savefig(io.BytesIO(), format="png", dpi=40)


def test_loss_thresholds_are_the_displays(tmp_path):
    """The sink display's losses (~1e-6) against its own thresholds, not the reference's 0.5 (always 100%)."""
    sink = WorkDir(fake_workdir(tmp_path / "sink.work", 10 ** np.linspace(-7, -3, 20))).finished_run()
    lines = plots.loss_summary(sink)
    assert lines[:2] == ["under 1e-05: 50.0% of frames", "under 0.0001: 75.0% of frames"]
    assert "-10 log10 L dB" in lines[2]
    zscore = fake_workdir(tmp_path / "zscore.work", np.linspace(0.05, 1.95, 20), display="zscore")
    zscore = WorkDir(zscore).finished_run()
    assert plots.loss_summary(zscore)[:3] == ["under 0.5: 25.0% of frames", "under 1: 50.0% of frames",
                                              "(the write-up's thresholds)"]
    other = WorkDir(fake_workdir(tmp_path / "other.work", [0.1, 0.2], display="other")).finished_run()
    assert plots.loss_summary(other)[0].startswith("mean ")  # no thresholds to claim for a display we do not know


def test_blank_frames_do_not_lift_the_fidelity_summary(tmp_path, monkeypatch):
    work = fake_workdir(tmp_path / "run.work", spread_loss(12), blank=5)
    set_fidelity(work, per_frame_psnr=[90.0] * 5 + [30.0 + i for i in range(7)])
    run = WorkDir(work).finished_run()
    lines = plots.fidelity_summary(run)
    assert lines[:2] == ["over 7 content frames", "PSNR mean 33.0 dB, median 33.0 dB"]
    assert lines[3].startswith("5 blank frames apart; pooled PSNR ")
    assert lines[-2:] == ["best 36.0 dB (frame 11)", "worst 30.0 dB (frame 5)"]
    labels = [t.get_text() for t in plots.fidelity_histogram(run).axes[0].get_legend().get_texts()]
    assert labels == ["7 content frames", "5 blank (not in the median)", "median 33.0 dB over content frames"]
    drawn = []
    monkeypatch.setattr(plots, "draw_pairs", lambda fig, run, indices, title: drawn.extend(indices))
    plots.best_worst(run)
    assert min(drawn) >= 5  # the blank frames' losses are neither best nor worst


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

FIDELITY_BREAKERS = {  # id: (the field the message must name, the change to metrics.json)
    "no-psnr": ("per_frame_psnr", dict(per_frame_psnr=None)),
    "text-psnr": ("per_frame_psnr", dict(per_frame_psnr="high")),
    "short-psnr": ("per_frame_psnr", dict(per_frame_psnr=[30.0, 30.0, 30.0])),
    "nan-psnr": ("per_frame_psnr", dict(per_frame_psnr=[30.0, float("nan"), 30.0, 30.0])),
    "inf-psnr": ("per_frame_psnr", dict(per_frame_psnr=[30.0, float("inf"), 30.0, 30.0])),
    "no-ssim": ("per_frame_ssim", dict(per_frame_ssim=None)),
    "long-ssim": ("per_frame_ssim", dict(per_frame_ssim=[0.5] * 5)),
    "nan-ssim": ("per_frame_ssim", dict(per_frame_ssim=[0.5, 0.5, float("nan"), 0.5])),
    "ssim-3": ("per_frame_ssim", dict(per_frame_ssim=[0.5, 3.0, 0.5, 0.5])),
    "ssim-below-minus-1": ("per_frame_ssim", dict(per_frame_ssim=[0.5, -1.5, 0.5, 0.5])),
    "no-flicker": ("flicker", dict(flicker=None)),
    "negative-flicker": ("flicker", dict(flicker=-0.1)),
    "nan-flicker": ("flicker", dict(flicker=float("nan"))),
    "text-target-flicker": ("target_flicker", dict(target_flicker="low")),
    "negative-target-flicker": ("target_flicker", dict(target_flicker=-1e-3)),
    "no-display": ("display", dict(display=None)),
    "no-content": ("per_frame_content", dict(per_frame_content=None)),
    "short-content": ("per_frame_content", dict(per_frame_content=[True] * 3)),
    "number-content": ("per_frame_content", dict(per_frame_content=[1, 1, 1, 1])),
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


@pytest.mark.parametrize("field, fields", FIDELITY_BREAKERS.values(), ids=FIDELITY_BREAKERS.keys())
def test_bad_fidelity_names_the_field(tmp_path, field, fields):
    work = fake_workdir(tmp_path / "run.work", [0.1, 0.2, 0.3, 0.4])
    set_fidelity(work, **fields)
    with pytest.raises(BadInputError) as err:
        plots.make_plots(work)
    message = str(err.value)
    assert "\n" not in message and str(work) in message
    assert f" {field} " in message or f" {field}." in message  # not "target_flicker" for "flicker"
    assert not list(work.glob("*.png*")) and not list(tmp_path.glob("**/*tmp*"))


def test_a_failing_figure_writes_none(tmp_path, monkeypatch):
    work = fake_workdir(tmp_path / "run.work", spread_loss(4))
    monkeypatch.setattr(plots, "FIGURES", {"first.png": lambda run: Figure(figsize=(1, 1)),
                                           "last.png": lambda run: 1 / 0})  # drawn after the first would be written
    with pytest.raises(ZeroDivisionError):
        plots.make_plots(work)
    assert not list(work.glob("*.png*"))


def test_damage_the_figures_meet_late_is_one_line_and_writes_nothing(tmp_path):
    """A frame PNG that cannot be read, a metrics.json of the wrong shape, an unwritable directory (issue 13)."""
    work = fake_workdir(tmp_path / "run.work", spread_loss(6))
    (work / "frames" / "frame_000003.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(BadInputError, match="Cannot read .*frame_000003.png"):
        plots.make_plots(work)
    assert not [p for p in work.iterdir() if p.suffix == ".png"]

    work = fake_workdir(tmp_path / "shape.work", spread_loss(4))
    metrics = json.loads((work / "metrics.json").read_text())
    (work / "metrics.json").write_text(json.dumps({**metrics, "settings": [1, 2], "model": "x"}))
    assert len(plots.make_plots(work)) == len(plots.FIGURES)  # the caption says "?" for what it cannot read
    (work / "metrics.json").write_text(json.dumps([metrics]))
    with pytest.raises(BadInputError, match="not the metrics of a render"):
        plots.make_plots(work)

    work = fake_workdir(tmp_path / "blocked.work", spread_loss(4))
    (work / "fidelity_timeline.png").mkdir()  # a name that cannot be written (as root, too, unlike a chmod)
    with pytest.raises(BadInputError, match="fidelity_timeline.png is a directory"):
        plots.make_plots(work)
