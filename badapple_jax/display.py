"""Gray pictures -> video frames, and the reference's picture of a row-normalised map (SPEC section 7).

The reference's post-softmax rows hover near 1/(i+1), so each row is z-scored to show its relative
pattern, outliers are clipped at the 1st/99th percentiles, and a small blur hides the horizontal
streaks the per-row normalisation leaves. Nothing here feeds the optimisation, but the pictures are
jax.numpy (the blur is scipy.ndimage's, written out), so a pixel-space loss can jit and differentiate
through them. Which picture a map gets is the encoding's choice (`encoding.py`); this module draws them;
the colours (`colourise`, `to_rgb`, `gray_of`) are NumPy, for the PNGs.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from badapple_jax.errors import BadInputError

STD_FLOOR = 1e-10  # rows flatter than this (and row 0, a single entry) stay 0
PERCENTILES = (1.0, 99.0)
SIGMA = 1.5  # blur in pixels, image axes only
TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default: the kernel reaches int(4 sigma + 0.5) = 6 pixels
BLOCK = 64  # frames per block


def normalise_display(a, region=None) -> jax.Array:
    """[..., T, T] attention maps (post-softmax) -> [..., T, T] float32 in [0, 1], zero outside `region`
    ([T, T] bool, the entries each row may see; default the causal triangle j <= i). jax.numpy throughout:
    `jax.jit` and `jax.grad` go through it."""
    a = jnp.asarray(a, jnp.float32)
    T = a.shape[-1]
    mask = jnp.tri(T, dtype=bool) if region is None else jnp.asarray(region, bool)
    return _normalise_frames(a.reshape(-1, T, T), mask).reshape(a.shape)


@jax.jit
def _normalise_frames(a, mask):  # [N, T, T], [T, T] bool -> [N, T, T]
    # Blocks of frames keep the temporaries small when a whole video comes at once.
    return jax.lax.map(lambda m: normalise_map(m, mask), a, batch_size=BLOCK)


def normalise_map(a, mask):  # [T, T] map, [T, T] bool -> [T, T] float32: steps 1-4 of SPEC section 7
    v = clip_percentiles(zscore_rows(a, mask), mask)
    # 3. blur, 4. keep the visible entries. The clip absorbs float rounding of the blur.
    return jnp.clip(jnp.where(mask, blur(v), 0.0), 0.0, 1.0)


def zscore_rows(a, mask):  # [..., T, T], [T, T] bool -> [..., T, T]: 1. each row z-scored over its entries
    """(a - mean) / std over each row's `mask` entries (population std, NumPy's default); rows whose std is below
    STD_FLOOR, and every entry outside the mask, are 0."""
    counts = jnp.maximum(mask.sum(-1, keepdims=True), 1)  # [T, 1]
    # Shifted by the row's largest entry first: a flat row stays exactly flat in float32, where its rounded
    # mean would leave noise for the division to blow up (float64 hid this before).
    top = jnp.max(jnp.where(mask, a, -jnp.inf), axis=-1, keepdims=True)
    shifted = jnp.where(mask, a - top, 0.0)
    centred = jnp.where(mask, shifted - shifted.sum(-1, keepdims=True) / counts, 0.0)
    var = jnp.sum(centred**2, axis=-1, keepdims=True) / counts
    flat = var < STD_FLOOR**2
    return jnp.where(flat, 0.0, centred / jnp.sqrt(jnp.where(flat, 1.0, var)))  # no 0 / 0 for the gradient either


def clip_percentiles(z, mask):  # [T, T], [T, T] bool -> [T, T]: 2. clipped to the map's percentiles, to [0, 1]
    """z clipped to the PERCENTILES of its `mask` entries (NumPy's linear interpolation) and rescaled to [0, 1];
    every entry is rescaled (those outside the mask still feed the blur). A map of one value gives 0."""
    lo, hi = jnp.nanpercentile(jnp.where(mask, z, jnp.nan), jnp.array(PERCENTILES))
    span = hi - lo
    return jnp.where(span > 0, (jnp.clip(z, lo, hi) - lo) / jnp.where(span > 0, span, 1.0), 0.0)


def gaussian_kernel(sigma: float = SIGMA, truncate: float = TRUNCATE) -> np.ndarray:  # -> [2 r + 1] float64
    """scipy.ndimage's Gaussian: exp(-x^2 / (2 sigma^2)) for |x| <= r = int(truncate sigma + 0.5), summing to 1."""
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1)
    phi = np.exp(-0.5 / sigma**2 * x**2)
    return phi / phi.sum()


def blur_matrix(T: int, sigma: float = SIGMA) -> np.ndarray:  # -> [T, T] float64, row i: the weights pixel i takes
    """scipy.ndimage.gaussian_filter1d(mode="reflect") over T pixels as a matrix: the kernel centred on each pixel
    over the signal mirrored at each edge, the edge pixel repeated (NumPy's "symmetric" padding), folded back
    onto the pixels it copies."""
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    source = np.pad(np.arange(T), r, mode="symmetric")  # [T + 2 r]: the pixel each padded position copies
    B = np.zeros((T, T))
    for i in range(T):
        np.add.at(B[i], source[i:i + 2 * r + 1], k)
    return B


def blur(v, sigma: float = SIGMA):  # [..., H, W] -> [..., H, W]
    """Gaussian blur of the last two axes as scipy.ndimage.gaussian_filter(v, (0, sigma, sigma)) draws it: the
    separable 1-D filter along each axis, B_H v B_W^T, in full float32 (no TF32 on a GPU)."""
    rows, cols = (jnp.asarray(blur_matrix(n, sigma), jnp.float32) for n in v.shape[-2:])
    return jnp.matmul(jnp.matmul(rows, v, precision="highest"), cols.T, precision="highest")


@functools.cache
def lookup_table(cmap: str = "magma") -> np.ndarray:  # -> [N_colours, 3] uint8
    """A matplotlib colormap's colours, imported here and not at the top: the pictures' maths (and the jitted core
    that imports them) need no drawing library."""
    from matplotlib import colormaps

    colormap = colormaps[cmap]
    return colormap(np.arange(colormap.N), bytes=True)[:, :3]


def colourise(v: np.ndarray, cmap: str = "magma") -> np.ndarray:
    """[..., T, T] in [0, 1] -> [..., T, T, 3] uint8 through a matplotlib colormap's lookup table."""
    lut = lookup_table(cmap)
    # Same binning as matplotlib's own float lookup: floor(v * N), 1.0 in the last bin.
    index = np.clip((np.asarray(v, np.float32) * len(lut)).astype(np.int32), 0, len(lut) - 1)
    return lut[index]


def stitch_full(v) -> jax.Array:
    """[..., 2, T, T] pictures of a frame's map and of its transpose's map -> [..., T, T] whole frame.

    The second map shows the transposed target in its lower triangle: transposed back it fills j > i.
    The diagonal always comes from the first (the frame's own causal map)."""
    v = jnp.asarray(v)
    upper = jnp.triu(jnp.ones(v.shape[-2:], dtype=bool), 1)
    return jnp.where(upper, jnp.swapaxes(v[..., 1, :, :], -1, -2), v[..., 0, :, :])


def to_rgb(v: np.ndarray, colour: bool = False) -> np.ndarray:
    """Gray pictures [N, T, T] -> magma [N, T, T, 3] uint8; colour [N, 3, T, T] (R, G, B heads) -> RGB."""
    return (np.moveaxis(v, 1, -1) * 255).round().astype(np.uint8) if colour else colourise(v)


def gray_of(rgb: np.ndarray, colour: bool = False) -> np.ndarray:
    """The inverse of `to_rgb`, as a viewer decodes a written frame: [..., T, T, 3] uint8 -> [..., T, T] in
    [0, 1] (magma bin centres), or [..., 3, T, T] for colour; a colour that is not magma's is an error."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise BadInputError(f"frames must be uint8 colours [..., T, T, 3], got {rgb.dtype} {rgb.shape}.")
    if colour:
        return np.moveaxis(rgb, -1, -3).astype(np.float32) / 255
    at = colour_index("magma")[colour_code(rgb)]
    if np.any(at < 0):
        raise BadInputError("frames hold colours outside the magma colormap: not a picture this project drew.")
    return ((at + 0.5) / len(lookup_table("magma"))).astype(np.float32)


def colour_code(rgb):  # [..., 3] uint8 -> [...] int32 R G B as one 24-bit number
    rgb = np.asarray(rgb, np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@functools.cache
def colour_index(cmap: str) -> np.ndarray:  # -> [2^24] int16: each 24-bit colour's index in the colormap, else -1
    """The inverse of a colormap's lookup table, one entry per colour (32 MB): a frame decodes with one gather
    (x0.36 the sorted search's time, benchmarks/RESULTS.md)."""
    index = np.full(1 << 24, -1, np.int16)
    lut = lookup_table(cmap)
    index[colour_code(lut)] = np.arange(len(lut))
    return index
