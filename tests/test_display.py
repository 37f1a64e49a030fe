"""display.py against a NumPy loop of SPEC section 7, steps 1-4; the encodings' pictures (SPEC 11, 14); RGB and back."""
import matplotlib
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from badapple_jax.display import colourise, gray_of, normalise_display, stitch_full, to_rgb
from badapple_jax.encoding import Full, Quarter, Sink, ZScore


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
    import jax

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
