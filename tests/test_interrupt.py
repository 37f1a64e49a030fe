"""SIGINT and SIGTERM at any moment of `badapple-jax render` end it with exit status 130 and a last line saying so:
while it loads, while it compiles, when the chunk in hand is the last one (the render then finishes, as it does
after a signal while the video is written). Never a traceback, never "Exception ignored", never status 0 or 143.
The stops between chunks, first and second signal, are in test_resume.py."""
import signal
import subprocess
import sys
import time

import pytest

from tests.test_resume import command, leftovers, start_and_wait_for_first_chunk

TIMEOUT = 120  # seconds: a render here takes under 15


def check_stopped(process, err: str) -> list[str]:
    """The lines of `err` once `process` ended as an interrupted command must."""
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("badapple-jax: interrupted"), err
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_loads_ends_it_with_one_line(signum, tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "badapple_jax", "render", "demo", "-o", str(tmp_path / "o.mp4"),
                                "--model", "random:gpt2", "--size", "16", "--max-frames", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # JAX's import takes over a second
    process.send_signal(signum)
    err = process.communicate(timeout=TIMEOUT)[1]
    assert check_stopped(process, err) == ["badapple-jax: interrupted"]
    assert list(tmp_path.iterdir()) == []


FINALISER = """
import os, signal, sys
sys.argv[0] = "badapple-jax"  # the command's process
from badapple_jax import interrupt

class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(1000))  # the handler runs here and raises KeyboardInterrupt inside __del__, which drops it

Finalised()
print(interrupt.interrupted())
"""


@pytest.mark.slow
def test_a_signal_dropped_in_a_finaliser_is_silent_and_still_counts():
    done = subprocess.run([sys.executable, "-c", FINALISER], capture_output=True, text=True, timeout=TIMEOUT)
    assert (done.returncode, done.stdout, done.stderr) == (0, "True\n", "")


@pytest.mark.slow
def test_a_signal_while_compiling_stops_before_the_first_chunk(tiny_ckpt, tmp_path):
    out = tmp_path / "c.mp4"
    process = subprocess.Popen(command(tiny_ckpt, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # the render says "device: ..." just before it compiles
        if line.startswith("device:"):
            break
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=TIMEOUT)[1]
    lines = check_stopped(process, err)
    assert lines[0].startswith("SIGTERM received: stopping after the chunk in hand")
    assert lines[-1].startswith("badapple-jax: interrupted: 0 of 12 frames are saved")
    assert not list(out.with_suffix(".work").glob("chunks/*"))


@pytest.mark.slow
def test_a_signal_when_the_last_chunk_is_in_hand_still_ends_with_130(tiny_ckpt, tmp_path):
    """Two chunks: when the first is recorded the second, the last, is already computing, so the render
    finishes; the signal still counts."""
    out = tmp_path / "s.mp4"
    work = out.with_suffix(".work")
    process = start_and_wait_for_first_chunk(command(tiny_ckpt, out, "-q", "--max-frames", "4"), work)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=TIMEOUT)[1]
    lines = check_stopped(process, err)
    assert lines[0].startswith("SIGTERM received: stopping after the chunk in hand")
    assert lines[-1] == "badapple-jax: interrupted after the render had finished (its output is complete)"
    assert out.exists() and (work / "metrics.json").exists() and leftovers(work) == []

