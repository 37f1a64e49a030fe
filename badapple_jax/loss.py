"""The per-frame loss on pre-softmax logits (SPEC section 5), over the entries a mask counts.

    c    = logits - mean_{j in mask[i]} logits[i, j]   # softmax ignores a per-row shift: remove it
    loss = sum_{mask} (c - d)^2 / |mask|            # |mask| = T (T + 1) / 2 for the reference

`d` are the desired logits of an encoding (row-centred, zero outside the mask); `mask` [L, L] bool is
the encoding's: the causal triangle for the reference, its display rows for the attention sink.
The loss is taken before the softmax because gradients through it are ~250x fainter (seed write-up).

`qk_loss` is the same loss from the two sides of the logits, logits = q k^T / sqrt(D), computing only the
row strips the mask reaches: strip r holds whole rows (every column of a row the mask counts), so its rows
are centred and compared on their own; for a causal triangle, STRIPS strips compute (STRIPS + 1) / (2 STRIPS)
of the L^2 logits, forward and backward, instead of all of them and discarding half.
"""
import jax.numpy as jnp
import numpy as np

from badapple_jax.errors import BadInputError
from badapple_jax.targets import check_on_mask, traced


def row_centred(logits, mask):  # [..., L, L], mask [L, L] -> minus each row's mean over the mask, zero outside
    check_on_mask(mask, logits=logits)
    return _row_centred(logits, mask)


def _row_centred(logits, mask):  # [..., R, C], mask [R, C] (not checked: a strip of the mask's rows need not be square)
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
    return error_sum(logits, d, mask) / mask.sum()


def error_sum(logits, d, mask):  # [..., R, C] over mask [R, C] of whole rows -> [...]: sum (c - d)^2 over it
    err = jnp.where(mask, _row_centred(logits, mask) - d, 0.0)
    return jnp.sum(jnp.square(err), axis=(-2, -1))


def strips(mask, n: int) -> list:  # [L, L] bool -> [(r0, r1, c0, c1)]: rows r0:r1 see columns c0:c1 only
    """The mask's rows (those it counts at all) cut into at most `n` strips of near-equal height, each with the
    columns its rows count (static: the mask is a NumPy array). One strip where more would compute as many logits
    (a mask of whole rows, an encoder's)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return []
    bounds = np.linspace(rows[0], rows[-1] + 1, min(n, rows.size) + 1).round().astype(int)
    out = []
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        cols = np.flatnonzero(mask[r0:r1].any(axis=0))
        out.append((int(r0), int(r1), int(cols[0]), int(cols[-1]) + 1))
    area = lambda plan: sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in plan)  # noqa: E731
    return out if len(out) == 1 or area(out) < area(one := strips(mask, 1)) else one


STRIPS = 3  # strips of a causal triangle: 2/3 of its logits; 3 and 4 measured best (benchmarks/RESULTS.md)
STRIPS_FROM = 160  # tokens: below, the strips' extra slices cost more than the logits they skip (step x1.27 at 33
# tokens, x1.10 at 129, x0.97 at 161, x0.67 at 257; benchmarks/RESULTS.md)


def strip_count(L: int) -> int:
    """How many strips `qk_loss` cuts a mask of L tokens into: STRIPS from STRIPS_FROM tokens, else one."""
    return STRIPS if L >= STRIPS_FROM else 1


def qk_loss(q, k, d, mask, n: int | None = None):  # [..., L, D] x2, [..., L, L], [L, L] -> [...]
    """`frame_loss` of the logits q k^T / sqrt(D) (`kernel.head_logits`), computing only the `n` (default
    `strip_count(L)`) row strips the mask reaches (a mask of full rows, an encoder's, is one strip: every logit). A mask known only when
    the program runs (the API's `multi_start` jitted with it as an argument) has no strips: every logit, masked."""
    check_on_mask(mask, d=d)
    scale = jnp.sqrt(jnp.float32(q.shape[-1]))
    if traced(mask):
        return frame_loss(q @ jnp.swapaxes(k, -1, -2) / scale, d, mask)
    total = 0.0
    for r0, r1, c0, c1 in strips(np.asarray(mask), strip_count(mask.shape[0]) if n is None else n):
        logits = q[..., r0:r1, :] @ jnp.swapaxes(k[..., c0:c1, :], -1, -2) / scale  # [..., r1 - r0, c1 - c0]
        total = total + error_sum(logits, d[..., r0:r1, c0:c1], mask[r0:r1, c0:c1])
    return total / mask.sum()
