"""solver.py: both solvers answer the same questions, and the optimiser asks them rather than their names."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from badapple_jax.errors import OptionError
from badapple_jax.headspace import HeadSpace, QKSpace, head_space
from badapple_jax.kernel import head_logits
from badapple_jax.model import pick_head, pick_heads
from badapple_jax.optimize import Chunk, Settings, optimize_chunk, start_keys
from badapple_jax.solver import SOLVERS, Embedding, make_solver
from badapple_jax.weights import load_layer


@pytest.fixture(scope="module")
def layer(tiny_ckpt):
    return load_layer(str(tiny_ckpt), 0)[0]


@pytest.fixture(scope="module", params=["one head", "group"])
def w(request, layer):
    return pick_head(layer, 1) if request.param == "one head" else pick_heads(layer, (0,))  # head space takes fewer q/k columns than n_embd


def test_names_map_to_objects(w):
    assert SOLVERS == ("embedding", "headspace", "qk")
    assert make_solver("embedding", w) == Embedding()
    assert isinstance(make_solver("headspace", w), HeadSpace)
    assert isinstance(make_solver("qk", w), QKSpace) and isinstance(make_solver("qk", w).space, HeadSpace)


def test_head_space_refuses_a_layer_above_0(tiny_ckpt):
    with pytest.raises(OptionError, match="layer 0 only"):
        make_solver("headspace", pick_head(load_layer(str(tiny_ckpt), 1)[0], 0))


@pytest.mark.parametrize("name", SOLVERS)
def test_every_solver_answers_the_protocol(w, name, rng):
    """init from random keys, logits from the parameters, to_x that shows the ordinary kernel the same logits."""
    solver = make_solver(name, w)
    S, B, L, E = 2, 3, 12, w.config.n_embd
    d = np.zeros((B, *w.w_q.shape[:-2], L, L), np.float32)
    p0 = solver.init(start_keys(0, np.arange(B), S), w, d, 0.1)
    assert p0.shape == (S, B, L, solver.width(w))
    p = p0[0, 0]
    kernel = Embedding().logits(solver.to_x(p), w)
    assert solver.to_x(p).shape == (L, E)
    assert kernel.shape == (len(w.w_q) if w.w_q.ndim == 3 else 1, L, L)  # heads always stacked: H >= 1
    np.testing.assert_allclose(solver.logits(p, w), kernel, rtol=1e-4, atol=1e-4)
    if w.w_q.ndim == 2:  # one head: the public kernel, unbatched
        np.testing.assert_allclose(kernel[0], head_logits(solver.to_x(p), w), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", SOLVERS)
def test_project_puts_parameters_where_an_embedding_reaches(w, name, rng):
    """qk's rows far outside the reachable ellipsoid come back onto it (z on the ball's surface) and then show
    the kernel through to_x exactly what they show the loss; rows already inside stay; embedding and headspace
    keep every p (their step never leaves the reachable set)."""
    solver = make_solver(name, w)
    L = 12
    p = jnp.asarray(rng.normal(0, 1, (L, solver.width(w))), jnp.float32)
    if name != "qk":
        assert solver.project(p) is p
        return
    n_embd = w.config.n_embd
    inside = solver.project(solver.init(start_keys(1, np.arange(1), 1), w, np.zeros((1, *w.w_q.shape[:-2], L, L)),
                                        0.1)[0, 0])
    np.testing.assert_allclose(solver.project(inside), inside, rtol=1e-4, atol=1e-4)
    far = solver.y(50 * jnp.sqrt(n_embd) * p / jnp.linalg.norm(p, axis=-1, keepdims=True))  # |z| = 50 R per row
    y = solver.project(far)
    np.testing.assert_allclose(jnp.linalg.norm(solver.z(y), axis=-1), np.sqrt(n_embd), rtol=1e-4)
    np.testing.assert_allclose(solver.project(y), y, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(solver.logits(y, w), Embedding().logits(solver.to_x(y), w), rtol=1e-3, atol=1e-3)


def test_a_qk_run_at_a_large_step_ends_reachable(layer, rng):
    """However far the q and k rows wander at lr 5, the phase ends projected: the lift check holds."""
    w = pick_head(layer, 1)
    frames = rng.uniform(0, 1, (2, 6, 6)).astype(np.float32)
    solver = make_solver("qk", w)
    result = jax.jit(optimize_chunk)(w, solver, Chunk(frames, np.arange(2), np.ones(2, bool)), np.int32(0),
                                     Settings(steps=16, seeds=1, solver="qk", schedule="cosine", lr=5.0))
    solver.check(result, np.arange(2))
    assert np.isfinite(result.loss).all()


def test_head_space_check_refuses_a_lift_that_lost_the_loss(layer):
    space = head_space(pick_head(layer, 0))

    @dataclasses.dataclass
    class Result:
        loss: np.ndarray
        space_loss: np.ndarray

    space.check(Result(np.array([0.5, 0.2]), np.array([0.5, 0.2])), np.array([7, 8]))
    Embedding().check(Result(np.array([9.0]), np.array([0.1])), np.array([7]))  # X is what was optimised
    with pytest.raises(RuntimeError, match="frame 8"):
        space.check(Result(np.array([0.5, 0.3]), np.array([0.5, 0.2])), np.array([7, 8]))


def test_none_is_the_embedding_solver(layer, rng):
    w = pick_head(layer, 2)
    frames = rng.uniform(0, 1, (2, 6, 6)).astype(np.float32)
    settings = Settings(steps=4, seeds=1)
    args = (Chunk(frames, np.arange(2), np.ones(2, bool)), np.int32(0), settings)
    run = jax.jit(lambda *a: optimize_chunk(*a))  # its own cache: test_compiles counts optimize_chunk's
    a, b = run(w, None, *args), run(w, Embedding(), *args)
    assert jax.tree.all(jax.tree.map(np.array_equal, a, b))


def test_the_planner_compiles_the_solver_of_its_settings(layer, rng):
    """`plan` (chunks.py) is the one chunk planner: its program carries the solver its settings name, its chunk
    fitted to the clip, and its mesh; a chunk size that is no positive integer is refused in the API's terms."""
    from badapple_jax.chunks import optimize_frames, plan

    w = pick_head(layer, 0)
    for name, kind in (("embedding", Embedding), ("headspace", HeadSpace)):
        program = plan(w, 6, 3, Settings(steps=4, seeds=1, solver=name), chunk_size=8)
        assert isinstance(program.solver, kind) and program.chunk_size == 3 and program.mesh.size == 1
    frames = rng.uniform(0, 1, (3, 6, 6)).astype(np.float32)
    (start, result), = optimize_frames(program, frames)
    assert start == 0 and result.loss.shape == (3,) and np.isfinite(result.psnr).all()
    with pytest.raises(OptionError, match="chunk_size"):
        plan(w, 6, 3, Settings(steps=4, seeds=1), chunk_size=0)
