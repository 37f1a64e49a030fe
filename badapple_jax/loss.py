"""The per-frame loss on pre-softmax logits (SPEC section 5).

    c    = A - mean_{j<=i} A[i, j]                  # softmax ignores a per-row shift: remove it
    loss = sum_{j<=i} (c - d)^2 / (T (T + 1) / 2)

`d` are the desired logits of `targets.desired_logits` (row-centred, zero above the diagonal).
The loss is taken before the softmax because gradients through it are ~250x fainter (seed write-up).
"""
import jax.numpy as jnp

from badapple_jax.kernel import causal_mask


def row_centred(A):  # [..., T, T] -> [..., T, T]: minus each row's mean over j <= i, zero above
    T = A.shape[-1]
    mask = causal_mask(T)
    mean = jnp.sum(jnp.where(mask, A, 0.0), axis=-1, keepdims=True) / jnp.arange(1, T + 1)[:, None]
    return jnp.where(mask, A - mean, 0.0)


def frame_loss(A, d):  # logits [..., T, T], desired [..., T, T] -> [...]
    """Mean squared error of the row-centred logits against `d` over the causal triangle."""
    T = A.shape[-1]
    err = jnp.where(causal_mask(T), row_centred(A) - d, 0.0)
    return jnp.sum(jnp.square(err), axis=(-2, -1)) / (T * (T + 1) / 2)
