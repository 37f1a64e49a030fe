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
SURVEY = ["--size", "16", "--frames", "3", "--steps", "20"]  # layer 0: heads 0 and 2 on process 0, 1 and 3 on 1
TIMINGS = ("compile_seconds", "optimize_seconds", "seconds_per_frame", "date", "command")  # and settings.output
# A child runs commands one after the other, as `badapple-jax` would run each (with its XLA setting, cpu.py): this
# process's backend runs other XLA flags (conftest.py), so the one-process runs to compare with are children too,
# and a child that runs a render and a survey starts Python and JAX once for both.
COMMANDS = ("import json, sys; from badapple_jax.cpu import use_eigen_matmuls; use_eigen_matmuls(); "
            "from badapple_jax.cli import main; sys.exit(next((s for s in map(main, json.loads(sys.argv[1])) if s), 0))")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*commands) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", COMMANDS, json.dumps(commands)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def launch(*commands) -> list[subprocess.Popen]:
    """Processes 0 and 1 of one job running `commands`."""
    joined = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2", "--process-id"]
    return [start(*([*c, *joined, str(i)] for c in commands)) for i in range(2)]


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


def survey_files(prefix) -> tuple:
    table = json.loads(prefix.with_suffix(".json").read_text())
    return ({k: v for k, v in table.items() if k != "seconds"}, prefix.with_suffix(".md").read_bytes(),
            prefix.with_suffix(".png").read_bytes())


@pytest.mark.slow
def test_two_processes_render_and_survey_as_one_and_a_killed_render_resumes(tiny_ckpt, tmp_path):
    """Five children in all (each Python and JAX start is seconds): one process alone renders and surveys; two
    start the render and process 0 is killed after its first chunk; two rerun it, then survey."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()  # apart: a render beside a finished one of the same job would assemble from it
    one, two = tmp_path / "one" / "x.mp4", tmp_path / "two" / "x.mp4"
    render = ["render", "demo", "--model", str(tiny_ckpt), *RENDER]
    survey = ["survey", "demo", "--model", str(tiny_ckpt), *SURVEY]
    alone = finish([start([*render, "-o", str(one), "-q"], [*survey, "-o", str(tmp_path / "one" / "s")])])
    assert alone[0][0] == 0, alone  # first: the others then find its programs in the suite's compilation cache

    launched = launch([*render, "-o", str(two), "-q"])
    chunks = two.with_suffix(".work") / "chunks"
    deadline = time.monotonic() + TIMEOUT
    while not (chunks / "chunk_000000.npz").exists():  # process 0's first chunk
        assert all(p.poll() is None for p in launched) and time.monotonic() < deadline, finish(launched)
        time.sleep(0.01)
    launched[0].kill()  # process 0: the coordinator, the lock's holder and the writer
    launched[0].wait()
    assert finish(launched[1:])[0][0] != 0  # the runtime aborts process 1 at once: its coordinator is gone
    saved = {p.name: p.stat().st_mtime_ns for p in chunks.iterdir()}
    assert 1 <= len(saved) < 8 and not two.exists()

    done = finish(launch([*render, "-o", str(two)], [*survey, "-o", str(tmp_path / "two" / "s")]))
    assert [status for status, _, _ in done] == [0, 0], done
    assert f"resuming: {len(saved)} of 8 frames are already in" in done[0][2]
    assert "process 1 of 2: computed" in done[1][2] and f"process 0 wrote {two}" in done[1][2]
    assert saved == {p: (chunks / p).stat().st_mtime_ns for p in saved}  # kept, not computed again
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
