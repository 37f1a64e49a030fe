"""Head space (SPEC section 9): exact against the ordinary kernel, the lift, and the solver built on it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from badapple_jax.chunks import optimize_frames, plan
from badapple_jax.errors import BadInputError
from badapple_jax.headspace import ball, head_space, headspace_logits, lift, random_z, to_head_space
from badapple_jax.kernel import head_logits
from badapple_jax.optimize import Settings
from badapple_jax.model import ModelConfig, pick_head, pick_heads
from badapple_jax.weights import load_layer, random_layer

logits = jax.vmap(head_logits, in_axes=(0, None))
hs_logits = jax.vmap(headspace_logits, in_axes=(0, None))


@pytest.fixture(scope="module")
def head(tiny_ckpt):
    return pick_head(load_layer(str(tiny_ckpt), 0)[0], 2)


@pytest.fixture(scope="module")
def space(head):
    return head_space(head)


def test_every_embedding_is_a_point_of_head_space(head, space, rng):
    x = rng.normal(0.0, 1.0, (3, 20, 64)).astype(np.float32)
    z = jax.vmap(to_head_space, in_axes=(0, None))(x, space)
    assert z.shape == (3, 20, 2 * head.config.d_head)
    assert np.all(np.linalg.norm(z, axis=-1) <= np.sqrt(64) + 1e-4)
    np.testing.assert_allclose(hs_logits(z, space), logits(x, head), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("radius", [0.3, 1.0, 3.0])  # inside, on and (clipped) outside the ball
def test_the_lift_shows_the_kernel_what_z_shows(head, space, rng, radius):
    p = rng.normal(0.0, 1.0, (2, 24, 32)).astype(np.float32)
    p = p / np.linalg.norm(p, axis=-1, keepdims=True) * np.sqrt(64) * radius * rng.uniform(0.5, 1.0, (2, 24, 1))
    x = jax.vmap(lift, in_axes=(0, None))(p, space)
    assert x.shape == (2, 24, 64) and np.all(np.isfinite(x))
    np.testing.assert_allclose(logits(x, head), hs_logits(p, space), rtol=1e-4, atol=2e-4)
    back = jax.vmap(to_head_space, in_axes=(0, None))(x, space)
    np.testing.assert_allclose(back, ball(p, 64), atol=1e-4)


def test_ball_is_the_projection_with_finite_gradients():
    R = np.sqrt(64)
    p = jnp.asarray([[0.0] * 4, [1.0, 2.0, 0.0, 0.0], [30.0, 40.0, 0.0, 0.0]])
    z = ball(p, 64)
    np.testing.assert_allclose(z[:2], p[:2])
    np.testing.assert_allclose(z[2], p[2] / 50.0 * R, rtol=1e-6)
    g = jax.grad(lambda p: jnp.sum(ball(p, 64) ** 2))(p)
    assert np.all(np.isfinite(g))


def test_degenerate_head_and_deeper_layers(tiny_ckpt):
    w = pick_head(load_layer(str(tiny_ckpt), 0)[0], 0)
    dead = w.replace(w_k=jnp.zeros_like(w.w_k))  # K = b_k only: rank-deficient, no Cholesky possible
    space = head_space(dead)
    x = np.random.default_rng(3).normal(size=(1, 16, 64)).astype(np.float32)
    z = jax.vmap(to_head_space, in_axes=(0, None))(x, space)
    np.testing.assert_allclose(hs_logits(z, space), logits(x, dead), rtol=1e-4, atol=1e-4)
    p = np.random.default_rng(4).normal(size=(1, 16, 32)).astype(np.float32) * 3  # dead directions too
    lifted = jax.vmap(lift, in_axes=(0, None))(p, space)
    np.testing.assert_allclose(logits(lifted, dead), hs_logits(p, space), rtol=1e-4, atol=1e-4)
    with pytest.raises(BadInputError, match="layer 0 only"):
        head_space(pick_head(load_layer(str(tiny_ckpt), 1)[0], 0))


@pytest.fixture(scope="module")
def frames():
    T = 16
    yy, xx = np.mgrid[:T, :T] / T
    return np.stack([0.05 + 0.95 * ((xx - 0.1 * k) ** 2 + (yy - 0.6) ** 2 < 0.12) for k in range(4)]).astype(np.float32)


SHORT = 8  # steps of the tests that compare starts: one compiled program per solver, shared by them


def solve(head, frames, **kw):
    settings = Settings(**{"steps": 40, "seeds": 2, "solver": "headspace", **kw})
    results = [r for _, r in optimize_frames(plan(head, 16, len(frames), settings, chunk_size=4), frames)]
    return jax.tree.map(lambda *a: np.concatenate(a), *results)


def test_headspace_solver_optimises_and_its_lift_is_exact(head, frames):
    r = solve(head, frames)
    assert r.x.shape == (4, 17, 64)  # T + 1 tokens: the sink display
    assert np.all(r.loss < 0.05 * r.explore_trace[:, 0, :].min(axis=1))
    np.testing.assert_allclose(r.loss, r.space_loss, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.attention.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_headspace_starts_are_the_z_of_random_embeddings(space, norm):
    """Drawn in head space, a start has the distribution of the z a random X ~ N(0, s^2) shows the head: the same
    mean and spread of every coordinate and of the rows' norms, within sampling error (~6 standard errors)."""
    if norm == "rms":  # Llama's: no mean removed, no positions added
        config = ModelConfig(n_layer=1, n_head=4, n_embd=64, n_positions=32, eps=1e-5, family="llama", norm="rms",
                             rotary_dim=16, qkv_bias=False)
        space = head_space(pick_head(random_layer(config, 0, seed=1), 1))
    N, L, s = 4000, 6, 0.1
    keys = jax.random.split(jax.random.key(0), 2 * N)
    through_x = jax.jit(jax.vmap(lambda k, hs: to_head_space(jax.random.normal(k, (L, 64)) * s, hs), (0, None)))
    drawn = jax.jit(jax.vmap(lambda k, hs: random_z(k, hs, L, s), (0, None)))
    through_x, drawn = through_x(keys[:N], space), drawn(keys[N:], space)
    for stat in (lambda z: z.mean(0), lambda z: z.std(0), lambda z: jnp.linalg.norm(z, axis=-1).mean(0)):
        np.testing.assert_allclose(stat(drawn), stat(through_x), atol=6 / np.sqrt(N))


def test_warm_start_begins_closer(head, frames):
    warm = solve(head, frames, steps=SHORT, warm_start=True)
    cold = solve(head, frames, steps=SHORT)
    assert np.all(warm.explore_trace[:, 0, 0] < cold.explore_trace[:, 0, 0])
    np.testing.assert_allclose(warm.explore_trace[:, :, 1], cold.explore_trace[:, :, 1], rtol=1e-5)  # others as before


def test_warm_start_with_fewer_tokens_than_d_head(head, frames):
    """L = 9 tokens (T = 8, the sink) under d_head = 16: the target has rank at most L, so the SVD start is exact."""
    small = frames[:2, ::2, ::2]
    settings = Settings(steps=4, seeds=1, solver="headspace", warm_start=True)
    (_, r), = optimize_frames(plan(head, 8, 2, settings), small)
    assert head.config.d_head > 9 and np.all(r.explore_loss[:, 0] < 1e-6) and np.isfinite(r.loss).all()


@pytest.fixture(scope="module")
def wide_ckpt(tmp_path_factory):  # another shape: 3 heads of 32, n_embd 96
    from conftest import save_tiny_gpt2

    return save_tiny_gpt2(tmp_path_factory.mktemp("wide"), seed=4, n_embd=96, n_head=3)


@pytest.mark.parametrize("model, heads", [("tiny", (0, 1, 3)), ("wide", (0, 2)), ("random:gpt2", (0, 11))])
def test_lift_is_exact_across_configs_and_heads(model, heads, tiny_ckpt, wide_ckpt, rng):
    name = {"tiny": str(tiny_ckpt), "wide": str(wide_ckpt)}.get(model, model)
    layer, _ = load_layer(name, 0)
    E = layer.config.n_embd
    for h in heads:
        head = pick_head(layer, h)
        space = head_space(head)
        p = rng.normal(0.0, 1.0, (1, 20, 2 * head.config.d_head)).astype(np.float32) * np.sqrt(E / head.config.d_head)
        x = jax.vmap(lift, in_axes=(0, None))(p, space)
        A, B = logits(x, head), hs_logits(p, space)
        np.testing.assert_allclose(A, B, rtol=1e-4, atol=1e-4 * float(np.abs(B).max()), err_msg=f"{model} head {h}")


@pytest.mark.parametrize("solver", ["embedding", "headspace"])
def test_a_group_of_one_head_is_that_head(head, frames, solver):
    group = jax.tree.map(lambda a: a[None], head)  # a group of one
    one = solve(head, frames, steps=SHORT, solver=solver)
    program = plan(group, 16, len(frames), Settings(steps=SHORT, seeds=2, solver=solver), chunk_size=4)
    grouped = [r for _, r in optimize_frames(program, frames[:, None])][0]
    assert grouped.attention.shape == (4, 1, 17, 17) and grouped.head_loss.shape == (4, 1)
    np.testing.assert_allclose(grouped.loss, one.loss, rtol=1e-4)
    np.testing.assert_allclose(grouped.attention[:, 0], one.attention, atol=1e-5)


def test_three_heads_share_one_embedding(rng):
    from conftest import save_tiny_gpt2
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # n_embd 128 > 3 heads x 2 x 16 columns: head space applies
        layer, _ = load_layer(str(save_tiny_gpt2(tmp, seed=2, n_embd=128, n_head=8)), 0)
    group = pick_heads(layer, (0, 3, 5))
    space = head_space(group)
    assert space.heads == 3 and space.U.shape == (128, 96)
    p = rng.normal(0.0, 1.0, (1, 16, 96)).astype(np.float32) * 2
    x = jax.vmap(lift, in_axes=(0, None))(p, space)
    A = jax.vmap(lambda x: jax.vmap(head_logits, in_axes=(None, 0))(x, group))(x)  # each head, the same X
    np.testing.assert_allclose(A, hs_logits(p, space), rtol=1e-4, atol=1e-4 * float(np.abs(A).max()))
    T = 16
    rgb = np.stack([(np.add.outer(np.arange(T), k * np.arange(T)) % 7 < 3) * 0.9 + 0.05 for k in (1, 2, 3)])
    settings = Settings(steps=40, seeds=1, solver="headspace")
    r = [r for _, r in optimize_frames(plan(group, T, 1, settings), rgb[None].astype(np.float32))][0]
    assert r.head_loss.shape == (1, 3) and np.all(np.isfinite(r.head_loss))
    np.testing.assert_allclose(r.loss, r.head_loss.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(r.loss, r.space_loss, rtol=1e-4, atol=1e-6)
    assert r.loss[0] < 0.5 * r.explore_trace[0, 0, 0]
