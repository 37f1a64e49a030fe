"""A sweep over the numeric settings compiles once: only shapes and the step plan are compiled in."""
import collections
import contextlib
import dataclasses
import os

import jax
import numpy as np
import pytest

import badapple_jax as bj
from badapple_jax import chunks
from badapple_jax.cpu import YNN, compiler_options

COMPILE = "/jax/core/compile/backend_compile_duration"  # one event per XLA compile


@contextlib.contextmanager
def compiles():
    """-> a list that gets one entry per XLA compile inside the block."""
    seen = []

    def listen(event, seconds, **_):
        if event == COMPILE:
            seen.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


@pytest.fixture(scope="module")
def w(tiny_ckpt):
    return bj.pick_head(bj.load_layer(tiny_ckpt)[0], 0)


def sweep(w, frames, lrs, **options):  # -> compiles per run, losses per run
    counts, losses = [], []
    for lr in lrs:
        with compiles() as seen:
            program = bj.plan(w, frames.shape[-1], len(frames), bj.Settings(lr=lr, **options), chunk_size=len(frames))
            (_, result), = bj.optimize_frames(program, frames)
        counts.append(len(seen))
        losses.append(result.loss)
    return counts, losses


def test_a_learning_rate_sweep_compiles_once(w, rng):
    frames = rng.uniform(size=(3, 7, 7)).astype(np.float32)  # a shape no other test compiles
    counts, losses = sweep(w, frames, (0.05, 0.2), steps=12, seeds=2, lr_min=1e-3, b2=0.95)
    assert counts[0] >= 1 and counts[1] == 0, counts
    assert not np.allclose(losses[0], losses[1], rtol=1e-3)  # the second learning rate reached the program


def test_every_number_reaches_one_program(w, rng):
    """Each traced number changes the result of the same compiled program; a change of plan compiles anew."""
    base = bj.Settings(steps=8, seeds=1, schedule="cosine", lr=0.1)
    program, _ = bj.compile_chunk(w, 6, 2, base)
    frames = rng.uniform(size=(2, 6, 6)).astype(np.float32)
    loss = lambda s: next(bj.optimize_frames(program.with_settings(s), frames))[1].loss  # noqa: E731
    before = loss(base)
    changed = {"lr": 0.3, "lr_min": 0.05, "b2": 0.5, "init_scale": 0.7, "sink_z": 3.0, "sink_black": 0.1}
    with compiles() as seen:
        for name, value in changed.items():
            settings = dataclasses.replace(base, **{name: value})
            assert bj.compile_chunk(w, 6, 2, settings)[0].compiled is program.compiled
            assert not np.allclose(loss(settings), before, rtol=1e-4), name
    assert seen == []
    with pytest.raises(bj.BadInputError, match="more than their numbers"):
        program.with_settings(dataclasses.replace(base, steps=12))
    assert bj.compile_chunk(w, 6, 2, dataclasses.replace(base, steps=12))[0].compiled is not program.compiled


def test_settings_jit_as_an_ordinary_argument(w, rng):
    """The API's own jit: Settings is a pytree of its numbers, its plan static."""
    frames = rng.uniform(size=(2, 5, 5)).astype(np.float32)
    run = jax.jit(bj.optimize_chunk)
    args = (w, None, bj.Chunk(frames, np.arange(2), np.ones(2, bool)), 0)
    a = run(*args, bj.Settings(steps=4, seeds=1, lr=0.1)).loss
    b = run(*args, bj.Settings(steps=4, seeds=1, lr=0.3)).loss
    assert run._cache_size() == 1 and not np.allclose(a, b)


@pytest.mark.parametrize("solver, eigen", [("embedding", True), ("headspace", False), ("qk", False)])
def test_each_solver_compiles_with_its_cpu_matmul_path(w, solver, eigen, monkeypatch):
    """The XLA option is the program's (cpu.py), chosen by its solver; the process's XLA_FLAGS stay as they were."""
    passed, flags = [], os.environ.get("XLA_FLAGS")

    def spy(eigen_matmuls, platform):
        passed.append(compiler_options(eigen_matmuls, platform))
        return passed[-1]

    monkeypatch.setattr(chunks, "compiler_options", spy)
    monkeypatch.setattr(chunks, "_programs", collections.OrderedDict())  # a kept program is not compiled again
    bj.compile_chunk(w, 7, 1, bj.Settings(steps=4, seeds=1, solver=solver))
    assert passed == [{YNN: ""} if eigen else {}] and os.environ.get("XLA_FLAGS") == flags


def test_the_cpu_option_defers_to_xla_flags_and_other_platforms(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    assert compiler_options(True, "cpu") == {YNN: ""} and compiler_options(False, "cpu") == {}
    assert compiler_options(True, "gpu") == {}
    monkeypatch.setenv("XLA_FLAGS", f"--{YNN}=dot")  # the user's own choice wins
    assert compiler_options(True, "cpu") == {}
