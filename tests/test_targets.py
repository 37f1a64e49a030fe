"""targets.py against plain float64 loops over rows (SPEC sections 4, 11 and 14)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from badapple_jax.encoding import Quarter, Sink, ZScore
from badapple_jax.targets import centred_log, quarter_target, row_normalise, sink_target


def reference(f):
    """[T, T] -> (p, d) exactly as SPEC section 4 words it, row by row in float64."""
    T = f.shape[0]
    p_out, d_out = np.zeros((T, T)), np.zeros((T, T))
    for i in range(T):
        p = f[i, : i + 1].astype(np.float64) + 1e-8
        p /= p.sum()
        d = np.log(p + 1e-8)
        p_out[i, : i + 1], d_out[i, : i + 1] = p, d - d.mean()
    return p_out, d_out


def sink_reference(f, Z, black, causal=True):
    """[T, T] -> (p, d) [T+1, T+1] as SPEC section 11 words it, row by row in float64."""
    T = f.shape[0]
    p_out, d_out = np.zeros((T + 1, T + 1)), np.zeros((T + 1, T + 1))
    for i in range(T):
        seen = i + 1 if causal else T
        p = np.concatenate([[0.0], (f[i, :seen].astype(np.float64) + black) / Z])
        p[0] = 1 - p[1:].sum()
        d = np.log(p + 1e-8)
        p_out[i + 1, : seen + 1], d_out[i + 1, : seen + 1] = p, d - d.mean()
    return p_out, d_out


def quarter_reference(f, Z, black):
    """[T, T] -> (p, d) [2T+1, 2T+1] as SPEC section 14 words it, row by row in float64."""
    T = f.shape[0]
    p_out, d_out = np.zeros((2 * T + 1, 2 * T + 1)), np.zeros((2 * T + 1, 2 * T + 1))
    for i in range(T):
        r = T + 1 + i  # display row i's token; it sees tokens 0..r
        p = np.zeros(r + 1)
        p[1:T + 1] = (f[i].astype(np.float64) + black) / Z  # the column tokens: the pixels
        p[T + 1:] = black / Z  # the row tokens up to its own
        p[0] = 1 - (f[i].astype(np.float64) + black).sum() / Z - (i + 1) * black / Z
        d = np.log(p + 1e-8)
        p_out[r, :r + 1], d_out[r, :r + 1] = p, d - d.mean()
    return p_out, d_out


@pytest.mark.parametrize("T", [16, 23, 32])
def test_zscore_matches_loop_reference(rng, T):
    f = rng.random((3, T, T))
    f[0] = (f[0] > 0.5).astype(float)  # a binary frame: exact zeros exercise the 1e-8 floors
    p, d = np.asarray(ZScore().target(f)), np.asarray(ZScore().desired(f))
    for k in range(len(f)):
        p_ref, d_ref = reference(f[k])
        np.testing.assert_allclose(p[k], p_ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(d[k], d_ref, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("T, z, black, causal", [(16, 2.0, 0.0, True), (23, 1.5, 0.02, True), (16, 3.0, 0.0, False)])
def test_sink_matches_loop_reference(rng, T, z, black, causal):
    f = rng.random((3, T, T))
    f[0] = (f[0] > 0.5).astype(float)
    enc = Sink(causal=causal, z=z, black=black)
    p, d = np.asarray(enc.target(f)), np.asarray(enc.desired(f))
    assert p.shape == d.shape == (3, T + 1, T + 1)
    for k in range(len(f)):
        p_ref, d_ref = sink_reference(f[k], z * T, black, causal)
        np.testing.assert_allclose(p[k], p_ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(d[k], d_ref, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("T, z, black", [(16, 2.0, 0.3), (23, 1.7, 0.3), (16, 3.0, 0.0)])
def test_quarter_matches_loop_reference(rng, T, z, black):
    f = rng.random((3, T, T))
    f[0] = (f[0] > 0.5).astype(float)
    enc = Quarter(z=z, black=black)
    p, d = np.asarray(enc.target(f)), np.asarray(enc.desired(f))
    assert p.shape == d.shape == (3, 2 * T + 1, 2 * T + 1)
    for k in range(len(f)):
        p_ref, d_ref = quarter_reference(f[k], z * T, black)
        np.testing.assert_allclose(p[k], p_ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(d[k], d_ref, rtol=1e-5, atol=2e-5)


def test_quarter_rows_are_distributions_over_its_mask_and_the_sink_keeps_a_share(rng):
    T = 16
    enc = Quarter(z=1.61, black=0.3)  # just above 1 + 2 b: a white frame leaves the sink the least
    f = np.stack([np.ones((T, T)), rng.random((T, T)), np.zeros((T, T))])
    mask, p = enc.mask(T), np.asarray(enc.target(f), np.float64)
    assert mask.shape == (2 * T + 1, 2 * T + 1) and enc.region(T).shape == (T, T) and enc.region(T).all()
    assert not mask[:T + 1].any()  # the sink's and the column tokens' rows are no target
    np.testing.assert_array_equal(mask[T + 1:], np.tri(2 * T + 1, dtype=bool)[T + 1:])  # all they see, causally
    np.testing.assert_allclose(np.where(mask, p, 0).sum(-1)[:, T + 1:], 1.0, rtol=1e-6)
    assert np.all(p[~np.broadcast_to(mask, p.shape)] == 0)
    assert 0 < p[0, 2 * T, 0] < 0.01 and np.all(p[:, T + 1:, 0] >= p[0, 2 * T, 0] - 1e-7)
    np.testing.assert_allclose(p[2, T + 1:, 1:T + 1], 0.3 / enc.Z(T), rtol=1e-6)  # black pixels: the black level
    np.testing.assert_allclose(np.asarray(quarter_target(f, enc.Z(T), 0.3)), p, atol=1e-7)


def test_sink_rows_are_distributions_and_keep_brightness(rng):
    T = 20
    f = rng.random((2, T, T))
    f[1, 7] = 1.0  # an all-white row ...
    f[1, 9] = 0.0  # ... and an all-black one
    enc = Sink(black=0.0)  # SPEC 11 as written; the black level's version is tested against the loop above
    Z, mask = enc.Z(T), enc.mask(T)
    p = np.asarray(enc.target(f), np.float64)
    np.testing.assert_allclose(np.where(mask, p, 0).sum(-1)[:, 1:], 1.0, rtol=1e-6)  # every display row
    S = (f * np.tri(T)).sum(-1)  # [2, T] the visible row sums
    np.testing.assert_allclose(p[:, 1:, 0], 1 - S / Z, rtol=1e-5)  # the sink's mass
    assert np.all(p[:, 1:, 0] > 0) and np.all(p[:, 0] == 0)  # the sink's own row is no target
    assert np.all(p[~np.broadcast_to(mask, p.shape)] == 0)
    white, black = p[1, 8, : 8 + 1], p[1, 10, : 10 + 1]  # token rows of display rows 7 and 9
    assert white[0] < 0.9 < black[0] and np.all(white[1:] > 100 * black[1:].max())
    # the reference's row normalisation cannot tell the two apart
    q = np.asarray(ZScore().target(f))
    np.testing.assert_allclose(q[1, 7, :8], q[1, 7, 0]), np.testing.assert_allclose(q[1, 9, :10], q[1, 9, 0])


def test_helpers_take_masks_as_data(rng):
    f = rng.random((5, 5))
    mask = np.ones((5, 5), bool)
    np.testing.assert_allclose(np.asarray(row_normalise(f, mask)).sum(-1), 1.0, rtol=1e-6)
    p = np.asarray(sink_target(f, mask, z=10.0))
    np.testing.assert_allclose(p[1:, 1:], f / 10, rtol=1e-6)
    d = np.asarray(centred_log(row_normalise(f, mask), mask))
    np.testing.assert_allclose(d.sum(-1), 0.0, atol=1e-5)


def test_jittable_float32(rng):
    import jax

    f = rng.random((16, 16))
    for enc in (ZScore(), Sink(), Quarter()):
        d = jax.jit(enc.desired)(f)
        assert d.dtype == np.float32
        np.testing.assert_allclose(np.asarray(d), np.asarray(enc.desired(f)), atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (12, 12), elements=st.floats(0.0, 1.0)))
def test_desired_logits_centred_and_masked(f):
    for enc in (ZScore(), Sink(), Quarter()):
        d = np.asarray(enc.desired(f))
        mask = enc.mask(12)
        assert np.all(np.isfinite(d))
        assert np.all(d[~mask] == 0)
        np.testing.assert_allclose(d.sum(-1) / np.maximum(mask.sum(-1), 1), 0.0, atol=1e-5)
