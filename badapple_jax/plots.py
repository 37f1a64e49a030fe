"""A finished work directory -> the write-up's six figures, as PNGs beside its metrics.json.

loss_timeline.png       per-frame loss across the video, with a one-second rolling mean
loss_histogram.png      the loss distribution, its 50/81/95th percentiles and summary numbers
comparison_grid.png     targets above their displays, up to 8 frames evenly spaced over the video
best_worst.png          the same pairs for the 4 lowest- and 4 highest-loss frames
fidelity_timeline.png   per-frame PSNR and SSIM of the shown frame (SPEC section 12), with rolling means
fidelity_histogram.png  the PSNR and SSIM distributions, their medians, flicker beside the targets'

Figures are plain `matplotlib.figure.Figure`s (no pyplot state); PNG output goes through Agg. All six
are rendered in memory before the first is written, so a failure leaves no mix of old and new figures.
"""
import dataclasses
import io
import json
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from matplotlib.figure import Figure

from badapple_jax.display import gray_of
from badapple_jax.errors import BadInputError
from badapple_jax.files import write_atomic
from badapple_jax.outputs import claim, mark

DPI = 120
WIDTH = 14.0  # inches: 1680 px at DPI
LOG_SPAN = 100.0  # log axes once max / min positive loss exceeds 2 decades
PERCENTILES = (50, 81, 95)  # the write-up's: 81% of Bad Apple's frames under 0.5, 95% under 1.0
THRESHOLDS = (0.5, 1.0)
GRID_FRAMES = 8
BEST_WORST = 4
LOSS_LABEL = "loss (MSE of row-centred logits)"
PSNR_LABEL = "PSNR (dB, peak 1)"
SSIM_LABEL = "SSIM"
RERUN = " (made before fidelity was measured? rerun render)"


@dataclasses.dataclass(frozen=True)
class Run:
    """What the figures need from a work directory."""

    workdir: Path
    loss: np.ndarray  # [N] per-frame loss, frame order
    psnr: np.ndarray  # [N] dB, shown gray frame against target over the shown region
    ssim: np.ndarray  # [N] in [-1, 1], the same comparison
    flicker: float  # mean |v_t - v_(t-1)| of the shown frames
    target_flicker: float  # the same of the targets
    display: str  # how attention became a picture: "sink" or "zscore"
    fps: float
    targets: np.ndarray  # [N, T, T] uint8, white = 255
    caption: str  # model, head and settings, for titles
    colour: bool  # three heads as R, G and B: the frames are any RGB, not magma

    def shown(self, i: int) -> np.ndarray:
        """[T, T, 3] uint8: the attention map frame i was rendered as (a damaged PNG is a BadInputError)."""
        return read_frame(frame_png(self.workdir, i), self.colour, self.targets.shape[-1])


def frame_png(work: Path, i: int) -> Path:
    return work / "frames" / f"frame_{i:06d}.png"


def read_frame(path: Path, colour: bool, size: int | None = None) -> np.ndarray:
    """A frame PNG as render writes it: [T, T, 3] uint8 (T = `size` if given), in magma's colours unless `colour`.
    Anything else is a BadInputError naming the file."""
    try:
        frame = iio.imread(path, plugin="pillow")  # ours are PNGs: no search through every other format
    except Exception as err:  # imageio raises whatever its plugin does for a truncated or foreign file
        why = err.strerror if isinstance(err, OSError) and err.strerror else "it is not a decodable PNG image"
        raise BadInputError(f"Cannot read {path}: {why}.") from None
    T = frame.shape[0] if size is None else size
    if frame.dtype != np.uint8 or frame.shape != (T, T, 3):
        expected = "[T, T, 3]" if size is None else f"[{T}, {T}, 3] as the other frames"
        raise BadInputError(f"{path} is {frame.dtype} {list(frame.shape)}, not a frame of this render "
                            f"(uint8 {expected}).")
    if not colour:
        try:
            gray_of(frame)  # decodes only a picture render drew
        except ValueError:
            raise BadInputError(f"{path} is not a frame of this render: it holds colours outside the magma "
                                "colormap.") from None
    return frame


def read_run(workdir) -> Run:
    """Load and check a work directory; anything unusable is a one-line BadInputError naming the path."""
    work = Path(workdir)
    if not work.is_dir():
        if work.exists():
            raise BadInputError(f"{work} is {'a file' if work.is_file() else 'not a directory'}, not a work directory.")
        raise BadInputError(f"Work directory {work} does not exist.")
    path = work / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"No metrics.json in {work}: is it the work directory of a finished render?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInputError(f"Cannot read {path}: {' '.join(str(err).split())}.") from None
    if not isinstance(metrics, dict):
        raise BadInputError(f"{path} is not the metrics of a render (a JSON {type(metrics).__name__}, not an object).")
    loss = per_frame(metrics, "per_frame_loss", path, low=0.0)
    fps = metrics.get("fps")
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise BadInputError(f"{path} has no positive fps.")
    psnr = per_frame(metrics, "per_frame_psnr", path, size=loss.size)
    ssim = per_frame(metrics, "per_frame_ssim", path, size=loss.size, low=-1.0, high=1.0)
    flicker, target_flicker = (amount(metrics, key, path) for key in ("flicker", "target_flicker"))
    display = metrics.get("display")
    if not (isinstance(display, str) and display):
        raise BadInputError(f"{path} has no display name, sink or zscore{'' if 'display' in metrics else RERUN}.")
    path = work / "targets.npz"
    try:
        with np.load(path) as npz:
            targets = npz["frames"]
    except FileNotFoundError:
        raise BadInputError(f"No targets.npz in {work}: it is written by render at the end of a run.") from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise BadInputError(f"Cannot read frames from {path}: {' '.join(str(err).split())}.") from None
    missing = [i for i in range(loss.size) if not frame_png(work, i).is_file()]
    if missing:
        raise BadInputError(f"{work / 'frames'} lacks frame_{missing[0]:06d}.png ({len(missing)} of {loss.size} "
                            f"frame PNGs missing).")
    job = metrics.get("settings")
    colour = isinstance(job, dict) and job.get("color") is True
    T = read_frame(frame_png(work, 0), colour).shape[0]
    for i in range(1, loss.size):
        read_frame(frame_png(work, i), colour, T)
    if targets.dtype != np.uint8 or targets.shape != (loss.size, T, T):
        raise BadInputError(f"{path} holds {targets.dtype} frames of shape {list(targets.shape)}, expected uint8 "
                            f"[{loss.size}, {T}, {T}]: {loss.size} as per_frame_loss, {T}x{T} as the frame PNGs.")
    return Run(work, loss, psnr, ssim, flicker, target_flicker, display, float(fps), targets, caption(metrics), colour)


def per_frame(metrics, key: str, path: Path, size=None, low=-np.inf, high=np.inf) -> np.ndarray:
    """metrics[key] as [N] floats, all finite and in [low, high] (N = size when given), else a BadInputError.

    Fidelity keys (given a size) missing altogether mean a work directory older than SPEC section 12."""
    try:
        values = np.asarray(metrics[key], dtype=float)
    except (TypeError, KeyError, ValueError):
        values = np.zeros((0,))
    if values.ndim != 1 or values.size == 0:
        hint = RERUN if size is not None and key not in metrics else ""
        raise BadInputError(f"{path} has no {key} list of numbers{hint}.")
    if size is not None and values.size != size:
        raise BadInputError(f"{path}: {key} has {values.size} values for {size} frames of per_frame_loss.")
    if not np.all(np.isfinite(values) & (values >= low) & (values <= high)):
        rule = f" in [{low:g}, {high:g}]" if np.isfinite(high) else f" >= {low:g}" if np.isfinite(low) else ""
        raise BadInputError(f"{path}: {key} has values that are not finite numbers{rule}.")
    return values


def amount(metrics: dict, key: str, path: Path) -> float:
    """metrics[key] as a finite float >= 0, else a BadInputError."""
    if key not in metrics:
        raise BadInputError(f"{path} has no {key}{RERUN}.")
    value = metrics[key]
    if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
        raise BadInputError(f"{path}: {key} is {json.dumps(value)}, not a finite number >= 0.")
    return float(value)


def caption(metrics: dict) -> str:
    """'random:gpt2-xl, layer 0 head 0, 256x256, sink display, embedding solver, 1500 steps x 3 seeds'."""
    part = lambda d, key: d.get(key) if isinstance(d.get(key), dict) else {}  # noqa: E731  (a damaged file: "?")
    job = part(metrics, "settings")
    opt = part(job, "settings")
    size = job.get("size", "?")
    return (f"{part(metrics, 'model').get('name', 'unknown model')}, layer {job.get('layer', '?')} "
            f"head {job.get('head', '?')}, {size}x{size}, {metrics.get('display', '?')} display, "
            f"{opt.get('solver', '?')} solver, {opt.get('steps', '?')} steps x {opt.get('seeds', '?')} seeds")


def spans_decades(loss: np.ndarray) -> bool:
    """Whether the positive losses span more than 2 decades (then axes go logarithmic)."""
    positive = loss[loss > 0]
    return positive.size > 0 and positive.max() / positive.min() > LOG_SPAN


def floored(loss: np.ndarray) -> np.ndarray:
    """Zeros raised to the smallest positive loss, so they stay on a log axis."""
    positive = loss[loss > 0]
    return np.maximum(loss, positive.min()) if positive.size else loss


def rolling_mean(loss: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over `window` frames; near the ends, over the frames there are."""
    kernel = np.ones(window)
    return np.convolve(loss, kernel, "same") / np.convolve(np.ones_like(loss), kernel, "same")


def loss_timeline(run: Run) -> Figure:
    """Loss against frame index (seconds on top), per frame and as a one-second rolling mean."""
    fig = Figure(figsize=(WIDTH, 5.0), layout="constrained")
    ax = fig.add_subplot()
    log = spans_decades(run.loss)
    loss = floored(run.loss) if log else run.loss
    window = int(np.clip(round(run.fps), 1, loss.size))
    frames = np.arange(loss.size)
    ax.plot(frames, loss, lw=0.6, color="tab:blue", alpha=0.6, label="per frame")
    ax.plot(frames, rolling_mean(loss, window), lw=2.0, color="tab:red",
            label=f"rolling mean over {window} frames ({window / run.fps:.3g} s)")
    ax.set_yscale("log" if log else "linear")
    ax.set_xlim(0, max(loss.size - 1, 1))
    ax.set_xlabel("frame index")
    ax.set_ylabel(LOSS_LABEL + (", log scale" if log else ""))
    seconds = ax.secondary_xaxis("top", functions=(lambda f: f / run.fps, lambda s: s * run.fps))
    seconds.set_xlabel(f"time (s) at {run.fps:g} fps")
    ax.grid(alpha=0.3, which="both" if log else "major")
    fig.legend(loc="outside lower center", ncols=2)
    ax.set_title(f"Per-frame loss over the video ({loss.size} frames): {run.caption}")
    return fig


def loss_histogram(run: Run) -> Figure:
    """How many frames reach each loss, with percentiles and a summary beside it."""
    fig = Figure(figsize=(WIDTH, 5.5), layout="constrained")
    ax, side = fig.subplots(1, 2, width_ratios=[4, 1])
    log = spans_decades(run.loss)
    loss = floored(run.loss) if log else run.loss
    count = int(np.clip(2 * np.sqrt(loss.size), 10, 60))
    bins = np.geomspace(loss.min(), loss.max(), count + 1) if log else count
    ax.hist(loss, bins=bins, color="tab:blue", alpha=0.75, edgecolor="white", linewidth=0.5)
    ax.set_xscale("log" if log else "linear")
    colours = ("tab:green", "tab:orange", "tab:red")
    for q, value, colour in zip(PERCENTILES, np.percentile(run.loss, PERCENTILES), colours):
        ax.axvline(value, color=colour, ls="--", lw=1.5, label=f"{q}th: {value:.3g}")
    best, worst = int(np.argmin(run.loss)), int(np.argmax(run.loss))
    summary = [f"under {t:g}: {np.mean(run.loss < t):.1%} of frames" for t in THRESHOLDS] + [
        f"mean {run.loss.mean():.3g}, median {np.median(run.loss):.3g}",
        f"best {run.loss[best]:.3g} (frame {best})",
        f"worst {run.loss[worst]:.3g} (frame {worst})",
    ]
    side.set_axis_off()
    side.legend(*ax.get_legend_handles_labels(), loc="upper left", title="percentiles")
    side.text(0.0, 0.6, "\n".join(summary), va="top", linespacing=1.6,
              bbox=dict(boxstyle="round", facecolor="whitesmoke", edgecolor="grey"))
    ax.set_xlabel(LOSS_LABEL + (", log-spaced bins" if log else ""))
    ax.set_ylabel("frames")
    fig.suptitle(f"Distribution of per-frame loss ({loss.size} frames): {run.caption}")
    return fig


def draw_pairs(fig, run: Run, indices, title: str) -> None:
    """Targets (top row) above their displays (bottom row), one column per frame index."""
    fig.suptitle(title)
    axes = fig.subplots(2, len(indices), squeeze=False)
    for col, i in enumerate(indices):
        axes[0, col].imshow(run.targets[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes[0, col].set_title(f"frame {i} ({i / run.fps:.1f} s)\nloss {run.loss[i]:.3g}, {run.psnr[i]:.1f} dB",
                               fontsize=9)
        axes[1, col].imshow(run.shown(i), interpolation="nearest")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("target")
    axes[1, 0].set_ylabel("display")


def pair_figure(columns: int) -> Figure:
    """A figure sized for two rows of `columns` square frames; short clips do not blow frames up."""
    cell = WIDTH / max(columns, 6)
    return Figure(figsize=(WIDTH, 1.8 * cell + 1.3), layout="constrained")


def comparison_grid(run: Run) -> Figure:
    """Up to 8 frames evenly spaced over the video, target above display."""
    picks = np.unique(np.linspace(0, run.loss.size - 1, min(GRID_FRAMES, run.loss.size)).round().astype(int))
    fig = pair_figure(len(picks))
    draw_pairs(fig, run, picks.tolist(), f"Target (top) and attention display (bottom): {run.caption}")
    return fig


def best_worst(run: Run) -> Figure:
    """The lowest- and highest-loss frames (4 each, fewer and never repeated in a short clip)."""
    order = np.argsort(run.loss, kind="stable")
    n_best = min(BEST_WORST, (order.size + 1) // 2)
    n_worst = min(BEST_WORST, order.size - n_best)  # disjoint from the best when N < 8
    groups = [(order[:n_best], f"{n_best} lowest loss")]
    if n_worst:
        groups.append((order[::-1][:n_worst], f"{n_worst} highest loss"))
    fig = pair_figure(n_best + n_worst)
    fig.suptitle(f"Best and worst frames, target above display: {run.caption}")
    subfigs = fig.subfigures(1, len(groups), width_ratios=[len(g) for g, _ in groups], squeeze=False)
    for sub, (indices, title) in zip(subfigs.flat, groups):
        draw_pairs(sub, run, indices.tolist(), title)
    return fig


def fidelity_timeline(run: Run) -> Figure:
    """PSNR (top) and SSIM (below) against frame index (seconds on top), per frame and as one-second rolling means."""
    fig = Figure(figsize=(WIDTH, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    n = run.psnr.size
    window = int(np.clip(round(run.fps), 1, n))
    frames = np.arange(n)
    panels = ((top, run.psnr, "PSNR", PSNR_LABEL, "tab:blue", "tab:red"),
              (bottom, run.ssim, "SSIM", SSIM_LABEL, "tab:green", "tab:purple"))
    for ax, values, name, label, colour, mean_colour in panels:
        ax.plot(frames, values, lw=0.6, color=colour, alpha=0.6, label=f"{name} per frame",
                marker="." if n < 100 else None)  # a short clip's frames, a 1-frame clip's only point, stay visible
        ax.plot(frames, rolling_mean(values, window), lw=2.0, color=mean_colour,
                label=f"{name} rolling mean over {window} frames ({window / run.fps:.3g} s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    bottom.set_xlim(0, max(n - 1, 1))
    bottom.set_xlabel("frame index")
    seconds = top.secondary_xaxis("top", functions=(lambda f: f / run.fps, lambda s: s * run.fps))
    seconds.set_xlabel(f"time (s) at {run.fps:g} fps")
    fig.legend(loc="outside lower center", ncols=4)
    top.set_title(f"Fidelity of each shown frame to its target ({n} frames): {run.caption}")
    return fig


def fidelity_histogram(run: Run) -> Figure:
    """How many frames reach each PSNR and SSIM, medians marked, with a summary and the clip's flicker beside."""
    fig = Figure(figsize=(WIDTH, 5.5), layout="constrained")
    left, right, side = fig.subplots(1, 3, width_ratios=[3, 3, 2])
    count = int(np.clip(2 * np.sqrt(run.psnr.size), 10, 60))
    for ax, values, label, colour, unit in ((left, run.psnr, PSNR_LABEL, "tab:blue", "{:.1f} dB"),
                                            (right, run.ssim, SSIM_LABEL, "tab:green", "{:.3f}")):
        ax.hist(values, bins=count, color=colour, alpha=0.75, edgecolor="white", linewidth=0.5)
        median = np.median(values)
        ax.axvline(median, color="tab:red", ls="--", lw=1.5, label="median " + unit.format(median))
        ax.legend(loc="upper left")
        ax.set_xlabel(label)
        ax.set_ylabel("frames")
    best, worst = int(np.argmax(run.psnr)), int(np.argmin(run.psnr))
    ratio = f" ({run.flicker / run.target_flicker:.2f}x)" if run.target_flicker > 0 else ""
    summary = [
        f"PSNR mean {run.psnr.mean():.1f} dB, median {np.median(run.psnr):.1f} dB",
        f"SSIM mean {run.ssim.mean():.3f}, median {np.median(run.ssim):.3f}",
        f"flicker {run.flicker:.3g}, targets' {run.target_flicker:.3g}{ratio}",
        f"best {run.psnr[best]:.1f} dB (frame {best})",
        f"worst {run.psnr[worst]:.1f} dB (frame {worst})",
    ]
    side.set_axis_off()
    side.text(0.0, 0.9, "\n".join(summary), va="top", linespacing=1.6,
              bbox=dict(boxstyle="round", facecolor="whitesmoke", edgecolor="grey"))
    fig.suptitle(f"Distribution of per-frame fidelity ({run.psnr.size} frames): {run.caption}")
    return fig


FIGURES = {
    "loss_timeline.png": loss_timeline,
    "loss_histogram.png": loss_histogram,
    "comparison_grid.png": comparison_grid,
    "best_worst.png": best_worst,
    "fidelity_timeline.png": fidelity_timeline,
    "fidelity_histogram.png": fidelity_histogram,
}


def png(fig: Figure) -> bytes:
    """The figure rendered to PNG bytes in memory."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png", metadata={"Software": mark("plots")})
    return buffer.getvalue()


def make_plots(workdir) -> list[Path]:
    """Write the six figures into WORKDIR; returns their paths in the order of FIGURES.

    Every figure is rendered before any is written, and each is written atomically: a failure leaves
    the directory as it was, never half the figures of this run beside those of an earlier one."""
    run = read_run(workdir)
    paths = [claim(run.workdir / name, "plots") for name in FIGURES]
    images = {path: png(draw(run)) for path, draw in zip(paths, FIGURES.values())}
    try:
        for path, data in images.items():
            write_atomic(path, data)
    except OSError as err:
        raise BadInputError(f"Cannot write the figures in {run.workdir}: {err.strerror or err}.") from err
    return list(images)
