"""Several processes share one render or survey, on one machine or many: JAX's multi-process runtime
(`jax.distributed`) says which process this is and how many there are, and nothing else schedules them.

    chunk (or head) k is computed by process k mod P, whatever is already finished: a rerun splits alike
    each process computes on its own devices (`jax.local_devices()`), with the program a one-process run compiles,
    so every frame's bytes are a one-process run's
    process 0 is the writer: it locks and opens the work directory (manifest, embeddings store) before the others
    read it, and writes what is shared (metrics.json, the video, the survey's files) once all have saved their share

Processes meet through the runtime's key-value store (`gather`): each posts a value under the meeting's name, and
those that need the others' values wait for them. A process that fails says so first (`telling_others`): the
others stop with its one line at their next meeting or chunk (`watching`). A process that dies without a word
(killed, its machine lost) is the runtime's to notice: it aborts the others with its own log line, at once where
process 0 died, within HEARTBEAT_S otherwise; rerunning the same command resumes from the chunks saved.
"""
import contextlib
import dataclasses
import io
import itertools
import resource
import socket
import time

import jax
import numpy as np
from jax._src import distributed  # the runtime's client: its key-value store and barriers have no public name

from badapple_jax.errors import BadInputError, OptionError

HEARTBEAT_S = 100  # JAX's default: a process silent this long is taken for dead, and the others stop
JOIN_TIMEOUT_S = 300  # JAX's default: how long processes wait for each other to start
SHUTDOWN_S = 7 * 24 * 3600  # a process that finished its share waits this long at exit for the slowest one
WAIT_MS = 1000  # a waiting process looks for a peer's failure this often
PREFIX = "badapple"  # of our keys in the runtime's store
_meetings = itertools.count()  # every process holds the same meetings in the same order


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process among the processes of one job (one process: index 0 of 1, no client)."""

    index: int = 0
    count: int = 1
    client: object = None  # the runtime's DistributedRuntimeClient

    @property
    def writer(self) -> bool:
        return self.index == 0

    def share(self, items) -> list:
        """This process's items of `items`: item k is process k mod count's."""
        return list(items)[self.index::self.count]

    def gather(self, name: str, value: bytes = b"", wait: bool = True) -> list[bytes] | None:
        """Post `value` for the meeting `name`; with `wait`, every process's value (in process order) once all
        have posted. A peer's failure posted meanwhile is raised in its words (`PeerFailed`)."""
        if self.count == 1:
            return [value] if wait else None
        key = f"{PREFIX}/{next(_meetings)}/{name}"
        self.client.key_value_set_bytes(f"{key}/{self.index}", value)
        return [self.wait_for(f"{key}/{i}") for i in range(self.count)] if wait else None

    def spread(self, name: str, n: int, compute) -> list:
        """`compute(indices)` -> arrays, each with a leading axis over `indices`, run on this process's share of
        range(n): every process gets the arrays of all n, in order."""
        mine = self.share(range(n))
        if self.count == 1:
            return compute(mine)
        buffer = io.BytesIO()
        np.savez(buffer, *(compute(mine) if mine else ()))
        out = None
        for i, said in enumerate(self.gather(name, buffer.getvalue())):
            with np.load(io.BytesIO(said)) as z:
                parts = [z[f"arr_{k}"] for k in range(len(z.files))]
            if not parts:  # a process with no share: fewer items than processes
                continue
            out = out or [np.empty((n, *a.shape[1:]), a.dtype) for a in parts]
            for whole, part in zip(out, parts):
                whole[i::self.count] = part
        return out

    def wait_for(self, key: str) -> bytes:
        """The value posted under `key`, once it is; a peer's failure meanwhile raises it (`check`)."""
        while True:
            self.check()
            try:
                return self.client.blocking_key_value_get_bytes(key, WAIT_MS)
            except jax.errors.JaxRuntimeError as err:
                if "DEADLINE_EXCEEDED" not in str(err):
                    raise

    def check(self) -> None:
        """Raise the failure another process told, if any (`PeerFailed`)."""
        if self.count > 1:
            for _, said in self.client.key_value_dir_get(f"{PREFIX}/failed/"):
                raise PeerFailed(said)

    def watching(self, stop):
        """`stop` (a stop request: `asked`, looked at between chunks) that also raises another process's failure
        there: every process stops within a chunk of the first to fail, in its words."""
        return Watch(stop, self) if self.count > 1 else stop

    def tell(self, message: str) -> None:
        """Post this process's failure for the others' next meeting."""
        if self.count > 1:
            said = f"process {self.index} of {self.count} stopped: {message}"
            self.client.key_value_set(f"{PREFIX}/failed/{self.index}", said, allow_overwrite=True)

    def label(self) -> str:
        return f"process {self.index} of {self.count}"


class PeerFailed(BadInputError):
    """Another process of the job failed; the message is its own."""


@dataclasses.dataclass(frozen=True)
class Watch:
    """A stop request that raises another process's failure where the chunk driver looks at it (`watching`)."""

    stop: object  # interrupt.StopRequest
    team: Processes

    @property
    def asked(self) -> bool:
        self.team.check()
        return self.stop.asked


def current() -> Processes:
    """This process, as the runtime knows it (`join`); index 0 of 1 where it was never joined."""
    if distributed.global_state.client is None:
        return Processes()
    return Processes(jax.process_index(), jax.process_count(), distributed.global_state.client)


@contextlib.contextmanager
def telling_others():
    """Run the body; should it fail, tell the other processes in its words before the error goes on."""
    try:
        yield
    except PeerFailed:
        raise
    except BaseException as err:
        said = err.flags() if isinstance(err, OptionError) else str(err) or "interrupted"
        with contextlib.suppress(Exception):  # the runtime may be gone already: the error itself goes on
            current().tell(said)
        raise


def join(coordinator: str, count: int | None = None, index: int | None = None, *, timeout_s: int = JOIN_TIMEOUT_S,
         heartbeat_s: int = HEARTBEAT_S) -> Processes:
    """Make this process process `index` of `count` in the job whose process 0 serves the runtime's coordinator
    at `coordinator` (HOST:PORT); before JAX starts its backend. `coordinator` "auto", and `count` or `index`
    None: as the launcher set them (SLURM's srun, Open MPI's mpirun; JAX detects them). A coordinator that does
    not answer within `timeout_s` is a BadInputError."""
    address = None if coordinator == "auto" else coordinator
    check_join(address, count, index)
    if distributed.global_state.client is not None:  # joined by an earlier command of this process
        joined = current()
        if (count, index) != (joined.count, joined.index) and None not in (count, index):
            raise OptionError(f"This process is {joined.label()} already, not process {index} of {count}.")
        return joined
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))  # the runtime
    # aborts the others when one dies: no core file of a whole model for that
    if address is not None and index != 0:
        wait_for_coordinator(address, timeout_s)
    try:
        jax.distributed.initialize(address, count, index, initialization_timeout=timeout_s,
                                   heartbeat_timeout_seconds=heartbeat_s, shutdown_timeout_seconds=SHUTDOWN_S)
    except (RuntimeError, ValueError, TypeError) as err:
        said = " ".join(str(err).split())[:200].rstrip(".")
        raise OptionError(f"Cannot join the processes at `coordinator` {coordinator}: {said}; give `coordinator` "
                          "HOST:PORT with `num_processes` and `process_id`, or start every process with a launcher "
                          "JAX knows (srun, mpirun).") from None
    return current()


def check_join(address: str | None, count: int | None, index: int | None) -> None:
    host, _, port = (address or "").rpartition(":")
    rules = [
        (address is None or (host and port.isascii() and port.isdigit() and 0 < int(port) < 65536),
         f"`coordinator` must be HOST:PORT (or auto), got {address!r}"),
        (count is None or count >= 1, f"`num_processes` must be at least 1, got {count}"),
        (index is None or index >= 0, f"`process_id` must be at least 0, got {index}"),
        (None in (count, index) or index < count, f"`process_id` must be below `num_processes` {count}, got {index}"),
    ]
    for ok, message in rules:
        if not ok:
            raise OptionError(message + ".")


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Return once HOST:PORT accepts a connection; a BadInputError after `timeout_s` (the runtime itself would
    abort the process)."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
            return
        except OSError as err:
            if time.monotonic() > deadline:
                raise OptionError(f"No coordinator answers at `coordinator` {address} after {timeout_s:g} s "
                                  f"({err.strerror or err}): start process 0 there, or fix the address.") from None
            time.sleep(0.2)


def add_arguments(parser) -> None:
    """The flags that make a command one process of several (render, survey)."""
    group = parser.add_argument_group("several processes (README: Several processes)")
    group.add_argument("--coordinator", help="HOST:PORT where process 0 serves JAX's coordinator, or auto (srun, "
                                             "mpirun): this process computes its share of the chunks")
    group.add_argument("--num-processes", type=int, help="processes in the job (default: the launcher's)")
    group.add_argument("--process-id", type=int, help="this process's index, 0 to N-1 (default: the launcher's)")


def join_from(args) -> Processes:
    """`join` as the command's flags ask, before JAX starts its backend; one process where none is given."""
    if args.coordinator is None:
        if args.num_processes is not None or args.process_id is not None:
            raise OptionError("`num_processes` and `process_id` need `coordinator` (HOST:PORT, or auto).")
        return Processes()
    return join(args.coordinator, args.num_processes, args.process_id)
