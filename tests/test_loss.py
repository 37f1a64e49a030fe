"""The loss of SPEC section 5 against a plain NumPy float64 loop, over the reference's and the sink's masks; the loss
over causal strips against the loss of every logit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from badapple_jax.encoding import Quarter, Sink, ZScore
from badapple_jax.loss import frame_loss, qk_loss, row_centred


def numpy_loss(A, d, mask):  # [L, L] float64 reference, row by row over the mask's entries
    total = 0.0
    for i in range(len(A)):
        seen = mask[i]
        if seen.any():
            c = A[i, seen] - A[i, seen].mean()
            total += np.sum((c - d[i, seen]) ** 2)
    return total / mask.sum()


@pytest.mark.parametrize("encoding", [ZScore(), Sink(), Sink(causal=False)], ids=["zscore", "sink", "sink-encoder"])
def test_loss_matches_numpy_float64(rng, encoding):
    T = 24
    L = encoding.tokens(T)
    A = rng.normal(0.0, 3.0, (4, L, L))
    d = np.asarray(encoding.desired(rng.random((4, T, T))), np.float64)
    mask = encoding.mask(T)
    got = np.asarray(frame_loss(A.astype(np.float32), d.astype(np.float32), mask))
    expected = [numpy_loss(a, b, mask) for a, b in zip(A, d)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_reference_normaliser_is_the_causal_triangle():
    assert ZScore().mask(16).sum() == 16 * 17 / 2


def test_loss_ignores_a_per_row_shift_and_what_the_mask_leaves_out(rng):
    T = 16
    for encoding in (ZScore(), Sink()):
        L, mask = encoding.tokens(T), encoding.mask(T)
        A = rng.normal(0.0, 1.0, (L, L)).astype(np.float32)
        d = encoding.desired(rng.random((T, T)))
        outside = np.where(mask, 0, rng.normal(0, 5, (L, L))).astype(np.float32)
        shifted = A + rng.normal(0.0, 10.0, (L, 1)).astype(np.float32) + outside
        np.testing.assert_allclose(frame_loss(shifted, d, mask), frame_loss(A, d, mask), rtol=1e-4)


def test_row_centred_rows_have_zero_mean(rng):
    T = 12
    mask = np.tri(T, dtype=bool)
    c = np.asarray(row_centred(rng.normal(0.0, 1.0, (T, T)).astype(np.float32), mask))
    means = [c[i, : i + 1].mean() for i in range(T)]
    np.testing.assert_allclose(means, 0.0, atol=1e-6)
    assert np.all(np.triu(c, 1) == 0)


@pytest.mark.parametrize("encoding", [ZScore(), Sink(), Sink(causal=False), Quarter()],
                         ids=["zscore", "sink", "sink-encoder", "quarter"])
@pytest.mark.parametrize("n", [1, 4])
def test_the_strips_give_the_loss_and_gradient_of_every_logit(rng, encoding, n):
    """qk_loss computes only the strips of rows the mask reaches: the loss of q k^T / sqrt(D), and its gradient."""
    T, D = 13, 8
    L, mask = encoding.tokens(T), encoding.mask(T)
    q, k = (rng.normal(0.0, 2.0, (2, L, D)).astype(np.float32) for _ in range(2))  # two heads
    d = np.stack([encoding.desired(rng.random((T, T)))] * 2)
    every = lambda q, k: frame_loss(q @ jnp.swapaxes(k, -1, -2) / np.sqrt(D), d, mask).sum()  # noqa: E731
    strips = lambda q, k: qk_loss(q, k, d, mask, n).sum()  # noqa: E731
    want, got = (jax.jit(jax.value_and_grad(f, (0, 1)))(q, k) for f in (every, strips))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for a, b in zip(got[1], want[1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())
