"""The work directory of a render: a manifest of what is being rendered and one record per finished chunk.

    WORKDIR/.lock                    held (flock) by the one render writing here; its text names that render
    WORKDIR/manifest.json            settings, model and input identity (hashes), chunk size
    WORKDIR/frames/frame_NNNNNN.png  the display of every finished frame
    WORKDIR/chunks/chunk_NNNNNN.npz  losses, chosen starts, guard flags and fidelity of the chunk starting at frame N
    WORKDIR/embeddings.partial.npy   with --save-embeddings, filled chunk by chunk; embeddings.npy when complete

Every file is written to a temporary name, fsynced and renamed, and a chunk's record is written last,
after its frames and embeddings are on disk: a record on disk means the whole chunk is. Each record
names the job it belongs to (a hash of the manifest), so a record of another job, or of a manifest
edited since, is never taken for this one's. A rerun of the same job skips recorded chunks, after
checking every record and frame it keeps; a different job is refused, naming what differs, unless
restarted; a damaged record or frame is refused in one line.
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

import imageio.v3 as iio
import jax
import numpy as np

from badapple_jax.errors import BadInputError
from badapple_jax.files import TMP, ordinary_mode, sync_dir, write_atomic
from badapple_jax.optimize import Settings
from badapple_jax.plots import FIGURES
from badapple_jax.viewer import NAME as VIEWER
from badapple_jax.video import BUILT_IN

FORMAT = 3  # bump when the layout changes: an older work directory is then refused, not misread
RECORD_FIELDS = ("loss", "last_step_loss", "head_loss", "space_loss", "start", "explore_loss", "retried", "failed",
                 "psnr", "ssim")
LOCK = ".lock"
RESTART = "add --restart to start this work directory over, or choose another --workdir"
OURS = ("manifest.json", "metrics.json", "targets.npz", "embeddings.npy", "embeddings.partial.npy", *FIGURES,
        VIEWER)
MANIFEST_FIELDS = {"format": int, "options": dict, "input": dict, "model": dict, "chunk_size": int, "device": dict}
# Job fields that change what is optimised; output, audio and side-by-side only change the assembled video.
RESULT_OPTIONS = ("settings", "layer", "head", "heads", "color", "size", "fps", "max_frames", "seed",
                  "save_embeddings")
# Settings added after FORMAT 3's first release, recorded only where they differ from their defaults (the values
# every older render had): an older work directory then still resumes, its chunk records keeping their job key.
LATER_SETTINGS = {name: getattr(Settings(), name) for name in ("b2", "schedule")}


def sha256_of(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def identity(job, clip, targets: np.ndarray, w, model_source: str) -> dict:
    """What a chunk's results depend on: the options, and hashes of the decoded targets and the head's weights."""
    options = {k: v for k, v in dataclasses.asdict(job).items() if k in RESULT_OPTIONS}
    options["settings"] = {k: v for k, v in options["settings"].items()
                           if k not in LATER_SETTINGS or v != LATER_SETTINGS[k]}
    path = Path(job.input)
    named = job.input in BUILT_IN or not path.exists()
    return {
        "format": FORMAT,
        "options": {**options.pop("settings"), **options},
        "input": {"label": clip.label, "path": job.input if named else str(path.resolve()),
                  "bytes": path.stat().st_size if path.is_file() and not named else None,  # for people: not compared
                  "frames": len(targets), "sha256": sha256_of(targets)},
        "model": {"source": model_source, "sha256": sha256_of(*jax.tree.leaves(w))},
    }


def differences(recorded: dict, wanted: dict) -> list[str]:
    """The options, input and model that differ, as `--steps 1500 there, 8 here` phrases."""
    if recorded.get("format") != FORMAT:
        return [f"the layout (format {recorded.get('format')} there, {FORMAT} here)"]
    said = lambda v: "unset" if v is None else v  # noqa: E731
    options = {**LATER_SETTINGS, **recorded["options"]}
    found = [f"--{k.replace('_', '-')} {said(options.get(k))} there, {said(v)} here"
             for k, v in {**LATER_SETTINGS, **wanted["options"]}.items() if options.get(k) != v]
    if found:
        return found  # the input and model hashes follow from these; naming them too would only repeat
    for what, name in (("input", "label"), ("model", "source")):
        if recorded[what]["sha256"] != wanted[what]["sha256"]:
            found.append(f"the {what} ({recorded[what][name]} there, {wanted[what][name]} here: not the same "
                         f"{'decoded frames' if what == 'input' else 'weights'})")
    return found


def frame_path(work: Path, i: int) -> Path:
    return work / "frames" / f"frame_{i:06d}.png"


def record_path(work: Path, start: int) -> Path:
    return work / "chunks" / f"chunk_{start:06d}.npz"


def open_workdir(work: Path, wanted: dict, restart: bool, prefix_sha=None, log=lambda _: None) -> dict | None:
    """Make `work` usable and return the manifest recorded there (None for a fresh start).

    A work directory of another job is refused, naming the differences, unless `restart`, which
    deletes our files in it (and nothing else), or unless the job only asks for more frames of the same
    input (`prefix_sha(n)`: the hash of the first n targets), which extends it. Temporary files of a
    killed run are removed."""
    manifest = work / "manifest.json"
    try:
        recorded = json.loads(manifest.read_text()) if manifest.is_file() else None
        if recorded is not None:
            check_manifest(recorded)
    except (OSError, ValueError, TypeError) as err:
        if not restart:
            raise BadInputError(f"Cannot read {manifest} ({err}): add --restart to start this work directory over.") from err
        recorded = None
    stale = recorded is None and (any(work.glob("frames/frame_*.png")) or any(work.glob("chunks/chunk_*.npz")))
    foreign = [name for name in OURS if (work / name).exists()] if recorded is None and not stale else []
    if foreign:  # no manifest, no frames, no records: not a render of ours, whatever --restart says
        raise BadInputError(f"Work directory {work} holds {foreign[0]} but no render (no manifest.json, frames or "
                            "chunk records): a render would overwrite it; choose another --workdir.")
    if restart:
        wipe(work)
        recorded = None
    elif stale:
        raise BadInputError(f"Work directory {work} holds a render without a manifest.json (from an older version?): "
                            "add --restart to replace it, or choose another --workdir.")
    elif recorded is not None and prefix_sha is not None and grows(recorded, wanted, prefix_sha):
        recorded = extend(work, recorded, wanted, log)
    elif recorded is not None and (found := differences(recorded, wanted)):
        raise BadInputError(f"Work directory {work} belongs to another render: {'; '.join(found)}. Rerun with the "
                            "same options to resume it, add --restart to discard it, or choose another --workdir.")
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
    """Whether `wanted` is `recorded` with more frames of the same input: every other option and the weights
    equal, and the recorded frames the first frames of the wanted ones (the same decoded bytes)."""
    n = recorded["input"].get("frames")  # checked: an edited manifest is refused as damaged, not grown
    if (recorded.get("format") != FORMAT or recorded["model"]["sha256"] != wanted["model"]["sha256"]
            or not isinstance(n, int) or isinstance(n, bool) or n < 1):
        return False
    others = lambda m: {k: v for k, v in m["options"].items() if k != "max_frames"}  # noqa: E731
    return (others(recorded) == others(wanted) and wanted["input"]["frames"] > n
            and recorded["input"]["sha256"] == prefix_sha(n))


def extend(work: Path, recorded: dict, wanted: dict, log) -> dict:
    """Make a work directory of the first n frames one of all the wanted frames: complete chunks are kept (their
    frames' results depend on nothing else) and re-keyed, the last partial chunk (computed with padding where new
    frames now stand) is dropped, saved embeddings grow; the manifest, written last, names the new job. Each
    step can be redone, so a run killed half-way extends again on the next."""
    n, N, chunk = recorded["input"]["frames"], wanted["input"]["frames"], recorded["chunk_size"]
    grown = {**recorded, "options": wanted["options"], "input": wanted["input"]}
    keys = {job_key(recorded), job_key(grown)}
    for path in (work / "embeddings.partial.npy", work / "embeddings.npy"):
        if path.is_file():
            grow_embeddings(work, path, N)
            break
    kept = 0
    for start in range(0, n, chunk):
        path = record_path(work, start)
        if not path.is_file():
            continue
        if start + chunk > n:  # the partial chunk: padded where new frames now stand
            path.unlink()
            continue
        record = read_record(work, path, keys)
        buffer = io.BytesIO()
        np.savez(buffer, job=np.asarray(job_key(grown)), **record)
        write_atomic(path, buffer.getvalue())
        kept += chunk
    sync_dir(work / "chunks")
    write_atomic(work / "manifest.json", json.dumps(grown, indent=1).encode())
    log(f"extending {work} from {n} to {N} frames: the first {kept} are kept")
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
        raise BadInputError(f"Work directory {work} is in use by another render ({holder}): wait for it to finish, "
                            "or choose another --workdir.") from None
    try:
        since = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode(), 0)
        yield
    except BaseException:
        if made:
            discard_if_empty(work, made)
        raise
    finally:
        os.close(fd)


def remove_leftovers(work: Path) -> None:
    """Delete the temporary files of a write that never finished."""
    for leftover in [*work.glob(f".*{TMP}"), *work.glob(f"*/.*{TMP}")]:
        leftover.unlink(missing_ok=True)


def wipe(work: Path) -> None:
    """Delete the files a render writes in `work`, and nothing else."""
    for path in [*work.glob("frames/frame_*.png"), *work.glob("chunks/chunk_*.npz"), *(work / f for f in OURS)]:
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


def finished(work: Path, starts, n_frames: int, chunk_size: int, key: str, shape: tuple) -> list[int]:
    """Chunk starts whose record and frames are on disk, each checked: a damaged one is a BadInputError."""
    done = [s for s in starts if record_path(work, s).is_file()]
    for s in done:
        load_chunk(work, s, min(chunk_size, n_frames - s), key, shape)
    return done


def save_chunk(work: Path, start: int, rgb: np.ndarray, record: dict, key: str, embeddings=None, x=None) -> None:
    """Frames [k, H, W, 3] uint8 as PNGs, the rows of `embeddings` (a memmap) from `x`, then the record
    (with the job's `key`)."""
    for i, frame in enumerate(rgb):
        write_atomic(frame_path(work, start + i), iio.imwrite("<bytes>", frame, extension=".png"))
    sync_dir(work / "frames")
    if embeddings is not None:
        embeddings[start:start + len(x)] = x
        sync_memmap(embeddings)
    buffer = io.BytesIO()
    np.savez(buffer, job=np.asarray(key), **{k: np.asarray(record[k]) for k in RECORD_FIELDS})
    write_atomic(record_path(work, start), buffer.getvalue())
    sync_dir(work / "chunks")


def load_chunk(work: Path, start: int, n: int, key: str, shape: tuple) -> tuple[np.ndarray, dict]:
    """The frames [n, *shape] uint8 and record saved for the chunk starting at `start`, each checked: a record
    that is unreadable, lacks a field, holds another count of frames or belongs to another job, or a frame
    that is missing, undecodable or of another shape, is a BadInputError suggesting --restart."""
    path = record_path(work, start)
    record = read_record(work, path, {key})
    short = [k for k, v in record.items() if v.ndim == 0 or len(v) != n]
    if short:
        raise BadInputError(f"Work directory {work} is damaged: {path} holds no {n} frames of {short[0]}; {RESTART}.")
    frames = []
    for i in range(start, start + n):
        try:
            frame = iio.imread(frame_path(work, i))
        except Exception as err:  # imageio raises whatever its plugin does for a truncated or foreign file
            raise BadInputError(f"Work directory {work} is damaged: {frame_path(work, i)} cannot be read "
                                f"({_short(err)}); {RESTART}.") from None
        if frame.shape != shape or frame.dtype != np.uint8:
            raise BadInputError(f"Work directory {work} is damaged: {frame_path(work, i)} is {frame.dtype} "
                                f"{frame.shape}, expected uint8 {shape}; {RESTART}.")
        frames.append(frame)
    return np.stack(frames), record


def read_record(work: Path, path: Path, keys: set) -> dict:
    """A chunk record's fields, refused in one line suggesting --restart if unreadable, lacking a field, or of a
    job whose key is not in `keys`."""
    try:
        with np.load(path) as z:
            record = {k: z[k] for k in ("job", *RECORD_FIELDS)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise BadInputError(f"Work directory {work} is damaged: {path} cannot be read ({_short(err)}); "
                            f"{RESTART}.") from None
    if str(record.pop("job")) not in keys:
        raise BadInputError(f"Work directory {work} holds {path} of another job or of an edited manifest.json; "
                            f"{RESTART}.")
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
