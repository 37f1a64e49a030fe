"""The pictures in jax.numpy: each step against its NumPy/SciPy reference on fresh random inputs, and `jax.jit`
and `jax.grad` through every encoding's `picture` (a pixel-space loss needs nothing rewritten)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from badapple_jax.display import (PERCENTILES, SIGMA, blur, clip_percentiles, gaussian_kernel, normalise_display,
                                  zscore_rows)
from badapple_jax.encoding import Full, Sink, ZScore
from badapple_jax.layers import visible


@pytest.mark.parametrize("T", [2, 5, 13, 32])  # below, at and above the kernel's width (13): repeated mirrors
def test_blur_is_scipys_reflect_gaussian(rng, T):
    v = rng.random((3, T, T))
    np.testing.assert_allclose(blur(jnp.asarray(v, jnp.float32)), gaussian_filter(v, (0, SIGMA, SIGMA)),
                               rtol=0, atol=1e-6)
    assert len(gaussian_kernel()) == 13  # scipy: radius int(4.0 * 1.5 + 0.5) = 6


@pytest.mark.parametrize("causal", [True, False])
def test_percentile_clip_is_numpys(rng, causal):
    T = 20
    mask = visible(T, causal)
    z = rng.normal(size=(T, T)).astype(np.float32)
    lo, hi = np.percentile(z[mask].astype(np.float64), PERCENTILES)
    want = (np.clip(z, lo, hi) - lo) / (hi - lo)  # every entry rescaled, as the blur reads them all
    np.testing.assert_allclose(clip_percentiles(z, jnp.asarray(mask)), want, rtol=0, atol=1e-6)
    assert np.all(np.asarray(clip_percentiles(np.full((T, T), 0.5, np.float32), jnp.asarray(mask))) == 0)


def test_zscore_rows_is_numpys_and_flat_rows_stay_zero(rng):
    T = 16
    mask = np.tri(T, dtype=bool)
    a = rng.random((T, T))
    a[7, :8] = 1 / 8  # flat in float32 too: its mean must not round into noise
    want = np.zeros((T, T))
    for i in range(T):
        row = a[i, :i + 1]
        if row.std() >= 1e-10:
            want[i, :i + 1] = (row - row.mean()) / row.std()
    got = zscore_rows(jnp.asarray(a, jnp.float32), jnp.asarray(mask))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    assert np.all(np.asarray(got)[[0, 7]] == 0)


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


def test_flat_maps_have_finite_gradients():
    T = 8
    uniform = jnp.asarray(np.tri(T) / np.arange(1, T + 1)[:, None], jnp.float32)[None]  # every row flat
    grad = jax.grad(lambda a: normalise_display(a).sum())(uniform)
    assert np.all(np.isfinite(grad))
