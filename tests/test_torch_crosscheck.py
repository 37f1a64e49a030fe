"""Our optimiser against the PyTorch baseline (benchmarks/torch_baseline.py): same X0, same trajectory."""
import jax
import numpy as np
import pytest

from badapple_jax.encoding import ZScore
from badapple_jax.optimize import Problem, Settings, multi_start
from badapple_jax.model import pick_head
from badapple_jax.weights import load_layer

torch = pytest.importorskip("torch")
from benchmarks import torch_baseline  # noqa: E402


def both_sides(tiny_ckpt, tmp_path, B, S, steps, seed_select):
    w = pick_head(load_layer(str(tiny_ckpt), 0)[0], 1)
    torch_baseline.save_head(tmp_path / "head.npz", w)
    head = torch_baseline.load_head(tmp_path / "head.npz", "cpu")
    r = np.random.default_rng(11)
    T, E = 16, w.config.n_embd
    frames = r.random((B, T, T)).astype(np.float32) ** 3  # contrasty, never zero
    x0 = (r.standard_normal((S, B, T, E)) * 0.1).astype(np.float32)
    ours = jax.jit(multi_start, static_argnames="settings")(
        w, None, Problem(ZScore().desired(frames), ZScore().mask(T), np.ones(B, bool)), x0,
        settings=Settings(steps=steps, seeds=S, seed_select=seed_select))
    theirs = torch_baseline.optimize_chunk(torch.from_numpy(frames), head, torch.from_numpy(x0), steps=steps)
    return jax.device_get(ours), {k: v.numpy() if hasattr(v, "numpy") else v for k, v in theirs.items()}


def test_same_loss_trajectory_one_frame_one_seed(tiny_ckpt, tmp_path):
    ours, theirs = both_sides(tiny_ckpt, tmp_path, B=1, S=1, steps=48, seed_select="chunk")
    np.testing.assert_allclose(ours.explore_trace[0, :, 0], theirs["explore_trace"][0, :, 0], rtol=1e-4)
    np.testing.assert_allclose(ours.refine_trace[0], theirs["refine_trace"][:, 0], rtol=1e-4)
    np.testing.assert_allclose(ours.x[0], theirs["x"][0], rtol=1e-3, atol=1e-4)
    assert ours.refine_trace[0, -1] < 0.5 * ours.explore_trace[0, 0, 0]  # it did optimise


def test_same_choice_and_close_trajectories_for_a_chunk(tiny_ckpt, tmp_path):
    # The baseline differentiates the chunk's MEAN loss, we each frame's own: Adam cancels the 1/B
    # scale except through eps (1e-8), so trajectories agree closely but not to the last digit.
    ours, theirs = both_sides(tiny_ckpt, tmp_path, B=3, S=2, steps=40, seed_select="chunk")
    assert set(ours.start) == {theirs["seed"]}
    np.testing.assert_allclose(ours.explore_trace.transpose(2, 1, 0), theirs["explore_trace"], rtol=1e-3)
    np.testing.assert_allclose(ours.last_step_loss, theirs["loss"], rtol=1e-3)
