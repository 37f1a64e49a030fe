"""Ctrl-C and SIGTERM during a render: the first asks to stop after the chunk in hand, the second stops at once."""
import contextlib
import os
import signal
import sys
import threading


class StopRequest:
    """Set by the first SIGINT/SIGTERM; the second raises KeyboardInterrupt where the main thread waits."""

    def __init__(self, log):
        self.asked = False
        self.log = log

    def __call__(self, signum, frame):
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        self.log(f"{signal.Signals(signum).name} received: stopping after the chunk in hand "
                 "(send it again to stop at once)")


@contextlib.contextmanager
def stop_on_signal(log):
    """Yield a StopRequest fed by SIGINT and SIGTERM (only in the main thread, where Python runs handlers)."""
    stop = StopRequest(log)
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred_interrupt():
    """Hold SIGINT back while native code initialises (JAX's import, its backend): a KeyboardInterrupt raised in
    the middle of that can crash the process with SIGSEGV and no word. A Ctrl-C that came meanwhile ends the
    command on leaving, with one line and exit status 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if came:
        sys.stderr.write("badapple-jax: interrupted\n")
        sys.stderr.flush()
        os._exit(130)  # no interpreter teardown: JAX's threads may be half started
