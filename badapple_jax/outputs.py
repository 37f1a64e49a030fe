"""The one rule for every file a command writes outside its work directory's own files.

A command may write a path that does not exist yet, or replace a file that the same command wrote before
(each such file carries a mark: `written by badapple-jax KIND`, in its text, a PNG text chunk, or a video's
comment tag). It never writes over a file we did not write, a file another command wrote (a viewer page over
metrics.json, a survey over a checkpoint's config.json), a directory, or an input of the command. A refusal
is one line (BadInputError) before anything is written.
"""
import os
import re
from pathlib import Path

from badapple_jax.errors import BadInputError

MARK = "written by badapple-jax"
HEAD_BYTES = 65536  # a mark stands in a file's first bytes: an HTML head, a JSON's first key, a PNG's text chunk
MARKED = re.compile(rb"written by badapple-jax ([a-z]+)")


def mark(kind: str) -> str:
    """The mark a file written by command `kind` carries."""
    return f"{MARK} {kind}"


def written_by(path: Path) -> str | None:
    """The command whose mark `path` carries, or None (not ours, unreadable, or not a regular file)."""
    from badapple_jax.video import VIDEO_SUFFIXES, probe  # video imports this module

    if not path.is_file():
        return None
    try:
        if path.suffix.lower() in VIDEO_SUFFIXES:  # a video keeps its tags at its end: ask ffmpeg
            head = probe(path).encode()
        else:
            with open(path, "rb") as f:
                head = f.read(HEAD_BYTES)
    except OSError:
        return None
    found = MARKED.search(head)
    return found[1].decode() if found else None


def claim(path, kind: str, inputs: dict | None = None) -> Path:
    """`path` checked as an output of command `kind`: new, or a file `kind` wrote; not one of the command's
    `inputs` ({what: path}) and not inside one that is a directory. Raises BadInputError in one line otherwise."""
    path = Path(path)
    for what, source in (inputs or {}).items():
        if source is None or not Path(source).exists():
            continue
        source = Path(source)
        if source.is_dir() and path.resolve().is_relative_to(source.resolve()):
            raise BadInputError(f"{path} is inside {what} directory {source}: choose a path outside it.")
        if path.resolve() == source.resolve() or (path.exists() and os.path.samefile(path, source)):
            raise BadInputError(f"{path} is {what} itself: writing it would destroy it; choose another path.")
    if path.is_dir():
        raise BadInputError(f"{path} is a directory; give a file name.")
    if path.is_symlink() or (path.exists() and written_by(path) != kind):
        raise BadInputError(f"{path} exists and is not a file badapple-jax {kind} wrote: it is left as it is; "
                            "remove it or choose another path.")
    return path
