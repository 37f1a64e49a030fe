"""targets.py against a plain float64 loop over rows (SPEC section 4)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from badapple_jax.targets import causal_mask, desired_logits, row_normalise


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


@pytest.mark.parametrize("T", [16, 23, 32])
def test_matches_loop_reference(rng, T):
    f = rng.random((3, T, T))
    f[0] = (f[0] > 0.5).astype(float)  # a binary frame: exact zeros exercise the 1e-8 floors
    p, d = np.asarray(row_normalise(f)), np.asarray(desired_logits(f))
    for k in range(len(f)):
        p_ref, d_ref = reference(f[k])
        np.testing.assert_allclose(p[k], p_ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(d[k], d_ref, rtol=1e-5, atol=2e-5)


def test_rows_sum_to_one_and_are_centred(rng):
    f = rng.random((2, 20, 20))
    mask = np.asarray(causal_mask(20))
    np.testing.assert_allclose(np.asarray(row_normalise(f)).sum(-1), 1.0, rtol=1e-6)
    d = np.asarray(desired_logits(f))
    np.testing.assert_allclose(d.sum(-1), 0.0, atol=1e-4)
    assert np.all(d[:, ~mask] == 0)


def test_causal_mask():
    m = np.asarray(causal_mask(5))
    assert m.dtype == bool and m.shape == (5, 5)
    assert np.array_equal(m, np.tril(np.ones((5, 5), bool)))


def test_jittable_float32(rng):
    import jax

    f = rng.random((16, 16))
    d = jax.jit(desired_logits)(f)
    assert d.dtype == np.float32
    np.testing.assert_allclose(np.asarray(d), np.asarray(desired_logits(f)), atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (12, 12), elements=st.floats(0.0, 1.0)))
def test_desired_logits_centred_and_causal(f):
    d = np.asarray(desired_logits(f))
    assert np.all(np.isfinite(d))
    assert np.all(d[~np.tri(12, dtype=bool)] == 0)
    np.testing.assert_allclose(d.sum(-1) / np.arange(1, 13), 0.0, atol=1e-5)
