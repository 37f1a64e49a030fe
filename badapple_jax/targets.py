"""Target frames -> desired attention distributions and logits (SPEC sections 4, 11 and 14).

A frame is read as an attention pattern over the columns each row may see (`mask`). Softmax ignores
a per-row shift, so the desired logits are log-probabilities centred per row over those columns,
which is what the loss of section 5 compares the centred raw scores with. Masks are data: [L, L]
bool, True where row i may attend to column j; rows with no True entry are not part of the target.
"""
import jax
import jax.numpy as jnp
import numpy as np

from badapple_jax.errors import BadInputError

EPS = 1e-8  # keeps black pixels (zero attention) at a finite log


def traced(value) -> bool:
    """Whether `value` is only known when the program runs (under jit, vmap or grad): its checks wait for then."""
    return isinstance(value, jax.core.Tracer)


def frame_values(f):  # [..., T, T] -> float32, a NumPy array stays one
    """Frames as every target reads them: square, floats in [0, 1], or uint8 scaled by 1/255; anything else is a
    BadInputError. Values are checked only where they are known: not under jit, vmap or grad."""
    xp = jnp if isinstance(f, jax.Array) else np
    f = xp.asarray(f)
    if f.ndim < 2 or f.shape[-1] != f.shape[-2] or f.shape[-1] < 1:
        raise BadInputError(f"frames must be [..., T, T] with square T x T frames, got shape {f.shape}.")
    if f.dtype == np.uint8:
        return f.astype(np.float32) / np.float32(255)
    if not xp.issubdtype(f.dtype, np.floating):
        raise BadInputError(f"frames must be floats in [0, 1] or uint8, got {f.dtype}.")
    if f.size and not traced(f):
        lo, hi = float(f.min()), float(f.max())
        if not 0 <= lo <= hi <= 1:  # NaN fails every comparison
            raise BadInputError(f"frames must lie in [0, 1], got values in [{lo:g}, {hi:g}] (uint8 frames are "
                                "scaled by 1/255).")
    return f.astype(np.float32)


def check_on_mask(mask, **maps) -> None:
    """Refuse, by shape alone (so also under jit), `maps` that are not [..., L, L] over a `mask` [L, L]."""
    if np.ndim(mask) != 2 or np.shape(mask)[0] != np.shape(mask)[1]:
        raise BadInputError(f"mask must be [L, L], got shape {np.shape(mask)}.")
    for name, a in maps.items():
        if np.shape(a)[-2:] != np.shape(mask):
            raise BadInputError(f"{name} must be [..., L, L] over the mask [L, L] = {np.shape(mask)}, "
                                f"got shape {np.shape(a)}.")


def row_normalise(f, mask):
    """[..., T, T] frames in [0, 1] -> p: each row sums to 1 over `mask` [T, T], zero elsewhere (SPEC 4)."""
    f = frame_values(f)
    check_on_mask(mask, frames=f)
    p = jnp.where(mask, f + EPS, 0.0)
    return p / p.sum(axis=-1, keepdims=True)


def sink_target(f, region, z, black=0.0):
    """[..., T, T] frames in [0, 1] -> p [..., T+1, T+1] with token 0 an attention sink (SPEC 11).

    Display row i (token row i + 1) gives pixel j the mass (f[i, j] + black) / z over the columns
    `region` [T, T] lets it see, and the sink the rest, 1 - sum_j (f[i, j] + black) / z: so
    z * attention[1:, 1:] - black IS the frame. `z` must exceed the widest row's (1 + black) * count.
    The sink's own row (token 0) is no part of the display; it is left zero."""
    f = frame_values(f)
    check_on_mask(region, frames=f)
    pixels = jnp.where(region, (f + black) / z, 0.0)  # [..., T, T]
    sink = 1.0 - pixels.sum(axis=-1, keepdims=True)  # [..., T, 1]
    rows = jnp.concatenate([sink, pixels], axis=-1)  # [..., T, T+1]
    return jnp.concatenate([jnp.zeros_like(rows[..., :1, :]), rows], axis=-2)


def quarter_target(f, z, black=0.0):
    """[..., T, T] frames in [0, 1] -> p [..., 2T+1, 2T+1]: the frame in the bottom-left quarter (SPEC 14).

    Token 0 is the sink, tokens 1..T the columns, T+1..2T the rows. Display row i (token row T+1+i) gives
    pixel j (column token 1+j) (f[i, j] + black) / z, each row token it sees (T+1..T+1+i) black / z, and the
    sink the rest: so z * attention[T+1:, 1:T+1] - black IS the frame. `z` must exceed (1 + 2 black) T.
    The sink's and the column tokens' rows are no part of the display; they are left zero."""
    f = frame_values(f)
    T = f.shape[-1]
    pixels = (f + black) / z  # [..., T, T]
    rows = jnp.broadcast_to(jnp.where(np.tri(T, dtype=bool), black / z, 0.0), pixels.shape)  # [..., T, T]
    sink = 1.0 - pixels.sum(axis=-1, keepdims=True) - rows.sum(axis=-1, keepdims=True)  # [..., T, 1]
    shown = jnp.concatenate([sink, pixels, rows], axis=-1)  # [..., T, 2T+1]
    hidden = jnp.zeros((*shown.shape[:-2], T + 1, 2 * T + 1), shown.dtype)  # the sink's and the columns' rows
    return jnp.concatenate([hidden, shown], axis=-2)


def centred_log(p, mask):
    """[..., L, L] distributions -> d = log(p + eps) centred per row over `mask`, zero elsewhere."""
    check_on_mask(mask, p=p)
    d = jnp.where(mask, jnp.log(p + EPS), 0.0)
    counts = jnp.maximum(mask.sum(axis=-1, keepdims=True), 1).astype(jnp.float32)  # [L, 1]; rows outside: 1
    return jnp.where(mask, d - d.sum(axis=-1, keepdims=True) / counts, 0.0)
