"""Target frames -> desired attention logits (SPEC section 4).

A frame is read as an attention pattern: row i is a distribution over the causal columns j <= i.
Softmax ignores a per-row shift, so the desired logits are log-probabilities centred per row,
which is what the loss of section 5 compares the centred raw scores with.
"""
import jax.numpy as jnp

from badapple_jax.kernel import causal_mask

EPS = 1e-8  # keeps black pixels (zero attention) at a finite log


def row_normalise(f):
    """[..., T, T] frames in [0, 1] -> p: each causal row sums to 1, zero above the diagonal."""
    f = jnp.asarray(f, jnp.float32)
    p = jnp.where(causal_mask(f.shape[-1]), f + EPS, 0.0)
    return p / p.sum(axis=-1, keepdims=True)


def desired_logits(f):
    """[..., T, T] frames in [0, 1] -> d = log(p + eps) centred over j <= i, zero above the diagonal."""
    T = jnp.shape(f)[-1]
    mask = causal_mask(T)
    d = jnp.where(mask, jnp.log(row_normalise(f) + EPS), 0.0)
    counts = jnp.arange(1, T + 1, dtype=jnp.float32)[:, None]  # [T, 1] causal entries per row
    return jnp.where(mask, d - d.sum(axis=-1, keepdims=True) / counts, 0.0)
