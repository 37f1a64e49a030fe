"""Several processes (processes.py): two local CPU processes share a render or a survey through JAX's multi-process
runtime (a loopback coordinator) and leave a one-process run's bytes; a process killed mid-render ends the other,
and rerunning both resumes."""
import json
import socket
import subprocess
import sys
import time

import pytest

from badapple_jax import processes
from badapple_jax.cli import main
from badapple_jax.errors import OptionError

TIMEOUT = 120  # seconds any launch may take before the test fails instead of hanging
# Eight chunks of one frame: each process computes four, each a few tenths of a second on the tiny model.
RENDER = ["--size", "16", "--max-frames", "8", "--chunk-size", "1", "--steps", "400", "--save-embeddings"]
SURVEY = ["--size", "16", "--frames", "3", "--steps", "20", "--layers", "0,1"]
TIMINGS = ("compile_seconds", "optimize_seconds", "seconds_per_frame", "date", "command")  # and settings.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args) -> subprocess.Popen:
    """The command `args` in a process of its own: this one's backend runs other XLA flags (conftest.py), so a
    one-process run to compare with runs in a child too."""
    return subprocess.Popen([sys.executable, "-m", "badapple_jax", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def launch(args) -> list[subprocess.Popen]:
    """Processes 0 and 1 of one job running the command `args`."""
    joined = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    return [start([*args, *joined, "--process-id", str(i)]) for i in range(2)]


def finish(launched) -> list[tuple[int, str, str]]:
    """(status, stdout, stderr) of each process; none may outlive TIMEOUT."""
    try:
        said = [p.communicate(timeout=TIMEOUT) for p in launched]
        return [(p.returncode, *out_err) for p, out_err in zip(launched, said)]
    finally:
        for p in launched:
            p.kill()


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


@pytest.mark.slow
def test_two_processes_killed_and_rerun_leave_a_one_process_render(tiny_ckpt, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()  # apart: a render beside a finished one of the same job would assemble from it
    one, two = tmp_path / "one" / "x.mp4", tmp_path / "two" / "x.mp4"
    args = ["render", "demo", "--model", str(tiny_ckpt), *RENDER]
    alone = start([*args, "-o", str(one), "-q"])
    launched = launch([*args, "-o", str(two), "-q"])
    chunks = two.with_suffix(".work") / "chunks"
    deadline = time.monotonic() + TIMEOUT
    while not (chunks / "chunk_000000.npz").exists():  # process 0's first chunk
        assert all(p.poll() is None for p in launched) and time.monotonic() < deadline, finish(launched)
        time.sleep(0.01)
    launched[0].kill()  # process 0: the coordinator, the lock's holder and the writer
    [(_, _, said)] = finish(launched[1:])
    launched[0].wait()
    assert launched[1].returncode != 0 and "another task died" in said  # the runtime ends it at once
    saved = {p.name: p.stat().st_mtime_ns for p in chunks.iterdir()}
    assert 1 <= len(saved) < 8 and not two.exists()
    assert finish([alone])[0][0] == 0

    done = finish(launch([*args, "-o", str(two)]))
    assert [status for status, _, _ in done] == [0, 0], done
    assert f"resuming: {len(saved)} of 8 frames are already in" in done[0][2]
    assert "process 1 of 2: computed" in done[1][2] and f"process 0 wrote {two}" in done[1][2]
    assert {p: t for p, t in saved.items()} == {p: (chunks / p).stat().st_mtime_ns for p in saved}  # not redone
    assert outputs(two) == {k.replace("one", "two", 1): v for k, v in outputs(one).items()}
    assert metrics(two) == metrics(one) | {"resumed_frames": len(saved)}


@pytest.mark.slow
def test_a_survey_across_two_processes_equals_one(tiny_ckpt, tmp_path):
    args = ["survey", "demo", "--model", str(tiny_ckpt), *SURVEY]
    done = finish([start([*args, "-o", str(tmp_path / "one")]), *launch([*args, "-o", str(tmp_path / "two")])])
    assert [status for status, _, _ in done] == [0, 0, 0], done
    assert "process 1 of 2: surveyed" in done[2][1]
    table = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "two")]
    assert [{k: v for k, v in t.items() if k != "seconds"} for t in table][0] == \
        [{k: v for k, v in t.items() if k != "seconds"} for t in table][1]
    for ext in (".md", ".png"):
        assert (tmp_path / f"one{ext}").read_bytes() == (tmp_path / f"two{ext}").read_bytes()


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
