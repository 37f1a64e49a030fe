"""display.py against a NumPy loop of SPEC section 7, steps 1-4, each step in jax.numpy against its NumPy/SciPy
reference on fresh random inputs; RGB and back."""
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from badapple_jax.display import (PERCENTILES, SIGMA, blur, clip_percentiles, colourise, gaussian_kernel, gray_of,
                                  normalise_display, stitch_full, to_rgb, zscore_rows)
from badapple_jax.encoding import Full, ZScore
from badapple_jax.layers import visible


def reference(a):
    """[T, T] attention map -> [T, T] display values, row by row."""
    T = a.shape[0]
    z = np.zeros((T, T))
    for i in range(1, T):
        row = a[i, : i + 1]
        if row.std() >= 1e-10:
            z[i, : i + 1] = (row - row.mean()) / row.std()
    lo, hi = np.percentile(z[np.tril_indices(T)], [1, 99])
    v = (np.clip(z, lo, hi) - lo) / (hi - lo) if hi > lo else np.zeros_like(z)
    return np.tril(gaussian_filter(v, 1.5))


def attention(rng, n, T):
    """[n, T, T] causal softmax of random scores."""
    scores = np.where(np.tri(T, dtype=bool), rng.normal(size=(n, T, T)) * 2, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("T", [16, 25, 32])
def test_matches_loop_reference(rng, T):
    a = attention(rng, 3, T)
    v = normalise_display(a)
    assert v.shape == a.shape and v.dtype == np.float32
    for k in range(3):
        np.testing.assert_allclose(v[k], reference(a[k]), atol=1e-6)
    assert v.min() >= 0 and v.max() <= 1
    assert np.all(v[:, ~np.tri(T, dtype=bool)] == 0)


def test_many_frames_cross_blocks(rng):
    a = attention(rng, 70, 16)  # more than one block of 64
    v = normalise_display(a)
    np.testing.assert_allclose(v[66], reference(a[66]), atol=1e-6)
    np.testing.assert_array_equal(normalise_display(a[None])[0], v)


def test_constant_and_flat_input_give_zeros_not_nan():
    T = 16
    uniform = np.tri(T) / np.arange(1, T + 1)[:, None]  # every row flat: std 0
    for a in (np.full((2, T, T), 0.3), uniform[None]):
        v = normalise_display(a)
        assert np.all(np.isfinite(v)) and np.all(v == 0)


def test_colourise_endpoints_shape_dtype(rng):
    magma = matplotlib.colormaps["magma"]
    v = rng.random((2, 8, 8)).astype(np.float32)
    v[0, 0, 0], v[0, 0, 1] = 0.0, 1.0
    rgb = colourise(v)
    assert rgb.shape == (2, 8, 8, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0, 0], magma(0.0, bytes=True)[:3])
    np.testing.assert_array_equal(rgb[0, 0, 1], magma(1.0, bytes=True)[:3])
    np.testing.assert_array_equal(rgb, magma(v, bytes=True)[..., :3])  # matplotlib's own mapping


def test_zscore_picture_in_magma(rng):
    a = attention(rng, 2, 16)
    rgb = to_rgb(ZScore().picture(a))
    assert rgb.shape == (2, 16, 16, 3) and rgb.dtype == np.uint8
    black = matplotlib.colormaps["magma"](0.0, bytes=True)[:3]
    assert np.all(rgb[:, 0, 1:] == black)  # above the diagonal: the colour of 0


def causal_maps(rng, n, T):  # random causal attention maps [n, T, T]
    a = rng.random((n, T, T)) * np.tri(T)
    return a / a.sum(-1, keepdims=True)


def test_stitching_takes_the_diagonal_from_the_lower_half_and_transposes_the_upper(rng):
    v = rng.random((2, 12, 12)).astype(np.float32)  # pictures are float32
    full = stitch_full(v)
    i, j = np.tril_indices(12)
    np.testing.assert_array_equal(full[i, j], v[0][i, j])  # lower triangle and diagonal: the frame's own map
    i, j = np.triu_indices(12, 1)
    np.testing.assert_array_equal(full[i, j], v[1][j, i])  # upper: the transposed problem's lower triangle


def test_colour_puts_head_c_in_channel_c(rng):
    a = np.stack([causal_maps(rng, 2, 16) for _ in range(3)], axis=1)  # [2, 3 heads, 16, 16]
    rgb = to_rgb(ZScore().picture(a), colour=True)
    assert rgb.shape == (2, 16, 16, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], (normalise_display(a[:, c]) * 255).round().astype(np.uint8))
    full = to_rgb(Full(ZScore()).picture(np.stack([a, a], axis=1)), colour=True)  # [2, views, 3, T, T]
    assert full.shape == (2, 16, 16, 3) and np.all(full == np.swapaxes(full, 1, 2))


@pytest.mark.parametrize("colour", [False, True])
def test_gray_of_inverts_to_rgb_within_a_bin(rng, colour):
    v = rng.random((2, 3, 8, 8) if colour else (2, 8, 8)).astype(np.float32)
    v[0, ..., 0, :2] = [0.0, 1.0]
    back = gray_of(to_rgb(v, colour), colour)
    assert back.shape == v.shape
    np.testing.assert_allclose(back, v, atol=0.5 / 255 + 1e-6 if colour else 1 / 256)
    with pytest.raises(ValueError):
        gray_of(np.full((1, 2, 2, 3), [0, 255, 0], np.uint8))  # green is no magma colour


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


def test_flat_maps_have_finite_gradients():
    T = 8
    uniform = jnp.asarray(np.tri(T) / np.arange(1, T + 1)[:, None], jnp.float32)[None]  # every row flat
    grad = jax.grad(lambda a: normalise_display(a).sum())(uniform)
    assert np.all(np.isfinite(grad))
