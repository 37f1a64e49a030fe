"""The multi-start optimiser: schedule against PyTorch, and its behaviour on a tiny model."""
import jax
import numpy as np
import pytest

from badapple_jax.chunks import compile_chunk, optimize_frames
from badapple_jax.optimize import Settings, warm_restart_cosine
from badapple_jax.model import pick_head
from badapple_jax.weights import load_layer


@pytest.mark.parametrize("n_steps", [375, 1125, 37])  # explore and refine phases of the default 1500 steps; a short one
def test_schedule_equals_torch_cosine_annealing_warm_restarts(n_steps):
    import torch

    lr, lr_min, T_0 = 0.1, 1e-4, max(n_steps // 4, 50)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=T_0, T_mult=1, eta_min=lr_min)
    expected = []
    for _ in range(n_steps):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = warm_restart_cosine(lr, lr_min, T_0, n_steps)
    got = [float(ours(t)) for t in range(n_steps)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)


@pytest.fixture(scope="module")
def head(tiny_ckpt):
    return pick_head(load_layer(str(tiny_ckpt), 0)[0], 0)


@pytest.fixture(scope="module")
def frames():
    T = 16
    yy, xx = np.mgrid[:T, :T] / T
    return np.stack([0.05 + 0.95 * ((xx - 0.1 * k) ** 2 + (yy - 0.5) ** 2 < 0.1)
                     for k in range(5)]).clip(0, 1)


def run(head, frames, settings, chunk_size):
    results = list(optimize_frames(head, frames, settings, seed=3, chunk_size=chunk_size, progress=False))
    return jax.tree.map(lambda *a: np.concatenate(a), *[r for _, r in results])


def test_optimiser_lowers_the_loss_and_pads_the_last_chunk(head, frames):
    settings = Settings(steps=40, seeds=2)
    r = run(head, frames, settings, chunk_size=4)  # 5 frames: a full chunk and a padded one
    assert r.loss.shape == (5,) and r.x.shape == (5, 17, 64) and r.attention.shape == (5, 17, 17)
    assert r.explore_trace.shape == (5, 10, 2) and r.refine_trace.shape == (5, 30)
    first = r.explore_trace[:, 0, :].min(axis=1)
    assert np.all(r.loss < 0.01 * first), (r.loss, first)
    assert np.all(np.isfinite(r.x))
    np.testing.assert_allclose(r.attention.sum(-1), 1.0, rtol=1e-5)


def test_frame_results_do_not_depend_on_the_chunk(head, frames):
    settings = Settings(steps=20, seeds=2)
    a, b = run(head, frames, settings, chunk_size=2), run(head, frames, settings, chunk_size=5)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)
    np.testing.assert_array_equal(a.start, b.start)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-4, atol=1e-5)


def test_best_seed_per_frame_is_never_worse_than_one_per_chunk(head, frames):
    per_frame = run(head, frames, Settings(steps=20, seeds=3), chunk_size=5)
    per_chunk = run(head, frames, Settings(steps=20, seeds=3, seed_select="chunk"), chunk_size=5)
    np.testing.assert_allclose(per_frame.explore_loss, per_chunk.explore_loss, rtol=1e-6)  # same starts
    assert len(set(per_chunk.start)) == 1
    rows = np.arange(5)
    assert np.all(per_frame.explore_loss[rows, per_frame.start] <= per_chunk.explore_loss[rows, per_chunk.start])
    assert np.all(per_frame.explore_loss[rows, per_frame.start] == per_frame.explore_loss.min(axis=1))
    same = per_frame.start == per_chunk.start  # where both keep the same start, refinement is identical
    np.testing.assert_allclose(per_frame.loss[same], per_chunk.loss[same], rtol=1e-6)


def test_one_compiled_program_serves_every_chunk(head, frames):
    settings = Settings(steps=8, seeds=1)
    compiled, seconds = compile_chunk(head, 16, 2, settings)
    assert seconds > 0
    results = list(optimize_frames(head, frames, settings, chunk_size=2, progress=False, compiled=compiled))
    assert [start for start, _ in results] == [0, 2, 4]
    assert [len(r.loss) for _, r in results] == [2, 2, 1]


def test_precision_flags_reach_the_compiled_matmuls(head):
    import re

    seen = {}
    for precision in ("fp32", "tf32", "bf16"):
        program, _ = compile_chunk(head, 16, 2, Settings(steps=4, seeds=1, precision=precision))
        seen[precision] = set(re.findall(r"operand_precision=\{(\w+),", program.compiled.as_text()))
    # fp32 asks for full float32 passes, tf32 for one reduced pass; bf16 is XLA's default (one bf16 pass on GPUs)
    assert seen == {"fp32": {"highest"}, "tf32": {"high"}, "bf16": set()}


@pytest.mark.parametrize("frames, expected", [
    (np.zeros((16, 16), np.float32), r"got shape \(16, 16\) \(one frame: frames\[None\]\)"),
    (np.zeros((2, 16, 12), np.float32), "square T x T frames"),
    (np.full((1, 16, 16), 255.0, np.float32), r"frames must lie in \[0, 1\], got values in \[255, 255\]"),
    (np.zeros((1, 16, 16), np.int32), "floats in \\[0, 1\\] or uint8, got int32"),
    (np.zeros((0, 16, 16), np.float32), "frames is empty"),
], ids=["one frame without N", "not square", "0..255 floats", "int32", "none"])
def test_frames_are_checked_in_the_apis_terms_before_compiling(head, frames, expected):
    from badapple_jax.errors import BadInputError

    with pytest.raises(BadInputError, match=expected):
        next(optimize_frames(head, frames, Settings(steps=8, seeds=1)))


def test_uint8_frames_are_scaled(head, frames):
    settings = Settings(steps=8, seeds=1)
    as_bytes = (frames[:2] * 255).round().astype(np.uint8)
    a = run(head, as_bytes, settings, chunk_size=2)
    b = run(head, as_bytes.astype(np.float32) / 255, settings, chunk_size=2)
    np.testing.assert_array_equal(a.loss, b.loss)


@pytest.mark.parametrize("shape, expected", [((2, 16, 64), r"one sequence of embeddings \[T, n_embd=64\]"),
                                             ((16, 32), r"\[T, n_embd=64\], got shape \(16, 32\)"),
                                             ((65, 64), "the model has positions for 1..64")])
def test_the_kernel_names_a_misshapen_x(head, shape, expected):
    from badapple_jax.kernel import attention, head_logits

    for f in (attention, head_logits):
        with pytest.raises(ValueError, match=expected):
            f(np.zeros(shape, np.float32), head)
