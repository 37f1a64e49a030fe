"""Atomic file writes, shared by the weights cache, the work directory and the video writer; memory-mapped
arrays allocated and synced."""
import os
import tempfile
from pathlib import Path

import numpy as np

TMP = ".tmp"  # suffix of a file being written; one is left only by a killed process


def ordinary_mode(directory: bool = False) -> int:
    """The permissions a plain `open(..., "w")` (or `mkdir`) would give: mkstemp's files and mkdtemp's
    directories are private."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_atomic(path, data: bytes, durable: bool = True) -> None:
    """Write `data` to a unique temporary name beside `path`, fsync, rename: readers, and a crash,
    see the old content or all of `data`, never part of it. `durable=False` skips the fsync, for files
    that are made again from others (readers still never see part of one; a crash may leave it empty)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, ordinary_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync_dir(path) -> None:
    """Make the renames inside directory `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def allocated(path: Path, shape: tuple):
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


def sync_memmap(store) -> None:
    """Written rows of a memory-mapped file made durable."""
    store.flush()
    with open(store.filename, "rb+") as f:
        os.fsync(f.fileno())
