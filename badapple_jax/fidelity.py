"""Fidelity: how close the shown picture is to the frame, as a viewer sees it (SPEC section 12).

The loss lives in logit space and says little about the picture. These compare a shown gray frame v
(before the colormap) with its target f over the region the display shows ([T, T] bool: the causal
triangle, or the whole frame in full mode):

    PSNR    = 10 log10(1 / mean_region (v - f)^2), peak 1, capped at PSNR_CAP for identical frames
    SSIM    = scikit-image's structural_similarity(v, f, data_range=1): the mean of its SSIM map over
              the region, less the border its window cannot cover (for a whole frame: exactly its MSSIM)
    flicker = mean_t mean_region |v_t - v_(t-1)|, to set beside the targets' own

Colour frames ([N, 3, T, T]) average over their channels.
"""
import numpy as np
from skimage.metrics import structural_similarity

from badapple_jax.errors import BadInputError

PSNR_CAP = 100.0  # dB: a mean squared error below 1e-10 (identical frames) reads as this, never as inf
BLOCK = 64  # frames decoded at a time by `flicker`
WINDOW = 7  # scikit-image's default SSIM window; smaller frames use the largest odd size that fits


def _per_frame(v, f, region):  # [N, (C,) T, T] -> float64 [N, C, T, T] each
    v, f = np.asarray(v, np.float64), np.asarray(f, np.float64)
    if v.shape != f.shape or v.ndim not in (3, 4):
        raise BadInputError(f"pictures and targets must be one shape [N, (C,) T, T], got {v.shape} and {f.shape}.")
    check_region(region, v.shape)
    return v.reshape(len(v), -1, *v.shape[-2:]), f.reshape(len(f), -1, *f.shape[-2:])


def check_region(region, shape) -> None:
    """The region must be a bool [T, T] over pictures of `shape` [..., T, T]: an int array would index, not mask."""
    if np.asarray(region).dtype != bool or np.shape(region) != tuple(shape[-2:]):
        raise BadInputError(f"region must be bool [T, T] over pictures {tuple(shape)}, got "
                            f"{np.asarray(region).dtype} {np.shape(region)}.")


def psnr(v, f, region) -> np.ndarray:
    """Pictures and targets [N, (C,) T, T] in [0, 1], region [T, T] bool -> [N] dB."""
    v, f = _per_frame(v, f, region)
    mse = np.mean(np.square(v - f)[..., region], axis=(1, 2))  # [N]
    return np.minimum(10 * np.log10(1.0 / np.maximum(mse, 10 ** (-PSNR_CAP / 10))), PSNR_CAP)


def ssim(v, f, region) -> np.ndarray:
    """Pictures and targets [N, (C,) T, T] in [0, 1], region [T, T] bool -> [N] mean SSIM over the region."""
    v, f = _per_frame(v, f, region)
    v, f = np.where(region, v, 0.0), np.where(region, f, 0.0)  # what is not shown is compared as black on both
    T = v.shape[-1]
    win = min(WINDOW, T - 1 + T % 2)  # odd, at most T
    if win < 3:  # a 2 x 2 frame has no SSIM window: only the exact match counts as similar
        return np.all(np.isclose(v, f), axis=(1, 2, 3)).astype(np.float64)
    pad = (win - 1) // 2
    inner = np.zeros_like(region)
    inner[pad:T - pad, pad:T - pad] = region[pad:T - pad, pad:T - pad]
    if not inner.any():  # a thin region: the window's border takes all of it; use the whole map there
        inner = region
    out = np.empty(v.shape[:2])
    for n, c in np.ndindex(*out.shape):
        _, smap = structural_similarity(v[n, c], f[n, c], data_range=1.0, win_size=win, full=True)
        out[n, c] = smap[inner].mean()
    return out.mean(axis=1)


def flicker(v, region, decode=None) -> float:
    """Frames [N, ...] -> mean |v_t - v_(t-1)| over the region and t = 1..N-1 (0 for one frame).

    `decode` turns a block of `v` into pictures [n, (C,) T, T] (e.g. PNG colours back to gray): the
    clip is read in blocks of BLOCK frames, so a whole video needs no float copy of itself."""
    decode = decode or (lambda block: np.asarray(block, np.float32))
    total, count = 0.0, 0
    for s in range(0, len(v) - 1, BLOCK):
        block = decode(v[s:s + BLOCK + 1])
        check_region(region, block.shape)
        step = np.abs(np.diff(block.reshape(len(block), -1, *block.shape[-2:]), axis=0))[..., region]
        total, count = total + float(step.sum(dtype=np.float64)), count + step.size
    return total / count if count else 0.0


def summary(per_frame_psnr, per_frame_ssim) -> dict:
    """Mean and median of the per-frame figures, for metrics.json."""
    p, s = np.asarray(per_frame_psnr, float), np.asarray(per_frame_ssim, float)
    return {"mean_psnr": float(p.mean()), "median_psnr": float(np.median(p)),
            "mean_ssim": float(s.mean()), "median_ssim": float(np.median(s))}
