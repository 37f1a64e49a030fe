"""Ctrl-C and SIGTERM. During a render's chunks the first asks to stop after the chunk in hand, the second stops at
once (`stop_on_signal`). The `badapple-jax` command also owns both signals from its first import to its exit
(`Command`): at any moment either ends it with one line and exit status 130, never a traceback, never status 0."""
import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def is_command() -> bool:
    """Whether this process is the command: `badapple-jax`, or `python -m badapple_jax` (not a program that merely
    imports the package, which keeps Python's usual signals)."""
    if sys.argv and os.path.basename(sys.argv[0]) == "badapple-jax":
        return True
    options = getattr(sys, "orig_argv", [])[1:]  # the interpreter's options, up to -m MODULE, -c or a script
    i = 0
    while i < len(options) and options[i].startswith("-") and options[i] != "-c":
        if options[i].startswith("-m"):
            return (options[i][2:] or next(iter(options[i + 1:]), "")) in ("badapple_jax", "badapple_jax.cli")
        i += 2 if options[i] in ("-X", "-W") else 1
    return False


COMMAND = is_command()


class Command:
    """The command's own SIGINT/SIGTERM handler, outside a render's chunks. The first signal raises
    KeyboardInterrupt (the command line turns it into one line and 130), unless native code is initialising
    (`deferred_interrupt`): then the command ends on leaving that. Later signals are only counted: the command is
    already ending. Every signal is counted, a render's too, so that one swallowed on its way (a KeyboardInterrupt
    raised inside a `__del__` is printed as "Exception ignored" and dropped) still ends the command with 130."""

    def __init__(self):
        self.received = []  # signal numbers, in order
        self.deferring = 0  # depth of deferred_interrupt blocks
        self.default_unraisable = sys.unraisablehook

    def __call__(self, signum, frame):
        self.received.append(signum)
        if len(self.received) == 1 and not self.deferring:
            raise KeyboardInterrupt

    def unraisable(self, info):
        """sys.unraisablehook: a KeyboardInterrupt dropped in a finaliser is already counted; say nothing."""
        if not issubclass(info.exc_type, KeyboardInterrupt):
            self.default_unraisable(info)


_command: Command | None = None  # installed by the command only (`guard_command`)


def guard_command() -> None:
    """Make this process's SIGINT and SIGTERM the command's, until it exits. Only the command line calls this."""
    global _command
    if _command is None and threading.current_thread() is threading.main_thread():
        _command = Command()
        for s in SIGNALS:
            signal.signal(s, _command)
        sys.unraisablehook = _command.unraisable


def interrupted() -> bool:
    """Whether the command received SIGINT or SIGTERM (always False outside the command)."""
    return _command is not None and bool(_command.received)


def ignore_signals() -> None:
    """The command is ending with status 130: a later signal must not make it 143 (Python gives SIGTERM back its
    default while it tears down). Outside the command nothing changes."""
    if _command is not None:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def exit_interrupted() -> None:
    """One line, then exit status 130 at once: no interpreter teardown (JAX's threads may be half started, a
    chunk may still be computing)."""
    ignore_signals()
    sys.stderr.write("badapple-jax: interrupted\n")
    sys.stderr.flush()
    os._exit(130)


class StopRequest:
    """Set by the first SIGINT/SIGTERM; the second raises KeyboardInterrupt where the main thread waits."""

    def __init__(self, log):
        self.asked = False
        self.log = log

    def __call__(self, signum, frame):
        if _command is not None:
            _command.received.append(signum)
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        self.log(f"{signal.Signals(signum).name} received: stopping after the chunk in hand "
                 "(send it again to stop at once)")


@contextlib.contextmanager
def stop_on_signal(log):
    """Yield a StopRequest fed by SIGINT and SIGTERM (only in the main thread, where Python runs handlers)."""
    stop = StopRequest(log)
    stop.asked = interrupted()  # a signal the command got before, e.g. dropped in a finaliser: start no chunk
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop) for s in SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred_interrupt():
    """Hold SIGINT and SIGTERM back while native code initialises (JAX's import, its backend): a KeyboardInterrupt
    raised in the middle of that can crash the process with SIGSEGV and no word, and SIGTERM's default ends it
    with 143 and no word. A signal that came meanwhile ends the command on leaving, with one line and status 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _command is not None:
        _command.deferring += 1
        try:
            yield
        finally:
            _command.deferring -= 1
        if _command.received and not _command.deferring:
            exit_interrupted()
        return
    came = []
    previous = {s: signal.signal(s, lambda signum, frame: came.append(signum)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if came:
        exit_interrupted()
