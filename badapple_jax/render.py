"""The whole job: clip -> targets -> optimised embeddings -> attention maps -> PNGs, metrics and mp4."""
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from badapple_jax.display import colour_frames, display_frames, full_frames
from badapple_jax.errors import BadInputError
from badapple_jax.headspace import LAYER0_ONLY
from badapple_jax.chunks import auto_chunk_size, compile_chunk, fit_chunk_size, frame_mesh, optimize_frames
from badapple_jax.optimize import Settings
from badapple_jax.video import VIDEO_SUFFIXES, has_audio, read_clip, write_video
from badapple_jax.weights import load_layer, pick_head, pick_heads

PACKAGES = ("badapple-jax", "jax", "jaxlib", "optax", "flax", "numpy", "scipy", "imageio", "imageio-ffmpeg")


@dataclasses.dataclass(frozen=True)
class Job:
    """One render; the defaults are the reference's."""

    input: str  # video file, directory of images, or "demo"
    output: str  # .mp4 path
    workdir: str | None = None  # PNG frames and metrics.json; default: OUTPUT without suffix + ".work"
    model: str = "gpt2-xl"  # hub id, local directory, or random:NAME
    layer: int = 0
    head: int = 0
    size: int = 256  # T: the display is T x T
    fps: float = 15.0  # frames per second sampled from the input and played in the output
    max_frames: int | None = None  # render only the first N frames
    chunk_size: int | None = None  # frames per compiled step; None: as many as fit the free device memory
    seed: int = 0  # seeds the random starts (per frame index)
    save_embeddings: bool = False  # write embeddings.npy [N, T, n_embd] float32
    side_by_side: bool = False  # the video shows the target (left) next to the attention map
    audio: str | None = None  # file whose audio goes with the video; default: the input's own, if any
    heads: tuple[int, ...] | None = None  # with color: the R, G and B heads, driven by one shared embedding
    color: bool = False  # a colour video: each of three heads of `layer` shows one channel
    settings: Settings = Settings()

    @property
    def work(self) -> Path:
        return Path(self.workdir) if self.workdir else Path(self.output).with_suffix(".work")


def check(job: Job) -> None:
    """Refuse bad numbers and unusable paths before any work is done."""
    job.settings.check()
    rules = [
        (job.settings.solver != "headspace" or job.layer == 0, LAYER0_ONLY.rstrip(".")),
        (not job.color or (job.heads is not None and len(job.heads) == 3),
         "--color needs --heads with three heads, e.g. --heads 0,1,2 (R, G, B)"),
        (job.color or job.heads is None, "--heads drives several heads with one embedding: add --color"),
        (not (job.color and job.settings.warm_start), "--warm-start works with one head, not with --color"),
        (job.chunk_size is None or job.chunk_size >= 1, f"--chunk-size must be at least 1, got {job.chunk_size}"),
        (job.size >= 2, f"--size must be at least 2, got {job.size}"),
        (np.isfinite(job.fps) and job.fps > 0, f"--fps must be positive, got {job.fps}"),
        (job.max_frames is None or job.max_frames >= 1, f"--max-frames must be at least 1, got {job.max_frames}"),
        (job.layer >= 0, f"--layer must be >= 0, got {job.layer}"),
        (job.head >= 0, f"--head must be >= 0, got {job.head}"),
    ]
    for ok, message in rules:
        if not ok:
            raise BadInputError(message + ".")
    if job.audio is not None and not Path(job.audio).is_file():
        raise BadInputError(f"--audio {job.audio} does not exist.")
    if job.audio is not None and not has_audio(job.audio):
        raise BadInputError(f"--audio {job.audio} has no audio track.")
    out = Path(job.output)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise BadInputError(f"Output {out} must end in one of {', '.join(sorted(VIDEO_SUFFIXES))}.")
    if not out.parent.is_dir():
        raise BadInputError(f"Output directory {out.parent} does not exist.")
    if not os.access(out.parent, os.W_OK):
        raise BadInputError(f"Output directory {out.parent} is not writable.")


def prepare_workdir(path: Path) -> Path:
    """Create the work directory (and frames/) or say plainly why it cannot be used."""
    try:
        (path / "frames").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise BadInputError(f"Cannot use work directory {path}: {err.strerror}.") from err
    return path


def write_json_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


LIFT_RTOL, LIFT_ATOL = 1e-4, 1e-6  # the floor: float32 logits of O(10) leave ~1e-7 noise in a loss


def check_lift(result, start: int) -> None:
    """The lifted X must show the head what z did: same loss through the ordinary kernel."""
    bad = np.abs(result.final_loss - result.space_loss) > LIFT_RTOL * result.space_loss + LIFT_ATOL
    if np.any(bad):
        where = tuple(np.argwhere(bad)[0])  # (frame,) or (frame, half)
        raise RuntimeError(f"head-space lift failed at frame {start + where[0]}: loss {result.space_loss[where]:.6g} "
                           f"in head space but {result.final_loss[where]:.6g} through the kernel (please report this)")


def render(job: Job, log=print, progress: bool = True) -> dict:
    """Run `job` end to end; returns the metrics written to WORKDIR/metrics.json."""
    check(job)
    layer_weights, info = load_layer(job.model, job.layer)
    if job.color:  # the heads stacked on a leading axis: one embedding drives them all
        w = pick_heads(layer_weights, job.heads)
    else:
        w = pick_head(layer_weights, job.head)
    if job.size > info.config.n_positions:
        raise BadInputError(f"--size {job.size} exceeds the model's {info.config.n_positions} positions.")
    clip = read_clip(job.input, size=job.size, fps=job.fps, max_frames=job.max_frames, colour=job.color)
    frames = np.moveaxis(clip.frames, -1, 1) if job.color else clip.frames  # [N, (3,) T, T]
    work = prepare_workdir(job.work)
    mesh = frame_mesh()
    device = mesh.devices.flat[0]
    log(f"model: {info.source}; layer {job.layer}, head {job.head}")
    log(f"input: {clip.label}, {len(clip.frames)} frames of {job.size}x{job.size} at {clip.fps:g} fps")
    t0 = time.perf_counter()
    if job.chunk_size is None:
        chunk = auto_chunk_size(w, job.size, len(frames), job.settings, mesh)
    else:
        chunk = fit_chunk_size(job.chunk_size, len(frames), mesh)
    log(f"device: {mesh.size} x {device.platform} ({device.device_kind}); compiling one {job.settings.solver} "
        f"step for {chunk} frames x {job.settings.seeds} seeds")
    compiled, _ = compile_chunk(w, job.size, chunk, job.settings, mesh)
    compile_seconds = time.perf_counter() - t0

    N, T, E = len(clip.frames), job.size, info.config.n_embd
    full = job.settings.mode == "full"
    embeddings = None
    if job.save_embeddings:  # [N, T, E], or [N, 2, T, E] in full mode: the frame's and its transpose's
        shape = (N, 2, T, E) if full else (N, T, E)
        embeddings = np.lib.format.open_memmap(work / ".embeddings.npy.tmp", "w+", np.float32, shape)
    rgb = np.zeros((N, T, T, 3), np.uint8)
    kept = {k: [] for k in ("loss", "final_loss", "head_loss", "space_loss", "seed", "explore_loss")}
    t0 = time.perf_counter()
    for start, result in optimize_frames(
        w, frames, job.settings, seed=job.seed, chunk_size=chunk, progress=progress, compiled=compiled
    ):
        check_lift(result, start)
        stop = start + len(result.loss)
        if job.color:
            rgb[start:stop] = colour_frames(result.attention, full)
        else:
            rgb[start:stop] = full_frames(result.attention) if full else display_frames(result.attention)
        for i in range(start, stop):
            iio.imwrite(work / "frames" / f"frame_{i:06d}.png", rgb[i])
        if embeddings is not None:
            embeddings[start:stop] = result.x
        for k, parts in kept.items():
            parts.append(getattr(result, k))
    optimize_seconds = time.perf_counter() - t0
    kept = {k: np.concatenate(parts) for k, parts in kept.items()}  # [N, ...], or [N, 2, ...] in full mode
    if embeddings is not None:
        embeddings.flush()
        del embeddings
        os.replace(work / ".embeddings.npy.tmp", work / "embeddings.npy")
    loss = kept["loss"].mean(axis=1) if full else kept["loss"]

    metrics = {
        "input": clip.label,
        "model": info.as_dict(),
        "settings": dataclasses.asdict(job),
        "frames": N,
        "fps": clip.fps,
        "per_frame_loss": loss.tolist(),  # in full mode the mean of the two halves
        **({"per_frame_loss_lower": kept["loss"][:, 0].tolist(), "per_frame_loss_upper": kept["loss"][:, 1].tolist()}
           if full else {}),
        "per_frame_seed": kept["seed"].tolist(),
        "per_frame_explore_loss": kept["explore_loss"].tolist(),
        "per_frame_final_loss": kept["final_loss"].tolist(),
        **({"heads": list(job.heads), "per_frame_head_loss": kept["head_loss"].tolist()} if job.color else {}),
        **({"per_frame_headspace_loss": kept["space_loss"].tolist()} if job.settings.solver == "headspace" else {}),
        "mean_loss": float(loss.mean()),
        "median_loss": float(np.median(loss)),
        "compile_seconds": compile_seconds,
        "optimize_seconds": optimize_seconds,
        "seconds_per_frame": optimize_seconds / N,
        "chunk_size": chunk,
        "device": {"platform": device.platform, "kind": device.device_kind, "count": mesh.size},
        "versions": versions(),
        "command": sys.argv,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    gray = clip.frames.mean(axis=-1) if job.color else clip.frames  # the plots compare gray targets
    np.savez_compressed(work / ".targets.tmp.npz", frames=(gray * 255).round().astype(np.uint8))
    os.replace(work / ".targets.tmp.npz", work / "targets.npz")  # [N, T, T] uint8: the plots' "target" row
    write_json_atomic(metrics, work / "metrics.json")
    if job.side_by_side:
        targets = (clip.frames * 255).round().astype(np.uint8)
        targets = targets if job.color else np.repeat(targets[..., None], 3, axis=-1)
        rgb = np.concatenate([targets, rgb], axis=2)  # [N, T, 2T, 3]
    audio = job.audio or clip.audio
    write_video(rgb, job.output, fps=clip.fps, audio=audio)
    log(
        f"done: {N} frames in {optimize_seconds:.1f} s (+{compile_seconds:.1f} s compile), "
        f"loss mean {metrics['mean_loss']:.4f} median {metrics['median_loss']:.4f}; "
        f"video {job.output} ({'with' if audio else 'no'} audio), frames and metrics in {work}"
    )
    return metrics
