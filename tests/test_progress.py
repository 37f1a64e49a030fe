"""progress.py: a program compiled with progress reports its share of a chunk's updates as it runs, in order, up
to 1, without changing what it computes; the bar moves within a chunk."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import badapple_jax as bj
from badapple_jax import progress
from badapple_jax.model import ModelConfig


@pytest.mark.parametrize("n_steps", [7, 40, 45])
def test_scan_in_blocks_is_the_plain_scan_and_reports_every_block(n_steps, monkeypatch):
    shares = []
    monkeypatch.setattr(progress.Running, "reached", classmethod(lambda cls, share: shares.append(float(share))))
    step = lambda c, _: (c * 1.01 + jnp.sin(c), c.sum())  # noqa: E731
    c0 = jnp.asarray(np.random.default_rng(0).standard_normal(5), jnp.float32)
    plain = jax.jit(lambda c: progress.scan(step, c, n_steps))(c0)
    blocks = jax.jit(lambda c: progress.scan(step, c, n_steps, share=lambda s: s / n_steps))(c0)
    jax.effects_barrier()
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(blocks)):
        np.testing.assert_array_equal(a, b)
    k = max(n_steps // progress.REPORTS, 1)  # a report every k steps and at the end (unordered callbacks: sorted)
    expected = sorted({*(np.arange(k, n_steps + 1, k) / n_steps).astype(np.float32).tolist(), 1.0})
    assert sorted(shares) == pytest.approx(expected)


@pytest.mark.parametrize("n_steps", [7, 40, 45])
def test_blocks_of_every_steps_end_with_after_and_report_alike(n_steps, monkeypatch):
    """Blocks of 20 steps (the last one shorter), `after` at the end of each, as a loop by hand; with reports the
    same numbers exactly, a report per block."""
    every, shares = 20, []
    monkeypatch.setattr(progress.Running, "reached", classmethod(lambda cls, share: shares.append(float(share))))
    step = lambda c, _: (c * 1.01 + jnp.sin(c), c.sum())  # noqa: E731
    after = lambda c: c / jnp.linalg.norm(c)  # noqa: E731
    c0 = jnp.asarray(np.random.default_rng(1).standard_normal(5), jnp.float32)
    quiet = jax.jit(lambda c: progress.scan(step, c, n_steps, every=every, after=after))(c0)
    shown = jax.jit(lambda c: progress.scan(step, c, n_steps, lambda s: s / n_steps, every, after))(c0)
    jax.effects_barrier()
    c, ys = c0, []
    for i in range(n_steps):
        c, y = step(c, None)
        ys.append(y)
        if (i + 1) % every == 0 or i + 1 == n_steps:
            c = after(c)
    np.testing.assert_allclose(quiet[0], c, rtol=1e-5)
    np.testing.assert_allclose(quiet[1], ys, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(quiet), jax.tree.leaves(shown)):
        np.testing.assert_array_equal(a, b)
    ends = sorted({min(k, n_steps) for k in range(every, n_steps + every, every)})
    assert sorted(shares) == pytest.approx([k / n_steps for k in ends])


# embedding: explore 6 steps x 2 starts, refine 18: 30 updates a frame. qk: explore 15 x 2 (a part block of its
# PROJECT_EVERY 20), refine 45 (a scan of 2 blocks, then 5 steps)
@pytest.mark.parametrize("settings", [bj.Settings(steps=24, seeds=2), bj.Settings(steps=60, seeds=2, solver="qk")],
                         ids=["embedding", "qk"])
def test_a_chunk_reports_up_to_its_end_and_computes_the_same(settings, rng):
    w = bj.pick_head(bj.random_layer(ModelConfig(n_layer=1, n_head=4, n_embd=64, n_positions=64, eps=1e-5)), 0)
    frames = rng.random((2, 8, 8)).astype(np.float32)
    chunk = bj.Chunk(frames, np.arange(2, dtype=np.int32), np.ones(2, bool))
    quiet, shown = (bj.compile_chunk(w, 8, 2, settings, options=bj.PhaseOptions(progress=on))[0] for on in (False, True))
    progress.Running.restart()
    a = quiet(chunk, 0)
    jax.effects_barrier()
    assert progress.Running.done == 0.0  # a program without reports sends none
    b = shown(chunk, 0)
    jax.effects_barrier()
    assert progress.Running.done == pytest.approx(1.0)
    # The same steps: every result to float rounding. Under the suite's XLA flags (conftest.FAST_COMPILE) the two
    # programs' fusions may round apart, and the lift to X amplifies that (~1e-4 of |X|, losses and maps ~1e-7);
    # the command's own flags give equal bytes (test_processes).
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        scale = 1e-3 * np.abs(x).max() if path[0].name == "x" else 1e-7
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=scale, err_msg=jax.tree_util.keystr(path))
