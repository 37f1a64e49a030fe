"""metrics.json, the record of a finished render: written by `render` (`of_render`, `write`), read back for
`plots`, `viewer` and scripts (`read`, `read_run`, through `WorkDir.finished_run`), in this one module; the
work directory (`workdir.WorkDir`) names its files.

Its keys (per-frame lists are in frame order, N long):
    input, model (ModelInfo: name, source, is_random, config), settings (the Job, its optimiser settings under
    settings.settings), frames (N), fps, chunk_size, device, versions, command, date
    per_frame_loss            loss of the saved embedding (full mode: the mean of its two halves, also given as
                              per_frame_loss_lower / _upper); mean_loss, median_loss
    per_frame_last_step_loss  inside the last Adam step (the reference's figure)
    per_frame_start, per_frame_explore_loss   which random start was kept, and each start's exploring loss
    per_frame_head_loss, heads                with colour: each head's loss
    per_frame_headspace_loss                  with the head-space solver: the loss before lifting
    display, sink_z, sink_black               how attention became a picture (the sink's constants)
    per_frame_psnr, per_frame_ssim            the shown gray frame against the target over the shown region
                                              (SPEC 12)
    per_frame_content                         whether the target has content (fidelity.has_content: not blank)
    mean_psnr, median_psnr, mean_ssim, median_ssim   over the content frames (all when none has content);
    content_frames, blank_frames, pooled_psnr        their count, the blank ones', PSNR over every pixel
                                                     (fidelity.summary)
    flicker, target_flicker                   mean |v_t - v_(t-1)| of the shown frames and of the targets
    retried_frames, failed_frames             the non-finite guard's frames
    resumed_frames, compile_seconds, optimize_seconds, seconds_per_frame     this run's share and its time
Every NaN or infinite number is written as null (strict JSON).
"""
import dataclasses
import datetime
import importlib.metadata
import io
import json
import platform
import sys
import zipfile
from pathlib import Path

import numpy as np

from badapple_jax import fidelity
from badapple_jax.display import gray_of
from badapple_jax.errors import BadInputError
from badapple_jax.files import write_atomic
from badapple_jax.solver import HEAD_SPACE
from badapple_jax.video import levels

PACKAGES = ("badapple-jax", "jax", "jaxlib", "optax", "flax", "numpy", "scipy", "imageio", "imageio-ffmpeg")
RERUN = " (made before fidelity was measured? rerun render)"


def of_render(job, info, clip, frames: np.ndarray, kept: dict, rgb: np.ndarray, run: dict) -> dict:
    """The metrics of a finished render of `job` with `info`'s model on `clip` (targets `frames` [N, (3,) T, T]):
    `kept` the chunk records' fields [N, ...], `rgb` the frames as their PNGs hold them [N, T, T, 3], `run` this
    run's own figures (compile_seconds, optimize_seconds, computed: frames computed now, chunk_size, device)."""
    encoding = job.settings.encoding(info.config.causal)
    full = encoding.views == 2
    loss = kept["loss"].mean(axis=1) if full else kept["loss"]
    region = encoding.region(job.size)
    content = fidelity.has_content(frames, region)
    N, computed = len(frames), run["computed"]
    return {
        "input": clip.label,
        "model": info.as_dict(),
        "settings": dataclasses.asdict(job),
        "frames": N,
        "fps": clip.fps,
        "per_frame_loss": loss.tolist(),
        **({"per_frame_loss_lower": kept["loss"][:, 0].tolist(), "per_frame_loss_upper": kept["loss"][:, 1].tolist()}
           if full else {}),
        "per_frame_last_step_loss": kept["last_step_loss"].tolist(),
        "per_frame_start": kept["start"].tolist(),
        "per_frame_explore_loss": kept["explore_loss"].tolist(),
        **({"heads": list(job.heads), "per_frame_head_loss": kept["head_loss"].tolist()} if job.color else {}),
        **({"per_frame_headspace_loss": kept["space_loss"].tolist()} if job.settings.solver in HEAD_SPACE else {}),
        "mean_loss": float(loss.mean()),
        "median_loss": float(np.median(loss)),
        "display": job.settings.display,
        **encoding.constants(job.size),
        "per_frame_psnr": kept["psnr"].tolist(),
        "per_frame_ssim": kept["ssim"].tolist(),
        "per_frame_content": content.tolist(),
        **fidelity.summary(kept["psnr"], kept["ssim"], content),
        "flicker": fidelity.flicker(rgb, region, decode=lambda block: gray_of(block, job.color)),  # from the PNGs
        "target_flicker": fidelity.flicker(frames, region),
        "retried_frames": np.flatnonzero(kept["retried"]).tolist(),
        "failed_frames": np.flatnonzero(kept["failed"]).tolist(),
        "resumed_frames": N - computed,
        "compile_seconds": run["compile_seconds"],
        "optimize_seconds": run["optimize_seconds"],
        "seconds_per_frame": run["optimize_seconds"] / computed if computed else None,
        "chunk_size": run["chunk_size"],
        "device": run["device"],
        "versions": versions(),
        "command": sys.argv,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write(work, metrics: dict, targets: np.ndarray) -> None:
    """The WorkDir `work`'s metrics.json, and beside it targets.npz: the gray targets [N, T, T] in [0, 1] as uint8
    (`frames`), the figures' "target" row."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, frames=levels(targets))
    write_atomic(work.targets_npz, buffer.getvalue())
    write_atomic(work.metrics, json.dumps(strict_json(metrics), indent=1, allow_nan=False).encode())


def strict_json(value):
    """`value` with every NaN or infinite float as null: bare NaN is no JSON, and readers choke on it."""
    if isinstance(value, np.generic):  # a NumPy scalar an API caller passed as a setting
        value = value.item()
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


@dataclasses.dataclass(frozen=True)
class Run:
    """What the figures need from a finished render."""

    work: object  # its WorkDir
    loss: np.ndarray  # [N] per-frame loss, frame order
    psnr: np.ndarray  # [N] dB, shown gray frame against target over the shown region
    ssim: np.ndarray  # [N] in [-1, 1], the same comparison
    content: np.ndarray  # [N] bool: the target is not blank (fidelity.has_content); summaries are over these
    flicker: float  # mean |v_t - v_(t-1)| of the shown frames
    target_flicker: float  # the same of the targets
    display: str  # how attention became a picture: "sink" or "zscore"
    fps: float
    targets: np.ndarray  # [N, T, T] uint8, white = 255
    caption: str  # model, head and settings, for titles
    colour: bool  # three heads as R, G and B: the frames are any RGB, not magma

    def frame(self, i: int) -> np.ndarray:
        """[T, T, 3] uint8: the attention map frame i was rendered as (a damaged PNG is a BadInputError)."""
        return self.work.read_frame(i, self.colour, self.targets.shape[-1])


def read(work) -> dict:
    """The WorkDir `work`'s metrics.json as a dict; missing, unreadable or not an object is a BadInputError."""
    path = work.metrics
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"No metrics.json in {work}: is it the work directory of a finished render?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInputError(f"Cannot read {path}: {' '.join(str(err).split())}.") from None
    if not isinstance(metrics, dict):
        raise BadInputError(f"{path} is not the metrics of a render (a JSON {type(metrics).__name__}, not an object).")
    return metrics


def read_run(work) -> Run:
    """The WorkDir `work`'s metrics.json and targets.npz, each field checked (its frame PNGs are the WorkDir's to
    check: `WorkDir.finished_run`); anything unusable is a one-line BadInputError naming the path."""
    metrics, path = read(work), work.metrics
    loss = per_frame(metrics, "per_frame_loss", path, low=0.0)
    fps = metrics.get("fps")
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise BadInputError(f"{path} has no positive fps.")
    psnr = per_frame(metrics, "per_frame_psnr", path, size=loss.size)
    ssim = per_frame(metrics, "per_frame_ssim", path, size=loss.size, low=-1.0, high=1.0)
    content = metrics.get("per_frame_content")
    if not (isinstance(content, list) and len(content) == loss.size and all(isinstance(c, bool) for c in content)):
        hint = " (made before content frames were counted? rerun render)" if "per_frame_content" not in metrics else ""
        raise BadInputError(f"{path} has no per_frame_content list of {loss.size} true or false{hint}.")
    flicker, target_flicker = (amount(metrics, key, path) for key in ("flicker", "target_flicker"))
    display = metrics.get("display")
    if not (isinstance(display, str) and display):
        raise BadInputError(f"{path} has no display name, sink or zscore{'' if 'display' in metrics else RERUN}.")
    try:
        with np.load(work.targets_npz) as npz:
            targets = npz["frames"]
    except FileNotFoundError:
        raise BadInputError(f"No targets.npz in {work}: it is written by render at the end of a run.") from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise BadInputError(f"Cannot read frames from {work.targets_npz}: {' '.join(str(err).split())}.") from None
    job = metrics.get("settings")
    colour = isinstance(job, dict) and job.get("color") is True
    return Run(work, loss, psnr, ssim, np.array(content, bool), flicker, target_flicker, display, float(fps), targets,
               caption(metrics), colour)


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
    """'random:gpt2-xl, layer 0 head 0, 256x256, sink display, causal mode, embedding solver, 1500 steps x 3
    seeds'."""
    part = lambda d, key: d.get(key) if isinstance(d.get(key), dict) else {}  # noqa: E731  (a damaged file: "?")
    job = part(metrics, "settings")
    opt = part(job, "settings")
    size = job.get("size", "?")
    counted = lambda n, word: f"{n} {word}{'' if n == 1 else 's'}"  # noqa: E731  ("1 seed", "? seeds")
    return (f"{part(metrics, 'model').get('name', 'unknown model')}, layer {job.get('layer', '?')} "
            f"head {job.get('head', '?')}, {size}x{size}, {metrics.get('display', '?')} display, "
            f"{opt.get('mode', '?')} mode, {opt.get('solver', '?')} solver, {counted(opt.get('steps', '?'), 'step')} x "
            f"{counted(opt.get('seeds', '?'), 'seed')}")
