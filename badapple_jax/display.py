"""Attention maps -> video frames (SPEC section 7), vectorised over frames.

Post-softmax rows hover near 1/(i+1), so each row is z-scored to show its relative pattern,
outliers are clipped at the 1st/99th percentiles, and a small blur hides the horizontal streaks
the per-row normalisation leaves. Purely visual: nothing here feeds the optimisation.
"""
import matplotlib
import numpy as np
from scipy.ndimage import gaussian_filter

STD_FLOOR = 1e-10  # rows flatter than this (and row 0, a single entry) stay 0
PERCENTILES = (1.0, 99.0)
SIGMA = 1.5  # blur in pixels, image axes only
BLOCK = 64  # frames per block


def normalise_display(a: np.ndarray) -> np.ndarray:
    """[..., T, T] attention maps (post-softmax) -> [..., T, T] float32 in [0, 1], zero above the diagonal."""
    a = np.asarray(a)
    T = a.shape[-1]
    frames = a.reshape(-1, T, T)  # [N, T, T]
    # Blocks of frames keep the float64 temporaries small when a whole video comes at once.
    blocks = [_normalise_block(frames[s:s + BLOCK]) for s in range(0, len(frames), BLOCK)]
    return np.concatenate(blocks or [np.zeros((0, T, T), np.float32)]).reshape(a.shape)


def _normalise_block(a: np.ndarray) -> np.ndarray:
    """[N, T, T] -> [N, T, T] float32: steps 1-4 of SPEC section 7."""
    a = a.astype(np.float64)
    T = a.shape[-1]
    mask = np.tri(T, dtype=bool)  # [T, T] j <= i
    counts = np.arange(1, T + 1)[:, None]  # [T, 1]

    # 1. z-score each row over its causal entries (population std, numpy's default).
    mean = np.where(mask, a, 0.0).sum(-1, keepdims=True) / counts
    centred = np.where(mask, a - mean, 0.0)
    std = np.sqrt((centred**2).sum(-1, keepdims=True) / counts)  # [N, T, 1]
    z = np.divide(centred, std, out=np.zeros_like(centred), where=std >= STD_FLOOR)

    # 2. clip each frame to the percentiles of its causal entries, rescale to [0, 1].
    lo, hi = np.percentile(z[:, mask], PERCENTILES, axis=1)[:, :, None, None]  # [N, 1, 1] each
    span = hi - lo
    v = np.divide(np.clip(z, lo, hi) - lo, span, out=np.zeros_like(z), where=span > 0)

    # 3. blur within each frame; 4. keep the causal triangle. The clip absorbs float rounding of the blur.
    v = gaussian_filter(v, sigma=(0, SIGMA, SIGMA))
    return np.clip(np.where(mask, v, 0.0), 0.0, 1.0).astype(np.float32)


def colourise(v: np.ndarray, cmap: str = "magma") -> np.ndarray:
    """[..., T, T] in [0, 1] -> [..., T, T, 3] uint8 through a matplotlib colormap's lookup table."""
    colormap = matplotlib.colormaps[cmap]
    lut = colormap(np.arange(colormap.N), bytes=True)[:, :3]  # [N_colours, 3] uint8
    # Same binning as matplotlib's own float lookup: floor(v * N), 1.0 in the last bin.
    index = np.clip((np.asarray(v, np.float32) * colormap.N).astype(np.int32), 0, colormap.N - 1)
    return lut[index]


def display_frames(a: np.ndarray) -> np.ndarray:
    """[..., T, T] attention maps -> [..., T, T, 3] RGB uint8 frames (magma)."""
    return colourise(normalise_display(a))


def stitch_full(v: np.ndarray) -> np.ndarray:
    """[..., 2, T, T] displays of a frame's map and of its transpose's map -> [..., T, T] whole frame.

    The second map shows the transposed target in its lower triangle: transposed back it fills j > i.
    The diagonal always comes from the first (the frame's own causal map)."""
    T = v.shape[-1]
    upper = np.triu(np.ones((T, T), dtype=bool), 1)
    return np.where(upper, np.swapaxes(v[..., 1, :, :], -1, -2), v[..., 0, :, :])


def full_frames(a: np.ndarray) -> np.ndarray:
    """[..., 2, T, T] attention maps (frame, transposed frame) -> [..., T, T, 3] RGB frames with no black
    triangle: each half post-processed in its own orientation, then stitched."""
    return colourise(stitch_full(normalise_display(a)))


def colour_frames(a: np.ndarray, full: bool = False) -> np.ndarray:
    """[N, 3, T, T] attention maps of the R, G and B heads ([N, 2, 3, T, T] with `full`) -> [N, T, T, 3] RGB
    uint8: each head post-processed like a gray display and used as one colour channel."""
    v = stitch_full(normalise_display(np.swapaxes(a, 1, 2))) if full else normalise_display(a)  # [N, 3, T, T]
    return (np.moveaxis(v, 1, -1) * 255).round().astype(np.uint8)
