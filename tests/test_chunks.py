"""chunks.py, the one chunk driver: frames sharded over several devices give what one device gives (two host CPU
devices stand in for GPUs), chunk sizes fit the clip and the memory, a compiled program serves any number of
frames, and the non-finite guard retries a frame once and reports it if it fails again."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import badapple_jax as bj
from conftest import FAST_COMPILE
from badapple_jax import chunks
from badapple_jax.chunks import auto_program, fit_chunk_size, frame_mesh, optimize_frames
from badapple_jax.optimize import LIMITS, Settings
from badapple_jax.model import pick_head
from badapple_jax.weights import load_layer

def device_results(ckpt: str) -> dict:
    """Both solvers' losses, kept starts and embedding sums on 6 frames in chunks of 4, on this process's devices."""
    w = pick_head(load_layer(ckpt, 0)[0], 1)
    frames = np.random.default_rng(5).random((6, 16, 16)).astype(np.float32) ** 3
    out = {"devices": jax.device_count()}
    for solver, select in (("embedding", "chunk"), ("headspace", "frame")):
        s = Settings(steps=12, seeds=2, solver=solver, seed_select=select)
        rs = [r for _, r in optimize_frames(bj.plan(w, 16, len(frames), s, chunk_size=4), frames, seed=1)]
        out[solver] = {"loss": np.concatenate([r.loss for r in rs]).tolist(),
                       "start": np.concatenate([r.start for r in rs]).tolist(),
                       "x": np.concatenate([r.x for r in rs]).sum(axis=(1, 2)).tolist()}
    return out


RUN = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_chunks import device_results
print(json.dumps(device_results(sys.argv[1])))
"""


def run(tiny_ckpt, devices):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"}
    done = subprocess.run([sys.executable, "-c", RUN, str(tiny_ckpt)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_devices_give_the_single_device_results(tiny_ckpt):
    one, two = device_results(str(tiny_ckpt)), run(tiny_ckpt, 2)  # this process has one device
    assert (one["devices"], two["devices"]) == (1, 2)
    for solver in ("embedding", "headspace"):
        assert one[solver]["start"] == two[solver]["start"]
        # two devices run another XLA program (other fusions): per-step float32 rounding (~1e-7), which the optimiser
        # amplifies over its steps; measured up to 2e-5 relative, the bound leaves 5x room (as test_zscore_golden)
        np.testing.assert_allclose(two[solver]["loss"], one[solver]["loss"], rtol=1e-4)
        np.testing.assert_allclose(two[solver]["x"], one[solver]["x"], rtol=1e-4, atol=1e-3)


def test_chunk_sizes_fit_the_clip_and_the_devices(tiny_ckpt):
    mesh = frame_mesh()
    assert fit_chunk_size(64, 10, mesh) == 10 and fit_chunk_size(3, 10, mesh) == 3
    w = pick_head(load_layer(str(tiny_ckpt), 0)[0], 0)
    settings = Settings(steps=8, seeds=2)
    chunk = auto_program(w, 16, 100, settings, mesh).chunk_size
    assert 1 <= chunk <= 64 and -(-100 // chunk) * chunk - 100 < -(-100 // chunk)  # little padding
    frames = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    results = list(optimize_frames(chunks.plan(w, 16, 5, settings), frames))  # chunk size picked automatically
    assert sum(len(r.loss) for _, r in results) == 5 and jax.device_count() == 1


@pytest.mark.parametrize("mode, T, largest", [("causal", 64, 63), ("quarter", 32, 31)])
def test_compile_refuses_a_size_the_models_positions_cannot_hold(tiny_ckpt, mode, T, largest):
    w = pick_head(load_layer(str(tiny_ckpt), 0)[0], 0)  # 64 positions: T + 1 tokens with the sink, 2T + 1 in quarter
    with pytest.raises(bj.BadInputError, match=rf"size {T} must be in 2..{largest}: the sink display \(mode {mode}\)"):
        chunks.compile_chunk(w, T, 1, Settings(steps=8, seeds=1, mode=mode))


def test_auto_chunk_compiles_once_where_it_fits_and_cuts_where_it_does_not(tiny_ckpt, monkeypatch):
    """Issue 15, item 6: one compile for an automatic chunk size when the largest useful chunk fits; when it
    does not, the program's own memory figures cut it to fit, with one more compile."""
    mesh = frame_mesh()
    w = pick_head(load_layer(str(tiny_ckpt), 0)[0], 0)
    settings = Settings(steps=8, seeds=2)
    compiled = []
    real = chunks.compile_chunk
    monkeypatch.setattr(chunks, "compile_chunk", lambda *a, **k: compiled.append(a[2]) or real(*a, **k))
    program = auto_program(w, 16, 8, settings, mesh)
    assert compiled == [8] and program.chunk_size == 8  # MAX_AUTO_CHUNK's CPU cap
    big = chunks.needed_bytes(program)
    compiled.clear()
    monkeypatch.setattr(chunks, "free_bytes_per_device", lambda m: big / 2 / chunks.MEMORY_MARGIN)  # half of it
    program = auto_program(w, 16, 8, settings, mesh)
    assert compiled[0] == 8 and len(compiled) == 2 and 1 <= program.chunk_size < 8
    assert chunks.needed_bytes(program) <= big / 2


def test_a_compiled_program_serves_any_number_of_frames(tiny_ckpt, monkeypatch, rng):
    """Item 6: fewer frames than the compiled chunk are padded to it, never recompiled (nor refused by XLA)."""
    w = bj.pick_head(bj.load_layer(tiny_ckpt)[0], 0)
    settings = bj.Settings(steps=8, seeds=2)
    program, _ = bj.compile_chunk(w, 16, 5, settings)  # the program of 5 frames above
    monkeypatch.setattr(chunks, "compile_chunk", lambda *a, **k: pytest.fail("recompiled"))
    for n in (1, 3, 7):
        results = list(bj.optimize_frames(program, rng.random((n, 16, 16)).astype(np.float32)))
        assert sum(len(r.loss) for _, r in results) == n
    with pytest.raises(bj.BadInputError, match=r"frames are 8 x 8 but the program was planned for 16 x 16: "
                                               r"plan\(w, 8, n_frames, settings\)"):
        next(bj.optimize_frames(program, rng.random((3, 8, 8)).astype(np.float32)))


def test_optimize_frames_takes_a_program(tiny_ckpt):
    """The program carries the weights, settings, chunk size and mesh: weights in its place are refused in one line
    that names the planner."""
    w = bj.pick_head(bj.load_layer(tiny_ckpt)[0], 0)
    with pytest.raises(bj.BadInputError, match=r"optimize_frames takes a Program from bj.plan\(w, T, n_frames, "
                                               r"settings\), then the frames; got a HeadWeights first\.$"):
        next(bj.optimize_frames(w, np.zeros((2, 16, 16), np.float32)))


# --- the non-finite guard -----------------------------------------------------------------------------------------
# Adam moves every coordinate by about the learning rate per step: at lr 1e37 the embeddings overflow float32
# within a few steps (NaN loss) but half of it stays finite on the tiny model; at 1e38 both attempts overflow.


@pytest.fixture(scope="module")
def head(tiny_ckpt):
    return pick_head(load_layer(str(tiny_ckpt))[0], 0)


@pytest.fixture
def absurd_lr(monkeypatch):
    monkeypatch.setitem(LIMITS, "lr", 1e40)  # every command and Settings.check refuse such rates


def test_a_non_finite_frame_is_retried_at_half_the_learning_rate(head, rng, absurd_lr):
    frames = rng.random((2, 16, 16)).astype(np.float32)
    (_, r), = optimize_frames(chunks.plan(head, 16, 2, Settings(steps=40, seeds=2, lr=1e37, lr_min=0), chunk_size=2),
                              frames)
    assert r.retried.all() and not r.failed.any()
    assert np.isfinite(r.loss).all() and np.isfinite(r.attention).all() and np.isfinite(r.refine_trace).all()
    (_, calm), = optimize_frames(chunks.plan(head, 16, 2, Settings(steps=40, seeds=2), chunk_size=2), frames)
    assert not calm.retried.any() and not calm.failed.any()


@pytest.mark.parametrize("plan", [dict(seeds=2), dict(seeds=1, schedule="cosine", b2=0.9)])  # one phase too
def test_a_frame_non_finite_twice_is_reported_and_shown_from_its_best_finite_state(plan, head, rng, absurd_lr):
    frames = rng.random((2, 16, 16)).astype(np.float32)
    (_, r), = optimize_frames(chunks.plan(head, 16, 2, Settings(steps=40, lr=1e38, lr_min=0, **plan), chunk_size=2),
                              frames)
    assert r.retried.all() and r.failed.all()
    assert np.isfinite(r.loss).all() and np.isfinite(r.last_step_loss).all() and np.isfinite(r.x).all()
    np.testing.assert_allclose(r.last_step_loss, r.loss, rtol=1e-5)  # the loss reported is that of the state shown
    assert np.isfinite(r.attention).all() and np.allclose(r.attention.sum(-1), 1, atol=1e-5)
