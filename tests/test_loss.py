"""The loss of SPEC section 5 against a plain NumPy float64 loop."""
import numpy as np

from badapple_jax.loss import frame_loss, row_centred
from badapple_jax.targets import desired_logits


def numpy_loss(A, d):  # [T, T] float64 reference, row by row
    T = A.shape[0]
    total = 0.0
    for i in range(T):
        c = A[i, : i + 1] - A[i, : i + 1].mean()
        total += np.sum((c - d[i, : i + 1]) ** 2)
    return total / (T * (T + 1) / 2)


def test_loss_matches_numpy_float64(rng):
    T = 24
    A = rng.normal(0.0, 3.0, (4, T, T))
    d = np.asarray(desired_logits(rng.random((4, T, T))), np.float64)
    got = np.asarray(frame_loss(A.astype(np.float32), d.astype(np.float32)))
    expected = [numpy_loss(a, b) for a, b in zip(A, d)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_loss_ignores_a_per_row_shift_and_the_upper_triangle(rng):
    T = 16
    A = rng.normal(0.0, 1.0, (T, T)).astype(np.float32)
    d = desired_logits(rng.random((T, T)))
    shifted = A + rng.normal(0.0, 10.0, (T, 1)).astype(np.float32) + np.triu(rng.normal(0, 5, (T, T)), 1).astype(np.float32)
    np.testing.assert_allclose(frame_loss(shifted, d), frame_loss(A, d), rtol=1e-4)


def test_row_centred_rows_have_zero_mean(rng):
    T = 12
    c = np.asarray(row_centred(rng.normal(0.0, 1.0, (T, T)).astype(np.float32)))
    means = [c[i, : i + 1].mean() for i in range(T)]
    np.testing.assert_allclose(means, 0.0, atol=1e-6)
    assert np.all(np.triu(c, 1) == 0)
