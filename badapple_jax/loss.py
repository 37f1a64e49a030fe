"""The per-frame loss on pre-softmax logits (SPEC section 5), over the entries a mask counts.

    c    = logits - mean_{j in mask[i]} logits[i, j]   # softmax ignores a per-row shift: remove it
    loss = sum_{mask} (c - d)^2 / |mask|            # |mask| = T (T + 1) / 2 for the reference

`d` are the desired logits of an encoding (row-centred, zero outside the mask); `mask` [L, L] bool is
the encoding's: the causal triangle for the reference, its display rows for the attention sink.
The loss is taken before the softmax because gradients through it are ~250x fainter (seed write-up).
"""
import jax.numpy as jnp
import numpy as np

from badapple_jax.errors import BadInputError
from badapple_jax.targets import check_on_mask


def row_centred(logits, mask):  # [..., L, L], mask [L, L] -> minus each row's mean over the mask, zero outside
    check_on_mask(mask, logits=logits)
    counts = jnp.maximum(mask.sum(axis=-1, keepdims=True), 1)  # [L, 1]; a row with no entry stays 0
    mean = jnp.sum(jnp.where(mask, logits, 0.0), axis=-1, keepdims=True) / counts
    return jnp.where(mask, logits - mean, 0.0)


def frame_loss(logits, d, mask):  # [..., L, L] pre-softmax logits, desired [..., L, L], mask [L, L] -> [...]
    """Mean squared error of the row-centred LOGITS (`head_logits`, not the attention map) against `d` over the
    mask's entries."""
    check_on_mask(mask, logits=logits, d=d)
    try:
        np.broadcast_shapes(np.shape(logits), np.shape(d))
    except ValueError:
        raise BadInputError(f"logits {np.shape(logits)} and d {np.shape(d)} must agree on their leading axes "
                            "(equal, or 1 in either).") from None
    err = jnp.where(mask, row_centred(logits, mask) - d, 0.0)
    return jnp.sum(jnp.square(err), axis=(-2, -1)) / mask.sum()
