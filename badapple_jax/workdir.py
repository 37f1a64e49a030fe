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

Whether a recorded job is this one is `identity.py`'s rule, the one rule for reuse.
"""
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import io
import itertools
import json
import os
import socket
import zipfile
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import numpy as np

from badapple_jax.display import gray_of
from badapple_jax.errors import BadInputError, OptionError
from badapple_jax.files import TMP, allocated, ordinary_mode, sync_dir, sync_memmap, write_atomic
from badapple_jax.identity import check_manifest, complete_chunks, differences, grows, job_key
from badapple_jax.metrics import Run, read_run, versions

RECORD_FIELDS = ("loss", "last_step_loss", "head_loss", "space_loss", "start", "explore_loss", "retried", "failed",
                 "psnr", "ssim")  # a chunk's results, per frame
PROVENANCE = ("first", "png_sha256")  # which frames a record vouches for: the first one's index, each PNG's hash
LOCK = ".lock"
PNG_LEVEL = 1  # zlib's fastest: a Bad Apple frame's PNG in x0.43 the time of the default level 6, 1.24x the bytes
# (benchmarks/RESULTS.md); any level decodes to the same pixels
SUFFIX = ".work"  # of a default work directory: OUT.work beside the video OUT
FRAME, TARGET, RECORD = "frames/frame_{}.png", "targets/target_{}.png", "chunks/chunk_{}.npz"  # {}: 6 digits, or *
RESTART = "add `restart` to start this work directory over, or choose another `workdir`"
FIGURES = ("loss_timeline.png", "loss_histogram.png", "comparison_grid.png", "best_worst.png",
           "fidelity_timeline.png", "fidelity_histogram.png")  # `plots` draws them, in this order
VIEWER = "viewer.html"  # `viewer`'s page
MANIFEST, METRICS, TARGETS_NPZ = "manifest.json", "metrics.json", "targets.npz"
EMBEDDINGS, PARTIAL = "embeddings.npy", "embeddings.partial.npy"  # complete; being filled
OURS = (MANIFEST, METRICS, TARGETS_NPZ, EMBEDDINGS, PARTIAL, *FIGURES, VIEWER)
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


@dataclasses.dataclass(frozen=True)
class WorkDir:
    """A render's work directory, the one owner of its files: their names, the manifest, the chunk records, the
    lock, growing, and reading a finished render back. Shown as its path."""

    path: Path

    @classmethod
    def beside(cls, output) -> "WorkDir":
        """OUT.work, the default work directory of the video OUT."""
        return cls(Path(output).with_suffix(SUFFIX))

    def __str__(self) -> str:
        return str(self.path)

    # --- the files ---------------------------------------------------------------------------------------------

    def frame(self, i: int) -> Path:
        return self.path / FRAME.format(f"{i:06d}")

    def target(self, i: int) -> Path:
        return self.path / TARGET.format(f"{i:06d}")

    def record(self, start: int) -> Path:
        return self.path / RECORD.format(f"{start:06d}")

    def frames(self) -> list[Path]:
        """Every frame PNG here, in frame order."""
        return sorted(self.path.glob(FRAME.format("*")))

    def _folder(self, template: str) -> Path:
        """The subdirectory of FRAME, TARGET or RECORD."""
        return self.path / Path(template).parent

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def targets_npz(self) -> Path:
        return self.path / TARGETS_NPZ

    @property
    def embeddings(self) -> Path:
        return self.path / EMBEDDINGS

    @property
    def partial(self) -> Path:
        return self.path / PARTIAL

    def holds(self, path) -> bool:
        """Whether `path` is, or would be, a file a render writes here."""
        path, work = Path(path).resolve(), self.path.resolve()
        return (any(path.is_relative_to(work / Path(t).parent) for t in (FRAME, RECORD))
                or path.parent == work and path.name in OURS)

    def check_usable(self) -> None:
        """Refuse a work directory under a file."""
        existing = next(p for p in (self.path, *self.path.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise BadInputError(f"Cannot use work directory {self}: {existing} is not a directory.")

    # --- the manifest -------------------------------------------------------------------------------------------

    def _read_manifest(self) -> dict | None:
        """The manifest recorded here, or None where there is none; ValueError if it is unreadable or not one."""
        if not self.manifest.is_file():
            return None
        try:
            manifest = json.loads(self.manifest.read_bytes())
        except (OSError, UnicodeDecodeError, RecursionError) as err:  # JSON nested a few thousand deep: RecursionError
            raise ValueError(_short(err)) from None
        check_manifest(manifest)
        return manifest

    def _write_manifest(self, manifest: dict) -> None:
        write_atomic(self.manifest, json.dumps(manifest, indent=1).encode())

    def begin(self, identity: dict, chunk: int, device: dict) -> dict:
        """The manifest of a fresh job, once its chunk size is known: written before its first chunk's record."""
        manifest = {**identity, "chunk_size": chunk, "device": device, "versions": versions()}
        self._write_manifest(manifest)
        return manifest

    # --- opening: decide (reading only), then write ---------------------------------------------------------

    def opening(self, wanted: Wanted, restart: bool) -> Opening:
        """Decide, reading only, what to do here for the job `wanted`; every record and frame to be kept is checked
        here, so a refusal comes before the first byte is written.

        A work directory of another job is refused, naming the differences, unless `restart`, which deletes our
        files in it (and nothing else), or unless the job only asks for more frames of the same input and its
        chunks are those a fresh render would take, so that growing it ends byte for byte as a fresh render."""
        try:
            recorded = self._read_manifest()
        except ValueError as err:
            if not restart:
                raise OptionError(f"Cannot read {self.manifest} ({err}): add `restart` to start this work directory "
                                  "over.") from None
            recorded = None
        stale = recorded is None and (any(self.frames()) or any(self.path.glob(RECORD.format("*"))))
        foreign = [name for name in OURS if (self.path / name).exists()] if recorded is None and not stale else []
        if foreign:  # no manifest, no frames, no records: not a render of ours, whatever --restart says
            raise OptionError(f"Work directory {self} holds {foreign[0]} but no render (no manifest.json, frames or "
                              "chunk records): a render would overwrite it; choose another `workdir`.")
        if restart:
            return Opening(None, wipe=True)
        if stale:
            raise OptionError(f"Work directory {self} holds a render without a manifest.json (from an older "
                              "version?): add `restart` to replace it, or choose another `workdir`.")
        if recorded is None:
            return Opening(None)
        grow = grows(recorded, wanted.identity, wanted.prefix_sha)
        if not grow and (found := differences(recorded, wanted.identity)):
            raise OptionError(f"Work directory {self} belongs to another render: {'; '.join(found)}. Rerun with the "
                              "same options to resume it, add `restart` to discard it, or choose another `workdir`.")
        self._check_chunks(recorded, wanted, grow)
        n, chunk = recorded["input"]["frames"], recorded["chunk_size"]
        starts = complete_chunks(recorded) if grow else range(0, n, chunk)
        return Opening(recorded, tuple(self._recorded(starts, n, chunk, job_key(recorded))), grow)

    def _check_chunks(self, recorded: dict, wanted: Wanted, grow: bool) -> None:
        """Refuse to resume (or grow) `recorded` in chunks other than those `wanted` takes, or on devices that
        cannot share its chunks evenly."""
        there, here = recorded["chunk_size"], wanted.chunk
        if grow and there != here:
            n, N = recorded["input"]["frames"], wanted.identity["input"]["frames"]
            raise OptionError(f"Work directory {self} holds {n} frames computed in chunks of {there}, but a fresh "
                              f"render of {N} frames takes chunks of {here}, so growing it would not give the same "
                              f"result: rerun with `chunk_size` {there} to extend it, add `restart` to render all {N} "
                              "afresh, or choose another `workdir`.")
        if wanted.chosen and there != here:
            raise OptionError(f"Work directory {self} belongs to another render: `chunk_size` {there} there, {here} "
                              f"here. Rerun with `chunk_size` {there} (or auto) to resume it, add `restart` to discard "
                              "it, or choose another `workdir`.")
        if there % wanted.devices:
            raise OptionError(f"Work directory {self} was started with chunks of {there} frames, which "
                              f"{wanted.devices} devices cannot share evenly: resume it on the devices it started on, "
                              "or add `restart`.")

    def _recorded(self, starts, n_frames: int, chunk_size: int, key: str) -> list[int]:
        """Those of `starts` whose chunk record and frames are on disk, each checked by its record's hashes (not
        decoded: `load_chunk` does that once, when the render is assembled); a damaged one is a BadInputError."""
        done = [s for s in starts if self.record(s).is_file()]
        for s in done:
            self._checked_chunk(s, min(chunk_size, n_frames - s), key)
        return done

    def open(self, opening: Opening, wanted: Wanted, log=lambda _: None) -> dict | None:
        """Carry out `opening`: wipe or grow, make the subdirectories, remove the temporary files of a killed run;
        returns the manifest to resume (None for a fresh start)."""
        if opening.wipe:
            self.wipe()
        recorded = self._extend(opening.recorded, wanted.identity, log) if opening.grow else opening.recorded
        try:
            for template in (FRAME, RECORD):
                self._folder(template).mkdir(parents=True, exist_ok=True)
            self.remove_leftovers()
            probe = self.path / f"probe{TMP}"
            write_atomic(probe, b"")  # fails here, not after an hour, if the disk refuses writes
            probe.unlink()
        except OSError as err:
            raise BadInputError(f"Cannot use work directory {self}: {err.strerror or err}.") from err
        return recorded

    def _extend(self, recorded: dict, wanted: dict, log) -> dict:
        """Make a work directory of the first n frames one of all the wanted frames: complete chunks are kept
        (their frames' results depend on nothing else) and re-keyed, the last partial chunk (computed with padding
        where new frames now stand) is dropped, saved embeddings grow; the manifest, written last, names the new
        job. Each step can be redone, so a run killed half-way extends again on the next."""
        n, N = recorded["input"]["frames"], wanted["input"]["frames"]
        grown = {**recorded, "options": wanted["options"], "input": wanted["input"]}
        keys = {job_key(recorded), job_key(grown)}
        for path in (self.partial, self.embeddings):
            if path.is_file():
                self._grow_embeddings(path, N)
                break
        kept = complete_chunks(recorded)
        for start in range(0, n, recorded["chunk_size"]):
            path = self.record(start)
            if not path.is_file():
                continue
            if start not in kept:  # the partial chunk: padded where new frames now stand
                path.unlink()
                continue
            record = self._read_record(start, keys)
            self._write_record(start, {**record, "first": np.asarray(start)}, job_key(grown))
        sync_dir(self._folder(RECORD))
        self._write_manifest(grown)
        log(f"extending {self} from {n} to {N} frames: the first {len(kept) * recorded['chunk_size']} are kept")
        return grown

    def _grow_embeddings(self, path: Path, N: int) -> None:
        """embeddings(.partial).npy of n rows -> embeddings.partial.npy of N rows, the first n copied, the rest
        allocated (a full disk fails here, not with SIGBUS later)."""
        old = np.load(path, mmap_mode="r")
        if len(old) >= N:
            return
        tmp = self.path / f".{PARTIAL}{TMP}"
        new = allocated(tmp, (N, *old.shape[1:]))
        new[:len(old)] = old
        sync_memmap(new)
        os.replace(tmp, self.partial)
        if path == self.embeddings:
            path.unlink()
        sync_dir(self.path)

    # --- one writer, and what a stopped or restarted render leaves -----------------------------------------

    @contextlib.contextmanager
    def one_writer(self):
        """Hold WORKDIR/.lock (an OS lock: the kernel drops it when the process ends, however it ends, so a stale
        file never blocks) while the body runs; a second render on the same directory is refused, naming the
        first. Directories made for the lock are removed again if the body fails with nothing in them."""
        lock = self.path / LOCK
        made = [p for p in (self.path, *self.path.absolute().parents) if not p.exists()]
        new_lock = not lock.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, ordinary_mode())
        except OSError as err:
            raise BadInputError(f"Cannot use work directory {self}: {err.strerror or err}.") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OptionError(f"Work directory {self} is in use by another render ({holder}): wait for it to "
                              "finish, or choose another `workdir`.") from None
        before = os.pread(fd, 200, 0)
        try:
            since = datetime.datetime.now().isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode(), 0)
            yield
        except BaseException:  # a refused or stopped render leaves the lock file as it found it
            if made:
                self._discard_if_empty(made)
            elif new_lock:
                lock.unlink(missing_ok=True)
            else:
                os.ftruncate(fd, 0)
                os.pwrite(fd, before, 0)
            raise
        finally:
            os.close(fd)

    def remove_leftovers(self) -> None:
        """Delete the temporary files of a write that never finished."""
        for leftover in [*self.path.glob(f".*{TMP}"), *self.path.glob(f"*/.*{TMP}")]:
            leftover.unlink(missing_ok=True)

    def wipe(self) -> None:
        """Delete the files a render (and its viewer) writes here, and nothing else."""
        numbered = [self.path.glob(template.format("*")) for template in (FRAME, TARGET, RECORD)]
        for path in [*itertools.chain(*numbered), *(self.path / f for f in OURS)]:
            path.unlink(missing_ok=True)

    def _discard_if_empty(self, made: list[Path]) -> None:
        """Remove this directory and its parents that this run `made`, if nothing was recorded in them."""
        (self.path / LOCK).unlink(missing_ok=True)
        for path in (self._folder(FRAME), self._folder(RECORD), *made):
            try:
                path.rmdir()
            except OSError:
                if path in made:
                    return

    def interrupted(self, n_frames: int) -> str:
        """The line a stopped render ends with: how many of its `n_frames` are saved here."""
        return (f"interrupted: {self._saved_frames(n_frames)} of {n_frames} frames are saved in {self}; run the same "
                "command again to resume from there.")

    def _saved_frames(self, n_frames: int) -> int:
        """How many of the job's `n_frames` frames are recorded here (0 before its manifest is written)."""
        try:
            chunk = self._read_manifest()["chunk_size"]
        except (ValueError, TypeError):  # no manifest yet (None), or unreadable
            return 0
        return sum(min(chunk, n_frames - s) for s in range(0, n_frames, chunk) if self.record(s).is_file())

    # --- chunk records ----------------------------------------------------------------------------------------

    def save_chunk(self, start: int, rgb: np.ndarray, record: dict, key: str, embeddings=None, x=None) -> None:
        """Frames [k, H, W, 3] uint8 as PNGs, the rows of `embeddings` (a memmap) from `x`, then the record
        (with the job's `key`, the first frame's index and each PNG's hash)."""
        hashes = []
        for i, frame in enumerate(rgb):
            png = iio.imwrite("<bytes>", frame, extension=".png", compress_level=PNG_LEVEL)
            write_atomic(self.frame(start + i), png)
            hashes.append(hashlib.sha256(png).hexdigest())
        sync_dir(self._folder(FRAME))
        if embeddings is not None:
            embeddings[start:start + len(x)] = x
            sync_memmap(embeddings)
        self._write_record(start, {**{k: np.asarray(record[k]) for k in RECORD_FIELDS}, "first": np.asarray(start),
                                   "png_sha256": np.asarray(hashes)}, key)
        sync_dir(self._folder(RECORD))

    def _write_record(self, start: int, record: dict, key: str) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, job=np.asarray(key), **record)
        write_atomic(self.record(start), buffer.getvalue())

    def load_chunk(self, start: int, n: int, key: str, shape: tuple) -> tuple[np.ndarray, dict]:
        """The frames [n, *shape] uint8 and record saved for the chunk starting at `start`, checked by its hashes."""
        pngs, record = self._checked_chunk(start, n, key)
        frames = [iio.imread(png, extension=".png") for png in pngs]  # the very bytes this program wrote
        for i, frame in enumerate(frames, start):
            if frame.shape != shape or frame.dtype != np.uint8:
                raise OptionError(f"Work directory {self} is damaged: {self.frame(i)} is {frame.dtype} "
                                  f"{frame.shape}, expected uint8 {shape}; {RESTART}.")
        return np.stack(frames), record

    def _checked_chunk(self, start: int, n: int, key: str) -> tuple[list[bytes], dict]:
        """The frame PNGs' bytes and the record of the chunk starting at `start`: a record that is unreadable, lacks
        a field, holds another count of frames, belongs to another job or to another chunk, or a frame that is
        missing or not the PNG its record names (by hash), is a BadInputError suggesting `restart`."""
        path = self.record(start)
        record = self._read_record(start, {key})
        short = [k for k, v in record.items() if v.ndim == 0 or len(v) != n]
        if short:
            raise OptionError(f"Work directory {self} is damaged: {path} holds no {n} frames of {short[0]}; "
                              f"{RESTART}.")
        pngs = []
        for i, sha in zip(range(start, start + n), record.pop("png_sha256")):
            try:
                png = self.frame(i).read_bytes()
            except OSError as err:
                raise OptionError(f"Work directory {self} is damaged: {self.frame(i)} cannot be read "
                                  f"({err.strerror or err}); {RESTART}.") from None
            if hashlib.sha256(png).hexdigest() != str(sha):
                raise OptionError(f"Work directory {self} is damaged: {self.frame(i)} is not the frame its record "
                                  f"{path.name} names (another render's, or edited); {RESTART}.")
            pngs.append(png)
        return pngs, record

    def _read_record(self, start: int, keys: set) -> dict:
        """The fields of the record of the chunk at frame `start`, refused in one line suggesting --restart if
        unreadable, lacking a field, of a job whose key is not in `keys`, or of another chunk."""
        path = self.record(start)
        try:
            with np.load(path) as z:
                record = {k: z[k] for k in ("job", *RECORD_FIELDS, *PROVENANCE)}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise OptionError(f"Work directory {self} is damaged: {path} cannot be read ({_short(err)}); "
                              f"{RESTART}.") from None
        if str(record.pop("job")) not in keys:
            raise OptionError(f"Work directory {self} holds {path} of another job or of an edited manifest.json; "
                              f"{RESTART}.")
        first = record.pop("first")
        if first.shape != () or int(first) != start:
            raise OptionError(f"Work directory {self} is damaged: {path} is the record of the chunk at frame "
                              f"{first.tolist()}, not {start}; {RESTART}.")
        return record

    # --- saved embeddings -------------------------------------------------------------------------------------

    def embeddings_store(self, shape: tuple) -> tuple[np.memmap, bool]:
        """(the embeddings file, whether it is a past run's): resumed where that run left it, else new."""
        if self.embeddings.is_file() and not self.partial.exists():
            os.replace(self.embeddings, self.partial)
        try:
            store = np.load(self.partial, mmap_mode="r+")
            if store.shape == shape and store.dtype == np.float32:
                return store, True
        except (OSError, ValueError):
            pass
        return allocated(self.partial, shape), False

    def finish_embeddings(self, store: np.memmap) -> None:
        store.flush()
        os.replace(self.partial, self.embeddings)

    # --- a finished render -------------------------------------------------------------------------------------

    def finished_twin(self, wanted: Wanted) -> "WorkDir | None":
        """For a job with no manifest here: a finished render of it in a sibling *.work (the same options, input and
        model, chunks this job would accept, every chunk recorded and intact, metrics written), from which a new
        output only assembles its video; None if there is none."""
        if self.manifest.exists():
            return None
        for path in sorted(self.path.parent.glob(f"*{SUFFIX}/{MANIFEST}")):
            twin = WorkDir(path.parent)
            try:
                opening = twin.opening(wanted, restart=False)
            except (BadInputError, OSError):  # not a render this one can use: never an error here
                continue
            if (not opening.grow and twin.metrics.is_file()
                    and len(opening.done) * opening.recorded["chunk_size"] >= wanted.identity["input"]["frames"]):
                return twin
        return None

    def finished_run(self) -> Run:
        """The finished render here, for reading: its metrics.json and targets.npz (`metrics.read_run`) and every
        frame PNG, checked; anything unusable is a one-line BadInputError naming the path."""
        if not self.path.is_dir():
            if self.path.exists():
                kind = "a file" if self.path.is_file() else "not a directory"
                raise BadInputError(f"{self} is {kind}, not a work directory.")
            raise BadInputError(f"Work directory {self} does not exist.")
        run = read_run(self)
        N = run.loss.size
        missing = [i for i in range(N) if not self.frame(i).is_file()]
        if missing:
            raise BadInputError(f"{self._folder(FRAME)} lacks {self.frame(missing[0]).name} ({len(missing)} of {N} "
                                "frame PNGs missing).")
        T = self.read_frame(0, run.colour).shape[0]
        for i in range(1, N):
            self.read_frame(i, run.colour, T)
        if run.targets.dtype != np.uint8 or run.targets.shape != (N, T, T):
            raise BadInputError(f"{self.targets_npz} holds {run.targets.dtype} frames of shape "
                                f"{list(run.targets.shape)}, expected uint8 [{N}, {T}, {T}]: {N} as per_frame_loss, "
                                f"{T}x{T} as the frame PNGs.")
        return run

    def read_frame(self, i: int, colour: bool, size: int | None = None) -> np.ndarray:
        """Frame i's PNG as render writes it: [T, T, 3] uint8 (T = `size` if given), in magma's colours unless
        `colour`. Anything else is a BadInputError naming the file."""
        path = self.frame(i)
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


def _short(err: Exception) -> str:
    return " ".join(str(err).split())[:120] or type(err).__name__
