"""Target frames -> desired attention distributions and logits (SPEC sections 4 and 11).

A frame is read as an attention pattern over the columns each row may see (`mask`). Softmax ignores
a per-row shift, so the desired logits are log-probabilities centred per row over those columns,
which is what the loss of section 5 compares the centred raw scores with. Masks are data: [L, L]
bool, True where row i may attend to column j; rows with no True entry are not part of the target.
"""
import jax.numpy as jnp

EPS = 1e-8  # keeps black pixels (zero attention) at a finite log


def row_normalise(f, mask):
    """[..., T, T] frames in [0, 1] -> p: each row sums to 1 over `mask` [T, T], zero elsewhere (SPEC 4)."""
    f = jnp.asarray(f, jnp.float32)
    p = jnp.where(mask, f + EPS, 0.0)
    return p / p.sum(axis=-1, keepdims=True)


def sink_target(f, region, z, black=0.0):
    """[..., T, T] frames in [0, 1] -> p [..., T+1, T+1] with token 0 an attention sink (SPEC 11).

    Display row i (token row i + 1) gives pixel j the mass (f[i, j] + black) / z over the columns
    `region` [T, T] lets it see, and the sink the rest, 1 - sum_j (f[i, j] + black) / z: so
    z * attention[1:, 1:] - black IS the frame. `z` must exceed the widest row's (1 + black) * count.
    The sink's own row (token 0) is no part of the display; it is left zero."""
    f = jnp.asarray(f, jnp.float32)
    pixels = jnp.where(region, (f + black) / z, 0.0)  # [..., T, T]
    sink = 1.0 - pixels.sum(axis=-1, keepdims=True)  # [..., T, 1]
    rows = jnp.concatenate([sink, pixels], axis=-1)  # [..., T, T+1]
    return jnp.concatenate([jnp.zeros_like(rows[..., :1, :]), rows], axis=-2)


def centred_log(p, mask):
    """[..., L, L] distributions -> d = log(p + eps) centred per row over `mask`, zero elsewhere."""
    d = jnp.where(mask, jnp.log(p + EPS), 0.0)
    counts = jnp.maximum(mask.sum(axis=-1, keepdims=True), 1).astype(jnp.float32)  # [L, 1]; rows outside: 1
    return jnp.where(mask, d - d.sum(axis=-1, keepdims=True) / counts, 0.0)
