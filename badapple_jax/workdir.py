"""The work directory of a render: a manifest of what is being rendered and one record per finished chunk.

    WORKDIR/.lock                    held (flock) by the one render writing here; its text names that render
    WORKDIR/manifest.json            settings, model and input identity (hashes), chunk size
    WORKDIR/frames/frame_NNNNNN.png  the display of every finished frame
    WORKDIR/targets/target_NNNNNN.png  each frame's gray target, written by `viewer` for its page to load
    WORKDIR/chunks/chunk_NNNNNN.npz  losses, chosen starts, guard flags and fidelity of the chunk starting at frame N,
                                     its first frame and a SHA-256 of each of its frame PNGs
    WORKDIR/embeddings.partial.npy   with --save-embeddings, filled chunk by chunk; embeddings.npy when complete

Every file is written to a temporary name, fsynced and renamed, and a chunk's record is written last,
after its frames and embeddings are on disk: a record on disk means the whole chunk is. Each record
names the job it belongs to (a hash of the manifest) and the frames it holds (the first one's index, a
hash of each PNG), so a record of another job or of a manifest edited since, a record moved to another
chunk's name, or a frame PNG replaced by any other is never taken for this one's. A rerun of the same job
skips recorded chunks, after checking every record and frame it keeps; a different job is refused, naming
what differs, unless restarted; a damaged record or frame is refused in one line. Every check is made
before the first byte is written: a refused command leaves the directory as it was.

The identity of a job (`identity`) is the one rule for reuse: the options that change a result (the
optimiser's settings, the encoding's constants among them), a hash of the decoded targets, and the model:
every configuration value its family reads (`ModelConfig`) and a hash of the head's weights.
"""
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import io
import json
import os
import socket
import zipfile
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import jax
import numpy as np

from badapple_jax.errors import BadInputError, OptionError
from badapple_jax.files import TMP, ordinary_mode, sync_dir, write_atomic
from badapple_jax.video import BUILT_IN

FORMAT = 4  # bump when the layout changes: an older work directory is then refused, not misread
RECORD_FIELDS = ("loss", "last_step_loss", "head_loss", "space_loss", "start", "explore_loss", "retried", "failed",
                 "psnr", "ssim")  # a chunk's results, per frame
PROVENANCE = ("first", "png_sha256")  # which frames a record vouches for: the first one's index, each PNG's hash
LOCK = ".lock"
RESTART = "add `restart` to start this work directory over, or choose another `workdir`"
FIGURES = ("loss_timeline.png", "loss_histogram.png", "comparison_grid.png", "best_worst.png",
           "fidelity_timeline.png", "fidelity_histogram.png")  # `plots` draws them, in this order
VIEWER = "viewer.html"  # `viewer`'s page
OURS = ("manifest.json", "metrics.json", "targets.npz", "embeddings.npy", "embeddings.partial.npy", *FIGURES,
        VIEWER)
MANIFEST_FIELDS = {"format": int, "options": dict, "input": dict, "model": dict, "chunk_size": int, "device": dict}
# Job fields that change what is optimised; output, audio and side-by-side only change the assembled video.
RESULT_OPTIONS = ("settings", "layer", "head", "heads", "color", "size", "fps", "start", "max_frames", "seed",
                  "save_embeddings")


def sha256_of(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def identity(job, clip, targets: np.ndarray, w, model_source: str) -> dict:
    """What a chunk's results depend on: the options (every setting of the optimiser and the encoding), a hash
    of the decoded targets, and the model: every configuration value its family reads and a hash of the
    head's weights."""
    options = {k: v for k, v in dataclasses.asdict(job).items() if k in RESULT_OPTIONS}
    path = Path(job.input)
    named = job.input in BUILT_IN or not path.exists()
    return json.loads(json.dumps({  # as the manifest will read back: tuples as lists, NumPy scalars as numbers
        "format": FORMAT,
        "options": {**options.pop("settings"), **options},
        "input": {"label": clip.label, "path": job.input if named else str(path.resolve()),
                  "bytes": path.stat().st_size if path.is_file() and not named else None,  # for people: not compared
                  "frames": len(targets), "sha256": sha256_of(targets)},
        "model": {"source": model_source, "config": dataclasses.asdict(w.config),
                  "sha256": sha256_of(*jax.tree.leaves(w))},
    }, default=lambda v: v.item()))


def differences(recorded: dict, wanted: dict) -> list[str]:
    """The options, input and model that differ, as "`steps` 1500 there, 8 here" phrases (options marked as
    OptionError marks them: the command line shows them as its flags)."""
    if recorded.get("format") != FORMAT:
        return [f"the layout (format {recorded.get('format')} there, {FORMAT} here)"]
    said = lambda v: "unset" if v is None else v  # noqa: E731
    options = recorded["options"]
    found = [f"`{k}` {said(options.get(k))} there, {said(v)} here"
             for k, v in wanted["options"].items() if options.get(k) != v]
    if found:
        return found  # the input and model hashes follow from these; naming them too would only repeat
    config = recorded["model"]["config"]
    found = [f"the model's {k} ({said(config.get(k))} there, {said(v)} here)"
             for k, v in wanted["model"]["config"].items() if config.get(k) != v]
    for what, name in (("input", "label"), ("model", "source")):
        if recorded[what]["sha256"] != wanted[what]["sha256"]:
            found.append(f"the {what} ({recorded[what][name]} there, {wanted[what][name]} here: not the same "
                         f"{'decoded frames' if what == 'input' else 'weights'})")
    return found


def frame_path(work: Path, i: int) -> Path:
    return work / "frames" / f"frame_{i:06d}.png"


def target_path(work: Path, i: int) -> Path:
    return work / "targets" / f"target_{i:06d}.png"


def record_path(work: Path, start: int) -> Path:
    return work / "chunks" / f"chunk_{start:06d}.npz"


@dataclasses.dataclass(frozen=True)
class Wanted:
    """A job as its work directory sees it."""

    identity: dict  # identity(...): what its results depend on
    chunk: int  # frames per chunk of a fresh render of it
    chosen: bool  # whether the user fixed the chunk size (else any recorded one is resumed)
    devices: int  # the devices a chunk is shared over
    shape: tuple  # every frame PNG's: (T, T, 3)
    prefix_sha: Callable[[int], str]  # n -> the hash of its first n targets


@dataclasses.dataclass(frozen=True)
class Opening:
    """What a render will do with its work directory, decided before anything is written."""

    recorded: dict | None  # the manifest of the job to resume (after growing it, if `grow`); None: a fresh start
    done: tuple = ()  # starts of the recorded chunks, each checked, that will be kept
    grow: bool = False  # the recorded job is this one with fewer frames of the same input: extend it first
    wipe: bool = False  # --restart: delete our files first


def read_manifest(work: Path) -> dict | None:
    """The manifest recorded in `work`, or None where there is none; ValueError if it is unreadable or not one."""
    path = work / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, RecursionError) as err:  # JSON nested a few thousand deep: RecursionError
        raise ValueError(_short(err)) from None
    check_manifest(manifest)
    return manifest


def write_manifest(work: Path, manifest: dict) -> None:
    """The manifest of a fresh job, once its chunk size is known: written before its first chunk's record."""
    write_atomic(work / "manifest.json", json.dumps(manifest, indent=1).encode())


def saved_frames(work: Path, n_frames: int) -> int:
    """How many of the job's `n_frames` frames `work` holds recorded (0 before its manifest is written)."""
    try:
        chunk = read_manifest(work)["chunk_size"]
    except (ValueError, TypeError):  # no manifest yet (None), or unreadable
        return 0
    starts = range(0, n_frames, chunk)
    return sum(min(chunk, n_frames - s) for s in starts if record_path(work, s).is_file())


def plan_opening(work: Path, wanted: Wanted, restart: bool) -> Opening:
    """Decide, reading only, what to do with `work` for the job `wanted`; every record and frame to be kept is
    checked here, so a refusal comes before the first byte is written.

    A work directory of another job is refused, naming the differences, unless `restart`, which deletes our
    files in it (and nothing else), or unless the job only asks for more frames of the same input and its
    chunks are those a fresh render would take, so that growing it ends byte for byte as a fresh render."""
    manifest = work / "manifest.json"
    try:
        recorded = read_manifest(work)
    except ValueError as err:
        if not restart:
            raise OptionError(f"Cannot read {manifest} ({err}): add `restart` to start this work directory "
                              "over.") from None
        recorded = None
    stale = recorded is None and (any(work.glob("frames/frame_*.png")) or any(work.glob("chunks/chunk_*.npz")))
    foreign = [name for name in OURS if (work / name).exists()] if recorded is None and not stale else []
    if foreign:  # no manifest, no frames, no records: not a render of ours, whatever --restart says
        raise OptionError(f"Work directory {work} holds {foreign[0]} but no render (no manifest.json, frames or "
                          "chunk records): a render would overwrite it; choose another `workdir`.")
    if restart:
        return Opening(None, wipe=True)
    if stale:
        raise OptionError(f"Work directory {work} holds a render without a manifest.json (from an older version?): "
                          "add `restart` to replace it, or choose another `workdir`.")
    if recorded is None:
        return Opening(None)
    grow = grows(recorded, wanted.identity, wanted.prefix_sha)
    if not grow and (found := differences(recorded, wanted.identity)):
        raise OptionError(f"Work directory {work} belongs to another render: {'; '.join(found)}. Rerun with the "
                          "same options to resume it, add `restart` to discard it, or choose another `workdir`.")
    check_chunks(work, recorded, wanted, grow)
    n, chunk = recorded["input"]["frames"], recorded["chunk_size"]
    starts = complete_chunks(recorded) if grow else range(0, n, chunk)
    return Opening(recorded, tuple(finished(work, starts, n, chunk, job_key(recorded))), grow)


def check_chunks(work: Path, recorded: dict, wanted: Wanted, grow: bool) -> None:
    """Refuse to resume (or grow) `recorded` in chunks other than those `wanted` takes, or on devices that cannot
    share its chunks evenly."""
    there, here = recorded["chunk_size"], wanted.chunk
    if grow and there != here:
        n, N = recorded["input"]["frames"], wanted.identity["input"]["frames"]
        raise OptionError(f"Work directory {work} holds {n} frames computed in chunks of {there}, but a fresh render "
                          f"of {N} frames takes chunks of {here}, so growing it would not give the same result: "
                          f"rerun with `chunk_size` {there} to extend it, add `restart` to render all {N} afresh, "
                          "or choose another `workdir`.")
    if wanted.chosen and there != here:
        raise OptionError(f"Work directory {work} belongs to another render: `chunk_size` {there} there, {here} "
                          f"here. Rerun with `chunk_size` {there} (or auto) to resume it, add `restart` to discard "
                          "it, or choose another `workdir`.")
    if there % wanted.devices:
        raise OptionError(f"Work directory {work} was started with chunks of {there} frames, which "
                          f"{wanted.devices} devices cannot share evenly: resume it on the devices it started on, "
                          "or add `restart`.")


def open_workdir(work: Path, opening: Opening, wanted: Wanted, log=lambda _: None) -> dict | None:
    """Carry out `opening` (plan_opening's): wipe or grow, make the subdirectories, remove the temporary files of
    a killed run; returns the manifest to resume (None for a fresh start)."""
    if opening.wipe:
        wipe(work)
    recorded = extend(work, opening.recorded, wanted.identity, log) if opening.grow else opening.recorded
    try:
        for sub in ("frames", "chunks"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        remove_leftovers(work)
        write_atomic(work / f"probe{TMP}", b"")  # fails here, not after an hour, if the disk refuses writes
        (work / f"probe{TMP}").unlink()
    except OSError as err:
        raise BadInputError(f"Cannot use work directory {work}: {err.strerror or err}.") from err
    return recorded


def grows(recorded: dict, wanted: dict, prefix_sha) -> bool:
    """Whether `wanted` is `recorded` with more frames of the same input: every other option and the model
    equal, and the recorded frames the first frames of the wanted ones (the same decoded bytes)."""
    n = recorded["input"].get("frames")  # checked: an edited manifest is refused as damaged, not grown
    same_model = all(recorded["model"].get(k) == wanted["model"][k] for k in ("config", "sha256"))
    if recorded.get("format") != FORMAT or not same_model or not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return False
    others = lambda m: {k: v for k, v in m["options"].items() if k != "max_frames"}  # noqa: E731
    return (others(recorded) == others(wanted) and wanted["input"]["frames"] > n
            and recorded["input"]["sha256"] == prefix_sha(n))


def complete_chunks(recorded: dict) -> list[int]:
    """The starts of the chunks of a recorded job that hold no padding: growing it keeps exactly these."""
    n, chunk = recorded["input"]["frames"], recorded["chunk_size"]
    return list(range(0, n - n % chunk, chunk))


def extend(work: Path, recorded: dict, wanted: dict, log) -> dict:
    """Make a work directory of the first n frames one of all the wanted frames: complete chunks are kept (their
    frames' results depend on nothing else) and re-keyed, the last partial chunk (computed with padding where new
    frames now stand) is dropped, saved embeddings grow; the manifest, written last, names the new job. Each
    step can be redone, so a run killed half-way extends again on the next."""
    n, N = recorded["input"]["frames"], wanted["input"]["frames"]
    grown = {**recorded, "options": wanted["options"], "input": wanted["input"]}
    keys = {job_key(recorded), job_key(grown)}
    for path in (work / "embeddings.partial.npy", work / "embeddings.npy"):
        if path.is_file():
            grow_embeddings(work, path, N)
            break
    kept = complete_chunks(recorded)
    for start in range(0, n, recorded["chunk_size"]):
        path = record_path(work, start)
        if not path.is_file():
            continue
        if start not in kept:  # the partial chunk: padded where new frames now stand
            path.unlink()
            continue
        record = read_record(work, path, keys, start)
        write_record(work, start, {**record, "first": np.asarray(start)}, job_key(grown))
    sync_dir(work / "chunks")
    write_manifest(work, grown)
    log(f"extending {work} from {n} to {N} frames: the first {len(kept) * recorded['chunk_size']} are kept")
    return grown


def grow_embeddings(work: Path, path: Path, N: int) -> None:
    """embeddings(.partial).npy of n rows -> embeddings.partial.npy of N rows, the first n copied, the rest
    allocated (a full disk fails here, not with SIGBUS later)."""
    old = np.load(path, mmap_mode="r")
    if len(old) >= N:
        return
    tmp = work / f".embeddings.partial.npy{TMP}"
    new = allocated(tmp, (N, *old.shape[1:]))
    new[:len(old)] = old
    sync_memmap(new)
    os.replace(tmp, work / "embeddings.partial.npy")
    if path.name == "embeddings.npy":
        path.unlink()
    sync_dir(work)


def check_manifest(m) -> None:
    """Raise ValueError unless `m` has a manifest's fields, of its types and values."""
    if not isinstance(m, dict):
        raise ValueError("not a manifest of this program")
    for key, kind in MANIFEST_FIELDS.items():
        if not isinstance(m.get(key), kind) or isinstance(m.get(key), bool):
            raise ValueError(f"its {key} is {json.dumps(m.get(key))[:40]}, not a {kind.__name__}")
    if m["chunk_size"] < 1:
        raise ValueError(f"its chunk_size is {m['chunk_size']}")
    for what, fields in (("input", ("label", "sha256")), ("model", ("source", "sha256"))):
        if not all(isinstance(m[what].get(f), str) for f in fields):
            raise ValueError(f"its {what} lacks {' or '.join(fields)}")
    if not isinstance(m["model"].get("config"), dict):
        raise ValueError("its model lacks its config")


def job_key(manifest: dict) -> str:
    """The hash every chunk record of this job carries: of the manifest's options, identities and chunk size."""
    kept = {k: manifest[k] for k in ("format", "options", "input", "model", "chunk_size")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def one_writer(work: Path):
    """Hold WORKDIR/.lock (an OS lock: the kernel drops it when the process ends, however it ends, so a stale
    file never blocks) while the body runs; a second render on the same directory is refused, naming the first.
    Directories made for the lock are removed again if the body fails with nothing in them."""
    made = [p for p in (work, *work.absolute().parents) if not p.exists()]
    new_lock = not (work / LOCK).exists()
    try:
        work.mkdir(parents=True, exist_ok=True)
        fd = os.open(work / LOCK, os.O_RDWR | os.O_CREAT, ordinary_mode())
    except OSError as err:
        raise BadInputError(f"Cannot use work directory {work}: {err.strerror or err}.") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise OptionError(f"Work directory {work} is in use by another render ({holder}): wait for it to finish, "
                          "or choose another `workdir`.") from None
    before = os.pread(fd, 200, 0)
    try:
        since = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode(), 0)
        yield
    except BaseException:  # a refused or stopped render leaves the lock file as it found it
        if made:
            discard_if_empty(work, made)
        elif new_lock:
            (work / LOCK).unlink(missing_ok=True)
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, before, 0)
        raise
    finally:
        os.close(fd)


def remove_leftovers(work: Path) -> None:
    """Delete the temporary files of a write that never finished."""
    for leftover in [*work.glob(f".*{TMP}"), *work.glob(f"*/.*{TMP}")]:
        leftover.unlink(missing_ok=True)


def wipe(work: Path) -> None:
    """Delete the files a render (and its viewer) writes in `work`, and nothing else."""
    for path in [*work.glob("frames/frame_*.png"), *work.glob("targets/target_*.png"), *work.glob("chunks/chunk_*.npz"),
                 *(work / f for f in OURS)]:
        path.unlink(missing_ok=True)


def discard_if_empty(work: Path, made: list[Path]) -> None:
    """Remove the work directory and its parents that this run `made`, if nothing was recorded in them."""
    (work / LOCK).unlink(missing_ok=True)
    for path in (work / "frames", work / "chunks", *made):
        try:
            path.rmdir()
        except OSError:
            if path in made:
                return


def finished(work: Path, starts, n_frames: int, chunk_size: int, key: str) -> list[int]:
    """Those of `starts` whose chunk record and frames are on disk, each checked by its record's hashes (not
    decoded: `load_chunk` does that once, when the render is assembled); a damaged one is a BadInputError."""
    done = [s for s in starts if record_path(work, s).is_file()]
    for s in done:
        checked_chunk(work, s, min(chunk_size, n_frames - s), key)
    return done


def save_chunk(work: Path, start: int, rgb: np.ndarray, record: dict, key: str, embeddings=None, x=None) -> None:
    """Frames [k, H, W, 3] uint8 as PNGs, the rows of `embeddings` (a memmap) from `x`, then the record
    (with the job's `key`, the first frame's index and each PNG's hash)."""
    hashes = []
    for i, frame in enumerate(rgb):
        png = iio.imwrite("<bytes>", frame, extension=".png")
        write_atomic(frame_path(work, start + i), png)
        hashes.append(hashlib.sha256(png).hexdigest())
    sync_dir(work / "frames")
    if embeddings is not None:
        embeddings[start:start + len(x)] = x
        sync_memmap(embeddings)
    write_record(work, start, {**{k: np.asarray(record[k]) for k in RECORD_FIELDS}, "first": np.asarray(start),
                               "png_sha256": np.asarray(hashes)}, key)
    sync_dir(work / "chunks")


def write_record(work: Path, start: int, record: dict, key: str) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, job=np.asarray(key), **record)
    write_atomic(record_path(work, start), buffer.getvalue())


def load_chunk(work: Path, start: int, n: int, key: str, shape: tuple) -> tuple[np.ndarray, dict]:
    """The frames [n, *shape] uint8 and record saved for the chunk starting at `start`, checked (`checked_chunk`)."""
    pngs, record = checked_chunk(work, start, n, key)
    frames = [iio.imread(png, extension=".png") for png in pngs]  # the very bytes this program wrote
    for i, frame in enumerate(frames, start):
        if frame.shape != shape or frame.dtype != np.uint8:
            raise OptionError(f"Work directory {work} is damaged: {frame_path(work, i)} is {frame.dtype} "
                              f"{frame.shape}, expected uint8 {shape}; {RESTART}.")
    return np.stack(frames), record


def checked_chunk(work: Path, start: int, n: int, key: str) -> tuple[list[bytes], dict]:
    """The frame PNGs' bytes and the record of the chunk starting at `start`: a record that is unreadable, lacks a
    field, holds another count of frames, belongs to another job or to another chunk, or a frame that is missing
    or not the PNG its record names (by hash), is a BadInputError suggesting `restart`."""
    path = record_path(work, start)
    record = read_record(work, path, {key}, start)
    short = [k for k, v in record.items() if v.ndim == 0 or len(v) != n]
    if short:
        raise OptionError(f"Work directory {work} is damaged: {path} holds no {n} frames of {short[0]}; {RESTART}.")
    pngs = []
    for i, sha in zip(range(start, start + n), record.pop("png_sha256")):
        try:
            png = frame_path(work, i).read_bytes()
        except OSError as err:
            raise OptionError(f"Work directory {work} is damaged: {frame_path(work, i)} cannot be read "
                              f"({err.strerror or err}); {RESTART}.") from None
        if hashlib.sha256(png).hexdigest() != str(sha):
            raise OptionError(f"Work directory {work} is damaged: {frame_path(work, i)} is not the frame its record "
                              f"{path.name} names (another render's, or edited); {RESTART}.")
        pngs.append(png)
    return pngs, record


def read_record(work: Path, path: Path, keys: set, start: int) -> dict:
    """A chunk record's fields, refused in one line suggesting --restart if unreadable, lacking a field, of a
    job whose key is not in `keys`, or of a chunk other than the one starting at frame `start`."""
    try:
        with np.load(path) as z:
            record = {k: z[k] for k in ("job", *RECORD_FIELDS, *PROVENANCE)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise OptionError(f"Work directory {work} is damaged: {path} cannot be read ({_short(err)}); "
                          f"{RESTART}.") from None
    if str(record.pop("job")) not in keys:
        raise OptionError(f"Work directory {work} holds {path} of another job or of an edited manifest.json; "
                          f"{RESTART}.")
    first = record.pop("first")
    if first.shape != () or int(first) != start:
        raise OptionError(f"Work directory {work} is damaged: {path} is the record of the chunk at frame "
                          f"{first.tolist()}, not {start}; {RESTART}.")
    return record


def _short(err: Exception) -> str:
    return " ".join(str(err).split())[:120] or type(err).__name__


def embeddings_store(work: Path, shape: tuple) -> tuple[np.memmap, bool]:
    """(the embeddings file, whether it is a past run's): resumed where that run left it, else new."""
    partial, complete = work / "embeddings.partial.npy", work / "embeddings.npy"
    if complete.is_file() and not partial.exists():
        os.replace(complete, partial)
    try:
        store = np.load(partial, mmap_mode="r+")
        if store.shape == shape and store.dtype == np.float32:
            return store, True
    except (OSError, ValueError):
        pass
    return allocated(partial, shape), False


def allocated(path: Path, shape: tuple) -> np.memmap:
    """A new float32 .npy of `shape`, memory-mapped, every block allocated now: a page the full disk cannot back
    kills the process with SIGBUS on first write, with nothing on stderr; fallocate says ENOSPC here instead."""
    store = np.lib.format.open_memmap(path, "w+", np.float32, shape)
    try:
        with open(path, "rb+") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError:
        path.unlink(missing_ok=True)
        raise
    return store


def sync_memmap(store: np.memmap) -> None:
    """Written rows of a memory-mapped file made durable."""
    store.flush()
    with open(store.filename, "rb+") as f:
        os.fsync(f.fileno())


def finish_embeddings(work: Path, store: np.memmap) -> None:
    store.flush()
    os.replace(work / "embeddings.partial.npy", work / "embeddings.npy")
