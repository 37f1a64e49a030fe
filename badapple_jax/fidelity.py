"""Fidelity: how close the shown picture is to the frame, as a viewer sees it (SPEC section 12).

The loss lives in logit space and says little about the picture. These compare a shown gray frame v
(before the colormap) with its target f over the region the display shows ([T, T] bool: the causal
triangle, or the whole frame in full mode):

    PSNR    = 10 log10(1 / mean_region (v - f)^2), peak 1, capped at PSNR_CAP for identical frames
    SSIM    = scikit-image's structural_similarity(v, f, data_range=1): the mean of its SSIM map over
              the region, less the border its window cannot cover (for a whole frame: exactly its MSSIM)
    flicker = mean_t mean_region |v_t - v_(t-1)|, to set beside the targets' own

Colour frames ([N, 3, T, T]) average over their channels.

A clip's summary must not be lifted by frames that are trivially easy to show: a black (or white, or
any uniform) target is shown at 70+ dB by any head, and a third of Bad Apple is such frames. So a frame
counts as CONTENT when its target's standard deviation over the region is at least CONTENT_STD (a
uniform frame has 0; one with 0.25% of its pixels white on black has 0.05), and the summary's mean and
median are over content frames, with the count of blank ones beside them (over all frames when none has
content). The pooled PSNR, over every pixel of every frame (10 log10 of 1 / the mean of the frames'
squared errors), is given beside: a blank frame adds almost no error to it, so it cannot inflate it either.
"""
import numpy as np
from skimage.metrics import structural_similarity

from badapple_jax.errors import BadInputError

CONTENT_STD = 0.05  # a target whose standard deviation over the region is below this is blank (see above)
PSNR_CAP = 100.0  # dB: a mean squared error below 1e-10 (identical frames) reads as this, never as inf
BLOCK = 32  # frames at a time in `flicker` and `has_content`: 256 x 256 ones in float64 take 17 MB, under glibc's
# 32 MB threshold for fresh memory, so each block reuses the last one's instead of paying its page faults (x0.17 for
# `has_content` over 480 frames of Bad Apple, benchmarks/RESULTS.md)
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


def has_content(f, region) -> np.ndarray:
    """Targets [N, (C,) T, T] in [0, 1], region [T, T] bool -> [N] bool: the frames that are not blank."""
    check_region(region, np.shape(f))
    std = np.zeros(len(f))
    for s in range(0, len(f), BLOCK):
        block = np.asarray(f[s:s + BLOCK], np.float64)
        block = block.reshape(len(block), -1, *block.shape[-2:])[..., region]  # [n, C, pixels]
        std[s:s + BLOCK] = block.reshape(len(block), -1).std(axis=1)
    return std >= CONTENT_STD


def summarised(content) -> np.ndarray:
    """[N] bool content -> [N] bool: the frames a summary is over (the content frames; all when none has content)."""
    content = np.asarray(content, bool)
    return content if content.any() else np.ones_like(content)


def summary(per_frame_psnr, per_frame_ssim, content) -> dict:
    """The clip's figures for metrics.json, the closing line and the figures: mean and median PSNR and SSIM over
    the content frames (all frames when none has content), their count and the blank ones', the pooled PSNR."""
    p, s, content = np.asarray(per_frame_psnr, float), np.asarray(per_frame_ssim, float), np.asarray(content, bool)
    over = summarised(content)
    mse = np.power(10.0, -p / 10)  # each frame's mean squared error over the same region
    return {"mean_psnr": float(p[over].mean()), "median_psnr": float(np.median(p[over])),
            "mean_ssim": float(s[over].mean()), "median_ssim": float(np.median(s[over])),
            "content_frames": int(content.sum()), "blank_frames": int((~content).sum()),
            "pooled_psnr": float(min(-10 * np.log10(mse.mean()), PSNR_CAP))}


def summary_text(found: dict) -> str:
    """'PSNR median 57.1 dB, SSIM median 0.998 over 31 content frames (29 blank; pooled 60.2 dB)' from a summary."""
    n, blank = found["content_frames"], found["blank_frames"]
    over = f"over {n} content frame{'s' * (n != 1)}" if n else "over all frames (none has content)"
    return (f"PSNR median {found['median_psnr']:.1f} dB, SSIM median {found['median_ssim']:.3f} {over} "
            f"({blank} blank; pooled {found['pooled_psnr']:.1f} dB)")
