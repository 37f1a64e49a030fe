"""encoding.py: each encoding's picture of its own target is the frame (SPEC 11, 14), full mode's two views, and
`jax.jit` and `jax.grad` through every encoding's `picture` (a pixel-space loss needs nothing rewritten)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from badapple_jax.encoding import Full, Quarter, Sink, ZScore
from badapple_jax.layers import visible


def causal_maps(rng, n, T):  # random causal attention maps [n, T, T]
    a = rng.random((n, T, T)) * np.tri(T)
    return a / a.sum(-1, keepdims=True)


@pytest.mark.parametrize("black", [0.0, 0.05])
def test_sink_picture_of_the_target_is_the_frame(rng, black):
    """An attention map equal to the sink target shows the frame itself: no normalisation, true brightness."""
    T = 16
    f = rng.random((3, T, T)).astype(np.float32)
    f[0, 5] = 1.0  # a white row and a black one keep their brightness
    f[0, 9] = 0.0
    enc = Sink(black=black)
    v = enc.picture(np.asarray(enc.target(f)))
    np.testing.assert_allclose(v, f * np.tri(T), atol=1e-5)
    full = Full(enc)
    both = np.stack([enc.target(f), enc.target(np.swapaxes(f, 1, 2))], axis=1)  # [3, 2, T+1, T+1]
    np.testing.assert_allclose(full.picture(np.asarray(both)), f, atol=1e-5)  # whole frame, no seam


@pytest.mark.parametrize("z, black", [(2.0, 0.3), (1.7, 0.0)])
def test_quarter_picture_of_the_target_is_the_whole_frame(rng, z, black):
    """One map equal to the quarter's target shows the whole frame, every pixel, from its bottom-left quarter."""
    T = 16
    f = rng.random((3, T, T)).astype(np.float32)
    f[0, 5], f[0, 9] = 1.0, 0.0
    enc = Quarter(z=z, black=black)
    p = np.asarray(enc.target(f))  # [3, 2T + 1, 2T + 1]
    v = enc.picture(p)
    assert v.shape == (3, T, T) and v.dtype == np.float32
    np.testing.assert_allclose(v, f, atol=1e-5)

    def picture(a, z):  # Z traced under jit: one program for every z
        return Quarter(z=z, black=black).picture(a)

    np.testing.assert_allclose(jax.jit(picture)(p, z), v, atol=1e-6)
    assert np.isfinite(jax.grad(lambda a: picture(a, z).sum())(p)).all()
    with pytest.raises(ValueError, match=r"quarter maps must be \[..., 2T \+ 1, 2T \+ 1\], got shape \(3, 32, 32\)"):
        enc.picture(p[:, 1:, 1:])  # a sink map's shape is no quarter's


def test_a_frame_equal_to_its_transpose_gives_two_equal_halves(rng):
    a = causal_maps(rng, 2, 16)
    both = np.stack([a, a], axis=1)  # a symmetric target's transposed problem is the same problem
    v = Full(ZScore()).picture(both)
    np.testing.assert_array_equal(v, np.swapaxes(v, -1, -2))
    assert v.shape == (2, 16, 16)


def maps(rng, n, L, causal):  # [n, L, L] random attention (softmax of random scores over the visible entries)
    scores = jnp.where(visible(L, causal), rng.normal(size=(n, L, L)).astype(np.float32) * 2, -jnp.inf)
    return jax.nn.softmax(scores, axis=-1)


ENCODINGS = [ZScore(), ZScore(causal=False), Sink(), Sink(causal=False, z=3.0, black=0.1), Full(ZScore()), Full(Sink())]


@pytest.mark.parametrize("enc", ENCODINGS, ids=repr)
def test_jit_and_grad_go_through_every_picture(rng, enc):
    T, n = 12, 2
    L = enc.tokens(T)
    scores = rng.normal(size=(n, enc.views, L, L) if enc.views == 2 else (n, L, L)).astype(np.float32)
    target = jnp.asarray(rng.random((n, T, T)), jnp.float32)
    causal = getattr(enc, "inner", enc).causal

    def pixel_loss(s):  # a pixel-space loss: attention from scores, pictured, against a target
        a = jax.nn.softmax(jnp.where(visible(L, causal), s, -jnp.inf), axis=-1)
        return jnp.mean((enc.picture(a) - target) ** 2)

    a = jax.nn.softmax(jnp.where(visible(L, causal), scores, -jnp.inf), axis=-1)
    np.testing.assert_allclose(jax.jit(enc.picture)(a), enc.picture(a), rtol=0, atol=1e-6)
    loss, grad = jax.jit(jax.value_and_grad(pixel_loss))(scores)
    assert np.isfinite(loss) and grad.shape == scores.shape
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_the_sinks_constants_may_be_traced(rng):
    a = maps(rng, 2, 9, True)
    picture = jax.jit(lambda z, b: Sink(z=z, black=b).picture(a))
    np.testing.assert_allclose(picture(np.float32(3.0), np.float32(0.1)), Sink(z=3.0, black=0.1).picture(a),
                               rtol=0, atol=1e-6)
    dz = jax.grad(lambda z: Sink(z=z).picture(a).sum())(np.float32(2.0))
    assert np.isfinite(dz) and dz > 0
