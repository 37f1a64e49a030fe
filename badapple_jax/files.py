"""Atomic file writes, shared by the weights cache, the work directory and the video writer."""
import os
import tempfile
from pathlib import Path

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
