"""The whole job: clip -> targets -> optimised embeddings -> attention maps -> PNGs, metrics and mp4."""
import contextlib
import dataclasses
import errno
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from badapple_jax import fidelity, metrics
from badapple_jax.chunks import (SEED_MAX, auto_chunk_size, check_fits, compile_chunk, fit_chunk_size, frame_mesh,
                                 frames_in, optimize_frames)
from badapple_jax.chunks import plan as plan_program  # `plan` below is a render's Plan
from badapple_jax.display import to_rgb
from badapple_jax.encoding import largest_size
from badapple_jax.errors import BadInputError, OptionError, Interrupted
from badapple_jax.outputs import claim
from badapple_jax.headspace import LAYER0_ONLY
from badapple_jax.interrupt import stop_on_signal
from badapple_jax.processes import current
from badapple_jax.optimize import PhaseOptions, Settings
from badapple_jax.video import (BUILT_IN, FPS_RANGE, START_MAX, VIDEO_SUFFIXES, check_source, has_audio, levels,
                                read_clip, write_video)
from badapple_jax.model import pick_head, pick_heads
from badapple_jax.solver import HEAD_SPACE
from badapple_jax.weights import load_layer
from badapple_jax.identity import identity, job_key, sha256_of
from badapple_jax.workdir import RECORD_FIELDS, Wanted, WorkDir

# Bounds of the options every command that reads a clip shares (the optimiser's own are in optimize.LIMITS,
# the sampling rate's in video.FPS_RANGE): a seed is a non-negative int32.
LIMITS = {"seed": SEED_MAX}


@dataclasses.dataclass(frozen=True)
class Job:
    """One render; the defaults are the reference's."""

    input: str  # video file, directory of images, or "demo"
    output: str  # .mp4 path
    workdir: str | None = None  # PNG frames and metrics.json; default: OUTPUT without suffix + ".work"
    model: str = "gpt2-xl"  # hub id, local directory, minilm, or random:NAME
    layer: int = 0
    head: int = 0
    size: int = 256  # T: the display is T x T
    fps: float = 15.0  # frames per second sampled from the input and played in the output
    start: int = 0  # the input's first frame rendered (at fps); the audio starts with it
    max_frames: int | None = None  # render at most N frames
    chunk_size: int | None = None  # frames per compiled step; None: as many as fit the free device memory
    seed: int = 0  # seeds the random starts (per frame index)
    save_embeddings: bool = False  # write embeddings.npy [N, L, n_embd] float32, L = T (+ 1 with the sink)
    side_by_side: bool = False  # the video shows the target (left) next to the attention map
    audio: str | None = None  # file whose audio goes with the video; default: the input's own, if any
    heads: tuple[int, ...] | None = None  # with color: the R, G and B heads, driven by one shared embedding
    color: bool = False  # a colour video: each of three heads of `layer` shows one channel
    restart: bool = False  # discard what the work directory holds (ours only) and start over
    settings: Settings = Settings()

    @property
    def work(self) -> WorkDir:
        return WorkDir(Path(self.workdir)) if self.workdir else WorkDir.beside(self.output)


def check(job: Job) -> None:
    """Refuse bad numbers and unusable paths before any work is done."""
    job.settings.check()
    rules = [
        (job.settings.solver not in HEAD_SPACE or job.layer == 0, LAYER0_ONLY.rstrip(".")),
        (not job.color or (job.heads is not None and len(job.heads) == 3),
         "`color` needs `heads` with three heads, e.g. `heads` 0,1,2 (R, G, B)"),
        (job.color or job.heads is None, "`heads` drives several heads with one embedding: add `color`"),
        (job.heads is None or len(set(job.heads)) == len(job.heads), f"`heads` names a head twice: {job.heads}"),
        (not (job.color and job.settings.warm_start), "`warm_start` works with one head, not with `color`"),
        (job.chunk_size is None or job.chunk_size >= 1, f"`chunk_size` must be at least 1, got {job.chunk_size}"),
        (job.max_frames is None or job.max_frames >= 1, f"`max_frames` must be at least 1, got {job.max_frames}"),
        (0 <= job.start <= START_MAX, f"`start` must be a frame in 0..{START_MAX}, got {job.start}"),
        (job.layer >= 0, f"`layer` must be >= 0, got {job.layer}"),
        (job.head >= 0, f"`head` must be >= 0, got {job.head}"),
    ]
    for ok, message in rules:
        if not ok:
            raise OptionError(message + ".")
    check_clip_options(job.size, job.fps, job.seed)
    check_source(job.input)
    if job.audio is not None and Path(job.audio).is_dir():
        raise OptionError(f"`audio` {job.audio} is a directory, not a file with a sound track.")
    if job.audio is not None and not Path(job.audio).is_file():
        raise OptionError(f"`audio` {job.audio} does not exist.")
    if job.audio is not None and not has_audio(job.audio):
        raise OptionError(f"`audio` {job.audio} has no audio track.")
    out = Path(job.output)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise BadInputError(f"Output {out} must end in one of {', '.join(sorted(VIDEO_SUFFIXES))}.")
    if not out.parent.is_dir():
        raise BadInputError(f"Output directory {out.parent} does not exist.")
    if not os.access(out.parent, os.W_OK):
        raise BadInputError(f"Output directory {out.parent} is not writable.")
    if out.is_dir():
        raise BadInputError(f"Output {out} is a directory.")
    job.work.check_usable()
    check_not_an_input(job)


def check_clip_options(size: int, fps: float, seed: int) -> None:
    """The options every command that reads and optimises a clip shares (render, survey)."""
    rules = [
        (size >= 2, f"`size` must be at least 2, got {size}"),
        (FPS_RANGE[0] <= fps <= FPS_RANGE[1],
         f"`fps` must be in [{FPS_RANGE[0]:g}, {FPS_RANGE[1]:g}] frames per second, got {fps:.12g}"),
        (0 <= seed <= LIMITS["seed"], f"`seed` must be in 0..{LIMITS['seed']}, got {seed}"),
    ]
    for ok, message in rules:
        if not ok:
            raise OptionError(message + ".")


def check_not_an_input(job: Job) -> None:
    """Refuse an output that would overwrite what the render reads (the input video, an image of the input
    directory, the audio file), a file of the work directory, or a file we did not write; and a work directory
    that holds the input or lies inside the input directory (its frame_*.png would be read as input)."""
    source = Path(job.input) if job.input not in BUILT_IN else None
    claim(job.output, "video", inputs={"the input": source, "the audio file": job.audio})
    work = job.work.path.resolve()
    if job.work.holds(job.output):
        raise BadInputError(f"Output {job.output} is a file of the work directory {job.work}: choose another -o.")
    if source is not None and source.exists() and (source.resolve().is_relative_to(work) or
                                                   source.is_dir() and work.is_relative_to(source.resolve())):
        where = "holds" if source.resolve().is_relative_to(work) else "is inside"
        raise OptionError(f"Work directory {job.work} {where} the input {job.input}: a render writes and deletes "
                          "frame PNGs there; choose a `workdir` apart from the input.")


@dataclasses.dataclass(frozen=True)
class Subject:
    """What a job renders, read before any file is written."""

    w: object  # HeadWeights, heads stacked on a leading axis with `color`
    info: object  # ModelInfo
    clip: object  # Clip
    frames: np.ndarray  # [N, (3,) T, T] the targets
    mesh: object  # the devices the frames are shared over
    wanted: Wanted  # the job as its work directory sees it: identity, chunks


def render(job: Job, log=print, progress: bool = True) -> dict:
    """Run `job` end to end, resuming its work directory; returns the metrics written to WORKDIR/metrics.json.

    SIGINT/SIGTERM stop it after the chunk in hand (twice: at once) with `Interrupted`. One render at a time
    writes a work directory (an OS lock); every check is made before the first byte is written, so a refused
    job leaves the directory as it was; a full disk or a vanished work directory is a BadInputError (rerun the
    same command to resume), never a half-written file.

    Under JAX's multi-process runtime (processes.py) each process computes its share of the chunks; process 0
    holds the lock, opens the work directory first and assembles the render (the others return None)."""
    check(job)
    subject = read_subject(job)
    team = current()
    if not team.writer:  # process 0 has opened the work directory: the others resume from it
        team.gather("opened")
        job, log = dataclasses.replace(job, restart=False), lambda msg, log=log: log(f"{team.label()}: {msg}")
    twin = None if job.workdir is not None or job.restart else job.work.finished_twin(subject.wanted)
    if twin is not None:
        log(f"{twin} holds this render, finished: {job.output} is assembled from it")
        job = dataclasses.replace(job, workdir=str(twin))
    with job.work.one_writer() if team.writer else contextlib.nullcontext():
        try:
            return _opened(job, subject, log, progress, team)
        except OSError as err:  # a full disk, a work directory removed or made read-only meanwhile, a file unreadable
            where = f" ({err.filename})" if err.filename else ""
            advice = ("free some space" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "fix that")
            raise BadInputError(f"The render stopped{where}: {err.strerror or err}; {advice} and run the same "
                                "command again to resume.") from err


def read_subject(job: Job) -> Subject:
    """The model, the clip and the job's identity; reads only."""
    layer_weights, info = load_layer(job.model, job.layer)
    if job.color:  # the heads stacked on a leading axis: one embedding drives them all
        w = pick_heads(layer_weights, job.heads)
    else:
        w = pick_head(layer_weights, job.head)
    encoding = job.settings.encoding(info.config.causal)
    if encoding.tokens(job.size) > info.config.n_positions:
        raise OptionError(f"`size` {job.size} needs {encoding.tokens(job.size)} positions with the "
                          f"{job.settings.display} display; the model has {info.config.n_positions}: use `size` "
                          f"{largest_size(encoding, info.config.n_positions)} or less (`mode` {job.settings.mode}).")
    clip = read_clip(job.input, size=job.size, fps=job.fps, start=job.start, max_frames=job.max_frames,
                     colour=job.color)
    frames = np.moveaxis(clip.frames, -1, 1) if job.color else clip.frames  # [N, (3,) T, T]
    mesh = frame_mesh()
    chosen = job.chunk_size is not None
    chunk = fit_chunk_size(job.chunk_size, len(frames), mesh) if chosen else auto_chunk_size(len(frames), mesh)
    wanted = Wanted(identity(job, clip, frames, w, info.source), chunk, chosen, mesh.size, (job.size, job.size, 3),
                    lambda n: sha256_of(frames[:n]))
    return Subject(w, info, clip, frames, mesh, wanted)


def _opened(job: Job, subject: Subject, log, progress, team) -> dict | None:
    """`render` once its work directory is locked: decide, write, then plan -> run -> report (`team`: this
    process among the job's, processes.py)."""
    work = job.work
    opening = work.opening(subject.wanted, job.restart)
    recorded = work.open(opening, subject.wanted, log) if team.writer else opening.recorded
    with stop_on_signal(lambda msg: print(msg, file=sys.stderr)) as stop:  # shown even with --quiet
        try:
            plan = make_plan(job, subject, recorded, list(opening.done), log, progress)
            plan.todo = [s for s in plan.todo if s in team.share(plan.starts)]
            if team.writer:
                team.gather("opened", wait=False)
            seconds = run(job, subject, plan, team.watching(stop), log)
            return shared_report(job, subject, plan, seconds, log, team)
        except KeyboardInterrupt:  # the second signal: a chunk may still be computing in the worker thread
            if team.count == 1:  # not where other processes may be writing: process 0's next opening removes them
                work.remove_leftovers()
            raise Interrupted(work.interrupted(len(subject.frames)), busy=True) from None


@dataclasses.dataclass
class Plan:
    """How the chunks of a job get computed in this run."""

    chunk: int  # frames per chunk
    starts: list  # every chunk's first frame
    todo: list  # the starts this run computes (the others are recorded)
    program: object  # the compiled chunk step (chunks.Program), None when nothing is left to compute
    key: str  # the job key every record carries (workdir.job_key)
    store: object  # embeddings.partial.npy, memory-mapped, with --save-embeddings
    device: dict  # device_info
    compile_seconds: float


def make_plan(job: Job, subject: Subject, recorded, done: list, log, progress: bool) -> Plan:
    """The chunks of the job and the compiled step for those left (`progress`: one that reports its steps to a
    progress bar); a fresh job's manifest is written here, once its chunk size is known."""
    N, here = len(subject.frames), device_info(subject.mesh)
    _log_start(job, subject, recorded, here, log)
    store, kept = _embeddings(job, subject)
    done = done if kept else []
    t0, program = time.perf_counter(), None
    if recorded is None:  # a fresh job: the planner decides its chunk and compiles it once
        program = plan_program(subject.w, job.size, N, job.settings, chunk_size=job.chunk_size, mesh=subject.mesh,
                               options=PhaseOptions(progress=progress))
    chunk = recorded["chunk_size"] if program is None else program.chunk_size
    starts = list(range(0, N, chunk))
    todo = [s for s in starts if s not in done]
    if done:
        log(f"resuming: {N - frames_in(todo, chunk, N)} of {N} frames are already in {job.work}")
    if todo:
        device = subject.mesh.devices.flat[0]
        log(f"device: {subject.mesh.size} x {device.platform} ({device.device_kind}); one {job.settings.solver} step "
            f"for {chunk} frames x {job.settings.seeds} seed{'s' * (job.settings.seeds != 1)}")
    if todo and program is None:  # a resumed job keeps the chunk its work directory recorded
        options = PhaseOptions(progress=progress)
        program = compile_chunk(subject.w, job.size, chunk, job.settings, subject.mesh, options)[0]
        check_fits(program, subject.mesh)
    compile_seconds = time.perf_counter() - t0 if todo else 0.0
    if recorded is None:
        recorded = job.work.begin(subject.wanted.identity, chunk, here)
    return Plan(chunk, starts, todo, program, job_key(recorded), store, here, compile_seconds)


def _log_start(job: Job, subject: Subject, recorded, here: dict, log) -> None:
    N, T = len(subject.frames), job.size
    log(f"model: {subject.info.source}; layer {job.layer}, head {job.head}")
    log(f"input: {subject.clip.label}, {N} frames of {T}x{T} at {subject.clip.fps:g} fps")
    if recorded is not None and recorded["device"] != here:
        log(f"note: {job.work} was started on {recorded['device']}; frames computed here on {here} may "
            "differ from its others beyond float rounding (README: Determinism)")


def _embeddings(job: Job, subject: Subject) -> tuple[object, bool]:
    """With `save_embeddings`, embeddings.partial.npy memory-mapped and whether it holds a past run's rows;
    (None, True) without."""
    if not job.save_embeddings:
        return None, True
    encoding = job.settings.encoding(subject.info.config.causal)
    # [N, L, E], or [N, 2, L, E] in full mode: the frame's and its transpose's
    views = (2,) if encoding.views == 2 else ()
    return job.work.embeddings_store((len(subject.frames), *views, encoding.tokens(job.size),
                                      subject.info.config.n_embd))


def run(job: Job, subject: Subject, plan: Plan, stop, log) -> float:
    """Compute and record every chunk of `plan.todo`; returns the seconds it took. A stop asked for between
    chunks is `Interrupted`, with every finished chunk recorded."""
    t0, done = time.perf_counter(), []
    results = optimize_frames(plan.program, subject.frames, seed=job.seed, chunk_starts=plan.todo,
                              stop=stop) if plan.todo else ()
    for start, result in results:
        job.work.save_chunk(start, to_rgb(result.picture, job.color), {k: getattr(result, k) for k in RECORD_FIELDS},
                            plan.key, plan.store, None if plan.store is None else result.x)
        finite = np.isfinite(result.loss.reshape(len(result.failed), -1)).all(axis=1)
        for name, which in (("redone at half the learning rate", result.retried),
                            ("non-finite again, shown from its best finite state", result.failed & finite),
                            ("non-finite in every state tried, shown black", result.failed & ~finite)):
            if which.any():
                log(f"non-finite loss: frames {(start + np.flatnonzero(which)).tolist()} {name}")
        done.append(start)
    if len(done) < len(plan.todo):
        raise Interrupted(job.work.interrupted(len(subject.frames)), busy=False)
    return time.perf_counter() - t0


def shared_report(job: Job, subject: Subject, plan: Plan, optimize_seconds: float, log, team) -> dict | None:
    """`report` by process 0 once every process has saved its share (all the chunks computed now count as
    computed); the others wait for it and return None."""
    todo = team.gather("computed", json.dumps(plan.todo).encode(), wait=team.writer)
    if not team.writer:
        team.gather("written")
        log(f"computed {frames_in(plan.todo, plan.chunk, len(subject.frames))} frames; process 0 wrote {job.output}")
        return None
    plan.todo = sorted(s for said in todo for s in json.loads(said))
    found = report(job, subject, plan, optimize_seconds, log)
    team.gather("written", wait=False)
    return found


def report(job: Job, subject: Subject, plan: Plan, optimize_seconds: float, log) -> dict:
    """Assemble the finished render from its records and PNGs (a resumed run shows the same bytes): metrics.json,
    targets.npz and the video; returns the metrics."""
    N, work, clip = len(subject.frames), job.work, subject.clip
    rgb, records = zip(*(work.load_chunk(s, min(plan.chunk, N - s), plan.key, subject.wanted.shape)
                         for s in plan.starts))
    rgb = np.concatenate(rgb)  # [N, T, T, 3] uint8
    kept = {k: np.concatenate([r[k] for r in records]) for k in records[0]}  # [N, ...], or [N, 2, ...] in full mode
    if plan.store is not None:
        work.finish_embeddings(plan.store)
    computed = frames_in(plan.todo, plan.chunk, N)
    found = metrics.of_render(job, subject.info, clip, subject.frames, kept, rgb, {
        "compile_seconds": plan.compile_seconds, "optimize_seconds": optimize_seconds, "computed": computed,
        "chunk_size": plan.chunk, "device": plan.device})
    metrics.write(work, found, clip.frames.mean(axis=-1) if job.color else clip.frames)  # gray targets
    audio = write_render_video(job, clip, rgb)
    earlier = f" ({N - computed} from earlier runs)" if computed < N else ""
    log(f"done: {N} frames{earlier} in {optimize_seconds:.1f} s (+{plan.compile_seconds:.1f} s compile), loss mean "
        f"{found['mean_loss']:.4g} median {found['median_loss']:.4g}, {fidelity.summary_text(found)}, "
        f"{job.settings.display} display; video {job.output} "
        f"({'with' if audio else 'no'} audio), frames and metrics in {work}")
    return found


def write_render_video(job: Job, clip, rgb: np.ndarray) -> str | None:
    """The video of frames `rgb` [N, T, T, 3] (beside their targets with `side_by_side`); returns its audio file."""
    if job.side_by_side:
        targets = levels(clip.frames)
        targets = targets if job.color else np.repeat(targets[..., None], 3, axis=-1)
        rgb = np.concatenate([targets, rgb], axis=2)  # [N, T, 2T, 3]
    audio = job.audio or clip.audio
    write_video(rgb, job.output, fps=clip.fps, audio=audio, audio_start=clip.start / clip.fps)
    return audio


def device_info(mesh) -> dict:
    device = mesh.devices.flat[0]
    return {"platform": device.platform, "kind": device.device_kind, "count": mesh.size}
