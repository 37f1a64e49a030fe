"""Running a whole clip: chunks of frames through ONE compiled program, sharded over all local devices.

The frame axis of every chunk is split over a 1-D device mesh (`jax.sharding`): frames are
independent, so each device optimises its own frames and only the chunk-level seed choice (when
asked for) talks across devices. The last chunk is padded rather than recompiled. The mesh holds this
process's devices only: under JAX's multi-process runtime each process computes chunks of its own
(processes.py), with the program a one-process run compiles.

Non-finite guard: a frame whose loss or attention map comes out NaN or Inf is redone once from fresh
starts at half the learning rate, by a second program compiled only when first needed, that ends
every phase at its best finite parameters; a frame non-finite on that retry too is reported.

`optimize_frames` is the one chunk driver (render, survey, benchmarks and the API): the next chunk
computes in a worker thread while the host checks the last one's head-space lift, pictures it and
measures its fidelity (PSNR, SSIM against the targets), and while the caller handles it.
"""
import collections
import concurrent.futures
import dataclasses
import functools
import math
import os
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from badapple_jax import fidelity
from badapple_jax.cpu import compiler_options
from badapple_jax.encoding import largest_size
from badapple_jax.errors import BadInputError, OptionError
from badapple_jax.model import HeadWeights, group_of, is_int
from badapple_jax.progress import Running
from badapple_jax.optimize import (NUMBERS, PRECISIONS, RETRY, Chunk, ChunkResult, PhaseOptions, Settings,
                                   checked_frames, optimize_chunk_jit, traced_numbers)
from badapple_jax.solver import Solver, make_solver

MEMORY_MARGIN = 0.7  # use at most this share of the free device memory
MAX_AUTO_CHUNK = {"cpu": 8, "gpu": 1024}  # CPU: caches favour small chunks (x0.84-0.96 of 16, benchmarks/RESULTS.md)
SEED_MAX = 2**31 - 1  # the seed reaches the compiled program as a non-negative int32


def frame_mesh(devices=None) -> Mesh:
    return Mesh(np.asarray(devices if devices is not None else jax.local_devices()), ("frames",))


@dataclasses.dataclass(frozen=True)
class Program:
    """`optimize_chunk` compiled for one chunk shape and step plan, with its weights already on the devices and
    the numbers of `settings` (traced in the program: any others run it too, `with_settings`)."""

    compiled: Any  # jax.stages.Compiled
    w: HeadWeights
    solver: Solver  # settings.solver's, for these weights (solver.make_solver)
    chunk_size: int  # frames per call
    T: int  # of the T x T frames it takes
    settings: Settings
    mesh: Mesh  # the devices its frame axis is split over
    options: PhaseOptions = PhaseOptions()  # its phases' optimiser; progress: it reports its steps (progress.py)

    def __call__(self, chunk: Chunk, seed) -> ChunkResult:
        return self.compiled(self.w, self.solver, chunk, seed, traced_numbers(self.settings))

    def with_settings(self, settings: Settings) -> "Program":
        """The same program run with other numbers (lr, b2, ...): refused where the step plan differs."""
        settings.check()
        if jax.tree.structure(settings) != jax.tree.structure(self.settings):
            raise BadInputError("settings differ from the compiled program's in more than their numbers "
                                f"({', '.join(NUMBERS)}): compile a program for them.")
        return dataclasses.replace(self, settings=settings)


TICK = 0.25  # seconds between looks at a running chunk's progress
PROGRAMS_KEPT = 8  # compiled programs kept for reuse, the least recently used dropped first
_programs: collections.OrderedDict = collections.OrderedDict()


def compile_chunk(w: HeadWeights, T: int, chunk_size: int, settings: Settings, mesh: Mesh | None = None,
                  options: PhaseOptions = PhaseOptions()):
    """Ahead-of-time compile of `optimize_chunk` for one chunk shape -> (program, seconds it took); `options`
    (PhaseOptions): the phases' optimiser, the non-finite guard's best-state keeping, progress reports for a bar.

    `chunk_size` must be a multiple of the mesh's device count. The executable is kept and reused for the same
    step plan, shapes and mesh: settings that differ only in their numbers (`NUMBERS`) and other weights of the
    same shapes compile once."""
    settings.check()
    encoding = settings.encoding(w.config.causal)
    L, n = encoding.tokens(T), w.config.n_positions
    if not 2 <= T or L > n:
        raise OptionError(f"`size` {T} must be in 2..{largest_size(encoding, n)}: the {settings.display} display "
                          f"(mode {settings.mode}) reads {L} tokens and the model has {n} positions.")
    mesh = mesh or frame_mesh()
    t0 = time.perf_counter()
    split, whole = NamedSharding(mesh, PartitionSpec("frames")), NamedSharding(mesh, PartitionSpec())
    w, solver = jax.device_put((w, make_solver(settings.solver, w)), whole)
    channels = group_of(w)  # a group of heads: one target channel each
    shapes = (
        Chunk(jax.ShapeDtypeStruct((chunk_size, *channels, T, T), jnp.float32, sharding=split),
              jax.ShapeDtypeStruct((chunk_size,), jnp.int32, sharding=split),
              jax.ShapeDtypeStruct((chunk_size,), jnp.bool_, sharding=split)),
        jax.ShapeDtypeStruct((), jnp.int32, sharding=whole),
        jax.tree.map(lambda _: jax.ShapeDtypeStruct((), jnp.float32, sharding=whole), settings),
    )
    weights = jax.tree.map(lambda a: (a.shape, a.dtype), (w, solver))  # their config is in the tree's structure
    key = (jax.tree.structure(settings), jax.tree.structure(weights), tuple(jax.tree.leaves(weights)), T, chunk_size,
           mesh, options)
    compiled = _programs.pop(key, None)
    if compiled is None:
        with jax.default_matmul_precision(PRECISIONS[settings.precision]):
            compiled = optimize_chunk_jit.lower(w, solver, *shapes, options=options).compile(
                compiler_options(solver.EIGEN_MATMULS, mesh.devices.flat[0].platform))
    _programs[key] = compiled
    while len(_programs) > PROGRAMS_KEPT:
        _programs.popitem(last=False)
    return Program(compiled, w, solver, chunk_size, T, settings, mesh, options), time.perf_counter() - t0


def needed_bytes(program: Program) -> int:
    """Bytes one device holds while running `program`: its arguments, outputs and temporaries."""
    m = program.compiled.memory_analysis()
    return m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes


def check_fits(program: Program, mesh: Mesh) -> None:
    """Refuse, in one line, a program that cannot fit the free memory of a device."""
    needed, free = needed_bytes(program), free_bytes_per_device(mesh)
    if needed > free:
        raise OptionError(f"One chunk needs {needed / 2**30:.1f} GiB per device but {free / 2**30:.1f} GiB are free: "
                          "lower `chunk_size`, `seeds`, `steps` or `size`.")


def free_bytes_per_device(mesh: Mesh) -> int:
    device = mesh.devices.flat[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // mesh.size  # host devices share RAM


def plan(w: HeadWeights, T: int, n_frames: int, settings: Settings, *, chunk_size: int | None = None,
         mesh: Mesh | None = None, options: PhaseOptions = PhaseOptions()) -> Program:
    """The one chunk planner: the compiled program for `n_frames` frames of T x T shown by `w` with `settings`, its
    frame axis split over `mesh` (default: every device). `chunk_size` frames per call, fitted to the clip and the
    devices (`fit_chunk_size`); None: as many as fit the free memory (`auto_program`). A chunk that cannot fit a
    device is refused. `options` (PhaseOptions): `optimizer`, the optax transformation of each phase (default Adam
    on the settings' schedule); `progress`, the program reports its steps as it computes, for a progress bar."""
    mesh = mesh or frame_mesh()
    if not is_int(n_frames) or n_frames < 1:
        raise BadInputError(f"n_frames, the number of frames, must be an integer of at least 1, got {n_frames!r}.")
    if chunk_size is not None and (not is_int(chunk_size) or chunk_size < 1):
        raise OptionError(f"`chunk_size` must be an integer of at least 1, got {chunk_size!r}.")
    if chunk_size is None:
        program = auto_program(w, T, n_frames, settings, mesh, options)
    else:
        program, _ = compile_chunk(w, T, fit_chunk_size(chunk_size, n_frames, mesh), settings, mesh, options)
    check_fits(program, mesh)
    return program


def auto_program(w: HeadWeights, T: int, n_frames: int, settings: Settings, mesh: Mesh | None = None,
                 options: PhaseOptions = PhaseOptions()) -> Program:
    """The program for as many frames per step as fit the free device memory, compiled once where the largest
    useful chunk fits (on a CPU with room, nearly always). Otherwise its own memory figures bound the bytes a
    frame adds (all but the weights counted per frame: an over-estimate, so the cut is safe) and a chunk cut to
    fit is compiled. Chunks are evened out so the last one carries little padding."""
    mesh = mesh or frame_mesh()
    n = mesh.size
    chunk = auto_chunk_size(n_frames, mesh)
    program, _ = compile_chunk(w, T, chunk, settings, mesh, options)
    budget, needed = MEMORY_MARGIN * free_bytes_per_device(mesh), needed_bytes(program)
    if needed <= budget or chunk == n:
        return program
    fixed = sum(a.nbytes for a in jax.tree.leaves((program.w, program.solver)))  # the weights, on every device
    per_frame = max((needed - fixed) / (chunk // n), 1)
    chunk = auto_chunk_size(n_frames, mesh, int((budget - fixed) // per_frame))
    return compile_chunk(w, T, chunk, settings, mesh, options)[0]


def auto_chunk_size(n_frames: int, mesh: Mesh, per_device: int | None = None) -> int:
    """The chunk size `auto_program` takes for `n_frames` frames: at most `per_device` frames per device (default:
    the platform's cap), evened out so the last chunk carries little padding."""
    n = mesh.size
    cap = MAX_AUTO_CHUNK.get(mesh.devices.flat[0].platform, MAX_AUTO_CHUNK["gpu"])
    per_device = max(min(n_frames if per_device is None else per_device, max(cap // n, 1), math.ceil(n_frames / n)), 1)
    n_chunks = math.ceil(n_frames / (per_device * n))
    return math.ceil(n_frames / n_chunks / n) * n


def fit_chunk_size(chunk_size: int, n_frames: int, mesh: Mesh) -> int:
    """At most the clip, and a multiple of the device count so every device gets whole frames."""
    return math.ceil(min(chunk_size, n_frames) / mesh.size) * mesh.size


def chunk_inputs(frames: np.ndarray, index: np.ndarray, chunk_size: int) -> Chunk:
    """The frames at `index` as one chunk, padded by repeating the last so every chunk has the compiled shape."""
    valid = np.arange(chunk_size) < len(index)
    index = np.concatenate([index, np.full(chunk_size - len(index), index[-1])]).astype(np.int32)
    return Chunk(frames[index], index, valid)


def finite_frames(result: ChunkResult) -> np.ndarray:  # -> [B] bool
    """Frames whose losses and attention maps are all finite (both halves in full mode, all heads)."""
    B = len(result.loss)
    return (np.isfinite(result.last_step_loss.reshape(B, -1)).all(1) & np.isfinite(result.loss.reshape(B, -1)).all(1)
            & np.isfinite(result.attention.reshape(B, -1)).all(1))


def run_chunk(program: Program, frames: np.ndarray, index: np.ndarray, seed: int, mesh: Mesh,
              retry=None) -> ChunkResult:
    """Optimise frames[index] (at most one chunk) -> result on the host, padding removed, with the
    non-finite guard: frames that come out non-finite are redone by `retry()` (the program to use,
    built on demand) from starts keyed by index + RETRY; `retried` and `failed` say which."""
    Running.restart()  # its program's progress reports count from here
    result = _run(program, frames, index, seed, mesh, 0)
    retried = ~finite_frames(result) if retry is not None else np.zeros(len(index), bool)
    failed = np.zeros(len(index), bool)
    if retried.any():
        again = _run(retry(), frames, index[retried], seed, mesh, RETRY)
        went_bad = ~np.isfinite(again.refine_trace.reshape(len(again.loss), -1)).all(1)
        failed[retried] = ~finite_frames(again) | went_bad
        result = jax.tree.map(lambda a, b: _scatter(a, b, retried), result, again)
    return result.replace(retried=retried, failed=failed)


def finish_chunk(program: Program, result: ChunkResult, frames: np.ndarray, index: np.ndarray) -> ChunkResult:
    """The host's part of a chunk, done while the next one computes: the solver's check (head space: the lift),
    and `picture`, `psnr` and `ssim` filled in."""
    program.solver.check(result, index)
    attention, picture, psnr, ssim = shown(result.attention, frames[index],
                                           program.settings.encoding(program.w.config.causal))
    return result.replace(attention=attention, picture=picture, psnr=psnr, ssim=ssim)


def shown(attention, targets, encoding):  # [B, (V, H,) L, L], [B, (H,) T, T] -> attention, picture, psnr [B], ssim [B]
    """What the display shows of attention maps and how close it is to the targets: NaNs are pictured as 0
    (never displayed), the picture is the encoding's, fidelity is taken over its region."""
    attention = np.where(np.isfinite(attention), attention, 0.0)
    picture = encoding.picture(attention)  # [B, (H,) T, T]
    region = encoding.region(picture.shape[-1])
    return attention, picture, fidelity.psnr(picture, targets, region), fidelity.ssim(picture, targets, region)


def _run(program: Program, frames: np.ndarray, index: np.ndarray, seed: int, mesh: Mesh, offset: int):
    split = NamedSharding(mesh, PartitionSpec("frames"))
    chunk = chunk_inputs(frames, index, program.chunk_size)
    result = program(jax.device_put(chunk.replace(index=chunk.index + np.int32(offset)), split), np.int32(seed))
    return jax.tree.map(lambda a: a[:len(index)], jax.device_get(result))


def _scatter(a, b, mask):  # a [B, ...] with b [mask.sum(), ...] put at the masked frames
    out = a.copy()
    out[mask] = b
    return out


def retry_program(program: Program):
    """() -> the guard's program for `program`'s (fresh starts at half the learning rate, best finite state kept),
    compiled once."""
    s = program.settings
    half = dataclasses.replace(s, lr=s.lr / 2, lr_min=s.lr_min / 2)
    options = dataclasses.replace(program.options, keep_best=True)
    return functools.cache(lambda: compile_chunk(program.w, program.T, program.chunk_size, half, program.mesh,
                                                 options)[0])


def optimize_frames(
    program: Program,
    frames: np.ndarray,
    *,
    seed: int = 0,
    chunk_starts=None,
    stop=None,
) -> Iterator[tuple[int, ChunkResult]]:
    """Optimise every frame [N, T, T] in [0, 1] ([N, H, T, T] for a group of heads), chunk after chunk
    through one compiled program, with the non-finite guard, the solver's check (head space: the lift) and
    fidelity.

    `program` (`plan(w, T, N, settings)` or `compile_chunk`) carries the weights, settings, chunk size and mesh;
    it serves any number of frames (fewer than its chunk size are padded to it) and, through
    `program.with_settings`, any settings of its step plan. A program planned with `progress` shows a bar.
    Yields (start, result) per chunk, padding removed, arrays on the host; the next chunk computes
    while the caller handles this one.
    `chunk_starts` (default: every chunk), each chunk's first frame, are the chunks to compute, e.g. those a
    resumed render still lacks (a chunk's start, not a random start: `ChunkResult.start` is the kept one);
    once `stop.asked` is true no further chunk starts."""
    frames, starts = checked_request(program, frames, seed, chunk_starts)
    N, chunk_size, mesh = len(frames), program.chunk_size, program.mesh
    retry = retry_program(program)
    queue = iter(starts)
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="badapple-chunk")

    def submit():  # -> (start, future) of the next chunk, or None
        s = None if stop is not None and stop.asked else next(queue, None)
        if s is None:
            return None
        index = np.arange(s, min(s + chunk_size, N))
        return s, index, pool.submit(run_chunk, program, frames, index, seed, mesh, retry)

    losses, psnrs = [], []
    try:
        with tqdm(total=N, initial=N - frames_in(starts, chunk_size, N), unit="frame", disable=not program.options.progress,
                  dynamic_ncols=True) as bar:
            done = bar.n
            pending = submit()
            while pending:
                start, index, future = pending
                result = wait(future, bar, done, len(index))
                pending = submit()
                result = finish_chunk(program, result, frames, index)
                losses.extend(np.ravel(result.loss).tolist())
                psnrs.extend(result.psnr.tolist())
                bar.set_postfix(loss=f"{np.mean(losses):.3g}", psnr=f"{np.median(psnrs):.1f} dB", refresh=False)
                done += len(index)
                bar.n = done
                bar.refresh()
                yield start, result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def checked_request(program: Program, frames, seed, chunk_starts) -> tuple[np.ndarray, list]:
    """`optimize_frames`' inputs checked in its terms, before any chunk runs -> (frames on the host, chunk starts)."""
    if not isinstance(program, Program):
        raise BadInputError("optimize_frames takes a Program from bj.plan(w, T, n_frames, settings), then the "
                            f"frames; got a {type(program).__name__} first.")
    frames = np.asarray(checked_frames(frames, program.w))
    N, T = len(frames), frames.shape[-1]
    if T != program.T:
        raise BadInputError(f"frames are {T} x {T} but the program was planned for {program.T} x {program.T}: "
                            f"plan(w, {T}, n_frames, settings) for them.")
    if not is_int(seed) or not 0 <= seed <= SEED_MAX:
        raise OptionError(f"`seed` must be an integer in 0..{SEED_MAX}, got {seed!r}.")
    every = range(0, N, program.chunk_size)
    starts = list(every) if chunk_starts is None else list(chunk_starts)
    if any(not is_int(s) or s not in every for s in starts) or len(set(starts)) < len(starts):
        raise OptionError(f"`chunk_starts` must be distinct chunk starts of these {N} frames (multiples of the "
                          f"chunk size {program.chunk_size} below {N}), got {starts}.")
    return frames, starts


def wait(future, bar, done: int, frames: int) -> ChunkResult:
    """The chunk's result once `future` has it; meanwhile `bar` (at `done` frames) moves through the chunk's
    `frames` as its program reports its steps (progress.py)."""
    while True:
        try:
            return future.result(timeout=TICK)  # waits in Python: a signal's handler runs at once
        except concurrent.futures.TimeoutError:
            if not bar.disable:  # whole frames; the elapsed time and the estimate move at every tick
                bar.n = done + int(frames * min(Running.done, 1.0))
                bar.refresh()


def frames_in(starts, chunk_size: int, n_frames: int) -> int:
    """How many frames the chunks starting at `starts` hold."""
    return sum(min(chunk_size, n_frames - s) for s in starts)
