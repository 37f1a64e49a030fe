"""Gray pictures -> video frames, and the reference's picture of a row-normalised map (SPEC section 7).

The reference's post-softmax rows hover near 1/(i+1), so each row is z-scored to show its relative
pattern, outliers are clipped at the 1st/99th percentiles, and a small blur hides the horizontal
streaks the per-row normalisation leaves. Purely visual: nothing here feeds the optimisation.
Which picture a map gets is the encoding's choice (`encoding.py`); this module draws them.
"""
import matplotlib
import numpy as np
from scipy.ndimage import gaussian_filter

from badapple_jax.errors import BadInputError

STD_FLOOR = 1e-10  # rows flatter than this (and row 0, a single entry) stay 0
PERCENTILES = (1.0, 99.0)
SIGMA = 1.5  # blur in pixels, image axes only
BLOCK = 64  # frames per block


def normalise_display(a: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """[..., T, T] attention maps (post-softmax) -> [..., T, T] float32 in [0, 1], zero outside `region`
    ([T, T] bool, the entries each row may see; default the causal triangle j <= i)."""
    a = np.asarray(a)
    T = a.shape[-1]
    mask = np.tri(T, dtype=bool) if region is None else region
    frames = a.reshape(-1, T, T)  # [N, T, T]
    # Blocks of frames keep the float64 temporaries small when a whole video comes at once.
    blocks = [_normalise_block(frames[s:s + BLOCK], mask) for s in range(0, len(frames), BLOCK)]
    return np.concatenate(blocks or [np.zeros((0, T, T), np.float32)]).reshape(a.shape)


def _normalise_block(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[N, T, T] -> [N, T, T] float32: steps 1-4 of SPEC section 7 over `mask` [T, T]."""
    a = a.astype(np.float64)
    counts = mask.sum(axis=-1, keepdims=True)  # [T, 1]

    # 1. z-score each row over its causal entries (population std, numpy's default).
    mean = np.where(mask, a, 0.0).sum(-1, keepdims=True) / counts
    centred = np.where(mask, a - mean, 0.0)
    std = np.sqrt((centred**2).sum(-1, keepdims=True) / counts)  # [N, T, 1]
    z = np.divide(centred, std, out=np.zeros_like(centred), where=std >= STD_FLOOR)

    # 2. clip each frame to the percentiles of its causal entries, rescale to [0, 1].
    lo, hi = np.percentile(z[:, mask], PERCENTILES, axis=1)[:, :, None, None]  # [N, 1, 1] each
    span = hi - lo
    v = np.divide(np.clip(z, lo, hi) - lo, span, out=np.zeros_like(z), where=span > 0)

    # 3. blur within each frame; 4. keep the visible entries. The clip absorbs float rounding of the blur.
    v = gaussian_filter(v, sigma=(0, SIGMA, SIGMA))
    return np.clip(np.where(mask, v, 0.0), 0.0, 1.0).astype(np.float32)


def colourise(v: np.ndarray, cmap: str = "magma") -> np.ndarray:
    """[..., T, T] in [0, 1] -> [..., T, T, 3] uint8 through a matplotlib colormap's lookup table."""
    colormap = matplotlib.colormaps[cmap]
    lut = colormap(np.arange(colormap.N), bytes=True)[:, :3]  # [N_colours, 3] uint8
    # Same binning as matplotlib's own float lookup: floor(v * N), 1.0 in the last bin.
    index = np.clip((np.asarray(v, np.float32) * colormap.N).astype(np.int32), 0, colormap.N - 1)
    return lut[index]


def stitch_full(v: np.ndarray) -> np.ndarray:
    """[..., 2, T, T] pictures of a frame's map and of its transpose's map -> [..., T, T] whole frame.

    The second map shows the transposed target in its lower triangle: transposed back it fills j > i.
    The diagonal always comes from the first (the frame's own causal map)."""
    T = v.shape[-1]
    upper = np.triu(np.ones((T, T), dtype=bool), 1)
    return np.where(upper, np.swapaxes(v[..., 1, :, :], -1, -2), v[..., 0, :, :])


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
    colormap = matplotlib.colormaps["magma"]
    lut = colormap(np.arange(colormap.N), bytes=True)[:, :3].astype(np.int64)  # [N_colours, 3]
    code = lambda c: (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]  # noqa: E731
    order = np.argsort(code(lut))
    keys = code(np.asarray(rgb, np.int64))
    at = np.clip(np.searchsorted(code(lut)[order], keys), 0, len(lut) - 1)
    if not np.all(code(lut)[order][at] == keys):
        raise BadInputError("frames hold colours outside the magma colormap: not a picture this project drew.")
    return ((order[at] + 0.5) / colormap.N).astype(np.float32)
