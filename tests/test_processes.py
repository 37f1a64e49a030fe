"""Several processes (processes.py): two local CPU processes share a render or a survey through JAX's multi-process
runtime (a loopback coordinator) and leave a one-process run's bytes; a process killed mid-render ends the other,
and rerunning both resumes."""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from badapple_jax import processes
from badapple_jax.cli import main
from badapple_jax.errors import OptionError

TIMEOUT = 120  # seconds any launch may take before the test fails instead of hanging
# Eight chunks of one frame: each process computes four, each a few tenths of a second on the tiny model.
RENDER = ["--size", "16", "--max-frames", "8", "--chunk-size", "1", "--steps", "400", "--save-embeddings"]
SURVEY = ["--size", "16", "--frames", "3", "--steps", "20"]  # layer 0: heads 0 and 2 on process 0, 1 and 3 on 1
TIMINGS = ("compile_seconds", "optimize_seconds", "seconds_per_frame", "date", "command")  # and settings.output
# This process's backend runs other XLA flags (conftest.py), so every run compared is a child, and a Python that
# imports badapple_jax is seconds of CPU: the children are forked from one that imported it once and started no
# backend. Each runs its commands as `badapple-jax` would, its stdout and stderr to a file, then its exit status.
FORK = """
import json, os, signal, sys
from badapple_jax.cli import main
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # its children are reaped as they end
for line in sys.stdin:
    said, commands = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(said, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        status = next((s for s in map(main, commands) if s), 0)
        print(f"exit status {status}", flush=True)
        sys.exit(status)
    print(pid, flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Child:
    pid: int
    said: Path  # its stdout and stderr

    def running(self) -> bool:
        try:
            os.kill(self.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def finish(self) -> tuple[int | None, str]:
        """(its exit status, None where a signal ended it; what it said), once it has ended; TIMEOUT at most."""
        deadline = time.monotonic() + TIMEOUT
        while self.running():
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                pytest.fail(f"process {self.pid} still runs after {TIMEOUT} s: {self.said.read_text()}")
            time.sleep(0.05)
        text = self.said.read_text()
        last = text.splitlines()[-1] if text else ""
        return (int(last.split()[-1]) if last.startswith("exit status") else None), text


class Children:
    """Children forked from one Python that imported badapple_jax (FORK)."""

    def __init__(self, where: Path):
        self.fork = subprocess.Popen([sys.executable, "-c", FORK], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.where, self.started = where, 0

    def start(self, *commands) -> Child:
        said = self.where / f"child_{self.started}.txt"
        self.started += 1
        self.fork.stdin.write(json.dumps([str(said), commands]) + "\n")
        self.fork.stdin.flush()
        return Child(int(self.fork.stdout.readline()), said)

    def launch(self, *commands) -> list[Child]:
        """Processes 0 and 1 of one job running `commands`."""
        joined = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2", "--process-id"]
        return [self.start(*([*c, *joined, str(i)] for c in commands)) for i in range(2)]


@pytest.fixture
def children(tmp_path):
    made = Children(tmp_path)
    yield made
    made.fork.kill()
    made.fork.wait()


def outputs(out) -> dict[str, bytes]:
    """Every file of a finished render that a run split over processes, killed or not, must leave as one process
    does."""
    work = out.with_suffix(".work")
    files = [out, work / "embeddings.npy", work / "targets.npz", work / "manifest.json",
             *sorted((work / "frames").iterdir()), *sorted((work / "chunks").iterdir())]
    return {str(p.relative_to(out.parent)): p.read_bytes() for p in files}


def metrics(out) -> dict:
    found = json.loads((out.with_suffix(".work") / "metrics.json").read_text())
    return {k: v for k, v in found.items() if k not in TIMINGS} | {"settings": {**found["settings"], "output": None}}


def survey_files(prefix) -> tuple:
    table = json.loads(prefix.with_suffix(".json").read_text())
    return ({k: v for k, v in table.items() if k != "seconds"}, prefix.with_suffix(".md").read_bytes(),
            prefix.with_suffix(".png").read_bytes())


@pytest.mark.slow
def test_two_processes_render_and_survey_as_one_and_a_killed_render_resumes(tiny_ckpt, tmp_path, children):
    """Five children: one process alone renders and surveys; two start the render and process 0 is killed after
    its first chunk; two rerun it, then survey."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()  # apart: a render beside a finished one of the same job would assemble from it
    one, two = tmp_path / "one" / "x.mp4", tmp_path / "two" / "x.mp4"
    render = ["render", "demo", "--model", str(tiny_ckpt), *RENDER]
    survey = ["survey", "demo", "--model", str(tiny_ckpt), *SURVEY]
    alone = children.start([*render, "-o", str(one), "-q"], [*survey, "-o", str(tmp_path / "one" / "s")]).finish()
    assert alone[0] == 0, alone  # first: the others then find its programs in the suite's compilation cache

    launched = children.launch([*render, "-o", str(two), "-q"])
    chunks = two.with_suffix(".work") / "chunks"
    deadline = time.monotonic() + TIMEOUT
    while not (chunks / "chunk_000000.npz").exists():  # process 0's first chunk
        assert all(c.running() for c in launched) and time.monotonic() < deadline, [c.said.read_text() for c in launched]
        time.sleep(0.01)
    os.kill(launched[0].pid, signal.SIGKILL)  # process 0: the coordinator, the lock's holder and the writer
    assert launched[1].finish()[0] is None  # the runtime aborts process 1 at once: its coordinator is gone
    launched[0].finish()
    saved = {p.name: p.stat().st_mtime_ns for p in chunks.iterdir()}
    assert 1 <= len(saved) < 8 and not two.exists()

    done = [c.finish() for c in children.launch([*render, "-o", str(two)], [*survey, "-o", str(tmp_path / "two" / "s")])]
    assert [status for status, _ in done] == [0, 0], done
    assert f"resuming: {len(saved)} of 8 frames are already in" in done[0][1]
    assert "process 1 of 2: computed" in done[1][1] and f"process 0 wrote {two}" in done[1][1]
    assert saved == {p: (chunks / p).stat().st_mtime_ns for p in saved}  # kept, not computed again
    assert [p.name for p in two.with_suffix(".work").rglob(".*") if p.name != ".lock"] == []  # no temporary left
    assert outputs(two) == {k.replace("one", "two", 1): v for k, v in outputs(one).items()}
    # metrics.json differs in timings, date, command and -o only, and says which frames came from the first run
    assert metrics(two) == metrics(one) | {"resumed_frames": len(saved)}
    assert "process 1 of 2: surveyed" in done[1][1]
    assert survey_files(tmp_path / "two" / "s") == survey_files(tmp_path / "one" / "s")


@pytest.mark.parametrize("flags, said", [
    (["--num-processes", "2"], "--num-processes and --process-id need --coordinator"),
    (["--coordinator", "nowhere", "--num-processes", "2", "--process-id", "0"], "--coordinator must be HOST:PORT"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be below --num-processes 2, got 2"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "0", "--process-id", "0"], "--num-processes must be at least 1"),
])
def test_bad_process_options_are_one_line(flags, said, tmp_path, capsys):
    assert main(["render", "demo", "-o", str(tmp_path / "o.mp4"), "--model", "random:gpt2", *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_coordinator_is_one_line():
    with pytest.raises(OptionError, match=r"No coordinator answers at coordinator 127.0.0.1:\d+ after 0.5 s"):
        processes.join(f"127.0.0.1:{free_port()}", 2, 1, timeout_s=0.5)


def test_chunk_k_is_process_k_mod_p():
    shares = [processes.Processes(i, 3).share(range(0, 16, 2)) for i in range(3)]
    assert shares == [[0, 6, 12], [2, 8, 14], [4, 10]]
