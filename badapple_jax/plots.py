"""A finished work directory -> the write-up's six figures, as PNGs beside its metrics.json.

loss_timeline.png       per-frame loss across the video, with a one-second rolling mean
loss_histogram.png      the loss distribution, its 50/81/95th percentiles, the shares under the display's thresholds
comparison_grid.png     targets above their displays, up to 8 frames evenly spaced over the video
best_worst.png          the same pairs for the 4 lowest- and 4 highest-loss frames with content
fidelity_timeline.png   per-frame PSNR and SSIM of the shown frame (SPEC section 12), with rolling means, blank
                        frames shaded
fidelity_histogram.png  the PSNR and SSIM distributions, blank frames apart, medians over the content frames,
                        flicker beside the targets'

Fidelity is summarised as fidelity.summary does: over the frames whose target has content, the blank ones
counted beside (a black frame shows at 70+ dB by any head and would lift every figure).

Figures are plain `matplotlib.figure.Figure`s (no pyplot state); PNG output goes through Agg. All six
are rendered in memory before the first is written, so a failure leaves no mix of old and new figures.
"""
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from badapple_jax import fidelity
from badapple_jax.errors import BadInputError
from badapple_jax.files import write_atomic
from badapple_jax.metrics import Run
from badapple_jax.outputs import claim, mark
from badapple_jax.workdir import WorkDir, FIGURES as NAMES

DPI = 120
WIDTH = 14.0  # inches: 1680 px at DPI
LOG_SPAN = 100.0  # log axes once max / min positive loss exceeds 2 decades
PERCENTILES = (50, 81, 95)  # the write-up's: 81% of Bad Apple's frames under 0.5, 95% under 1.0
# The losses whose shares loss_histogram reports, per display, with what they mean. The reference's 0.5 and 1.0
# are on its z-scored display's scale (logits of black pixels near log 1e-8) and stay, comparable with the
# write-up. The sink display's losses are ~1e-6: there a logit error e moves a pixel by (f + b) e, so a loss L
# shows at about -10 log10 L dB (on nine sink renders of the demo, 16 to 256 px, the median PSNR was -10 log10 L
# + 2 to 8 dB); 1e-5 and 1e-4 are then pictures of ~50 and ~40 dB or better.
THRESHOLDS = {"zscore": ((0.5, 1.0), "the write-up's thresholds"),
              "sink": ((1e-5, 1e-4), "sink display: loss L shows at ~ -10 log10 L dB")}
GRID_FRAMES = 8
BEST_WORST = 4
LOSS_LABEL = "loss (MSE of row-centred logits)"
PSNR_LABEL = "PSNR (dB, peak 1)"
SSIM_LABEL = "SSIM"


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
    side.set_axis_off()
    side.legend(*ax.get_legend_handles_labels(), loc="upper left", title="percentiles")
    side.text(0.0, 0.6, "\n".join(loss_summary(run)), va="top", linespacing=1.6,
              bbox=dict(boxstyle="round", facecolor="whitesmoke", edgecolor="grey"))
    ax.set_xlabel(LOSS_LABEL + (", log-spaced bins" if log else ""))
    ax.set_ylabel("frames")
    fig.suptitle(f"Distribution of per-frame loss ({loss.size} frames): {run.caption}")
    return fig


def loss_summary(run: Run) -> list[str]:
    """The loss histogram's summary lines: the shares under the display's thresholds, mean, median, best, worst."""
    thresholds, meaning = THRESHOLDS.get(run.display, ((), ""))
    shares = [f"under {t:g}: {np.mean(run.loss < t):.1%} of frames" for t in thresholds]
    best, worst = int(np.argmin(run.loss)), int(np.argmax(run.loss))
    return shares + ([f"({meaning})"] if shares else []) + [
        f"mean {run.loss.mean():.3g}, median {np.median(run.loss):.3g}",
        f"best {run.loss[best]:.3g} (frame {best})",
        f"worst {run.loss[worst]:.3g} (frame {worst})",
    ]


def draw_pairs(fig, run: Run, indices, title: str) -> None:
    """Targets (top row) above their displays (bottom row), one column per frame index."""
    fig.suptitle(title)
    axes = fig.subplots(2, len(indices), squeeze=False)
    for col, i in enumerate(indices):
        axes[0, col].imshow(run.targets[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes[0, col].set_title(f"frame {i} ({i / run.fps:.1f} s)\nloss {run.loss[i]:.3g}, {run.psnr[i]:.1f} dB",
                               fontsize=9)
        axes[1, col].imshow(run.frame(i), interpolation="nearest")
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


def content_frames(run: Run) -> np.ndarray:
    """The indices of the frames the summaries are over: those with content, or all when none has."""
    return np.flatnonzero(run.content) if run.content.any() else np.arange(run.content.size)


def best_worst(run: Run) -> Figure:
    """The lowest- and highest-loss frames with content (4 each, fewer and never repeated in a short clip; all
    frames when none has content): a blank frame is easy, not a best."""
    over = content_frames(run)
    order = over[np.argsort(run.loss[over], kind="stable")]
    n_best = min(BEST_WORST, (order.size + 1) // 2)
    n_worst = min(BEST_WORST, order.size - n_best)  # disjoint from the best when N < 8
    groups = [(order[:n_best], f"{n_best} lowest loss")]
    if n_worst:
        groups.append((order[::-1][:n_worst], f"{n_worst} highest loss"))
    fig = pair_figure(n_best + n_worst)
    blank = run.content.size - over.size
    among = f" of the {over.size} with content ({blank} blank left out)" if blank else ""
    fig.suptitle(f"Best and worst frames{among}, target above display: {run.caption}")
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
        ax.fill_between(frames, 0, 1, where=~run.content, step="mid", color="lightgrey", alpha=0.6, lw=0,
                        transform=ax.get_xaxis_transform(), label="blank target" if ax is top else None)
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
    """How many frames reach each PSNR and SSIM, blank frames stacked apart in grey, medians over the content frames
    marked, with a summary and the clip's flicker beside."""
    fig = Figure(figsize=(WIDTH, 5.5), layout="constrained")
    left, right, side = fig.subplots(1, 3, width_ratios=[3, 3, 2])
    count = int(np.clip(2 * np.sqrt(run.psnr.size), 10, 60))
    found = fidelity.summary(run.psnr, run.ssim, run.content)
    n, blank = found["content_frames"], found["blank_frames"]
    for ax, values, median, label, colour, unit in (
            (left, run.psnr, found["median_psnr"], PSNR_LABEL, "tab:blue", "{:.1f} dB"),
            (right, run.ssim, found["median_ssim"], SSIM_LABEL, "tab:green", "{:.3f}")):
        ax.hist([values[run.content], values[~run.content]], bins=count, stacked=True, color=[colour, "lightgrey"],
                alpha=0.75, edgecolor="white", linewidth=0.5,
                label=[f"{n} content frame{'s' * (n != 1)}", f"{blank} blank (not in the median)"])
        ax.axvline(median, color="tab:red", ls="--", lw=1.5, label="median " + unit.format(median) +
                   (" over content frames" if n else ""))
        ax.legend(loc="upper left")
        ax.set_xlabel(label)
        ax.set_ylabel("frames")
    side.set_axis_off()
    side.text(0.0, 0.9, "\n".join(fidelity_summary(run)), va="top", linespacing=1.6,
              bbox=dict(boxstyle="round", facecolor="whitesmoke", edgecolor="grey"))
    fig.suptitle(f"Distribution of per-frame fidelity ({run.psnr.size} frames): {run.caption}")
    return fig


def fidelity_summary(run: Run) -> list[str]:
    """The fidelity histogram's summary lines: means and medians over the content frames, the blank count and the
    pooled PSNR, flicker beside the targets', the best and worst content frames."""
    found = fidelity.summary(run.psnr, run.ssim, run.content)
    n, blank = found["content_frames"], found["blank_frames"]
    over = content_frames(run)
    best, worst = over[np.argmax(run.psnr[over])], over[np.argmin(run.psnr[over])]
    ratio = f" ({run.flicker / run.target_flicker:.2f}x)" if run.target_flicker > 0 else ""
    return [
        f"over {n} content frame{'s' * (n != 1)}" if n else "over all frames (none has content)",
        f"PSNR mean {found['mean_psnr']:.1f} dB, median {found['median_psnr']:.1f} dB",
        f"SSIM mean {found['mean_ssim']:.3f}, median {found['median_ssim']:.3f}",
        f"{blank} blank frame{'s' * (blank != 1)} apart; pooled PSNR {found['pooled_psnr']:.1f} dB",
        f"flicker {run.flicker:.3g}, targets' {run.target_flicker:.3g}{ratio}",
        f"best {run.psnr[best]:.1f} dB (frame {best})",
        f"worst {run.psnr[worst]:.1f} dB (frame {worst})",
    ]


FIGURES = dict(zip(NAMES, (loss_timeline, loss_histogram, comparison_grid, best_worst, fidelity_timeline,
                          fidelity_histogram)))  # file name (the work directory's) -> drawing


def png(fig: Figure) -> bytes:
    """The figure rendered to PNG bytes in memory."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png", metadata={"Software": mark("plots")})
    return buffer.getvalue()


def make_plots(workdir) -> list[Path]:
    """Write the six figures into WORKDIR; returns their paths in the order of FIGURES.

    Every figure is rendered before any is written, and each is written atomically: a failure leaves
    the directory as it was, never half the figures of this run beside those of an earlier one."""
    run = WorkDir(Path(workdir)).finished_run()
    paths = [claim(run.work.path / name, "plots") for name in FIGURES]
    images = {path: png(draw(run)) for path, draw in zip(paths, FIGURES.values())}
    try:
        for path, data in images.items():
            write_atomic(path, data)
    except OSError as err:
        raise BadInputError(f"Cannot write the figures in {run.work}: {err.strerror or err}.") from err
    return list(images)
