"""fidelity.py on hand-made cases: PSNR and SSIM over a region, flicker (SPEC section 12)."""
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from badapple_jax.fidelity import PSNR_CAP, flicker, has_content, psnr, ssim, summary, summary_text


def test_identical_frames_are_capped_not_infinite(rng):
    f = rng.random((2, 16, 16))
    region = np.tri(16, dtype=bool)
    np.testing.assert_array_equal(psnr(f, f, region), [PSNR_CAP, PSNR_CAP])
    np.testing.assert_allclose(ssim(f, f, region), 1.0)


@pytest.mark.parametrize("offset, db", [(0.1, 20.0), (0.01, 40.0), (0.5, 10 * np.log10(4))])
def test_a_known_offset_gives_a_known_psnr(rng, offset, db):
    f = rng.random((1, 16, 16)) * 0.4
    region = np.tri(16, dtype=bool)
    v = np.where(region, f + offset, rng.random((16, 16)))  # what is outside the region does not count
    np.testing.assert_allclose(psnr(v, f, region), [db], rtol=1e-9)


def test_whole_frame_ssim_is_scikit_images_own(rng):
    f = rng.random((2, 20, 20))
    v = np.clip(f + rng.normal(0, 0.1, f.shape), 0, 1)
    region = np.ones((20, 20), bool)
    expected = [structural_similarity(a, b, data_range=1.0) for a, b in zip(v, f)]
    np.testing.assert_allclose(ssim(v, f, region), expected, rtol=1e-12)


def test_ssim_ignores_what_the_region_leaves_out(rng):
    f = rng.random((1, 16, 16))
    region = np.tri(16, dtype=bool)
    v = np.where(region, f, 1 - f)
    assert ssim(v, f, region)[0] == pytest.approx(1.0)
    worse = np.clip(v + np.where(region, rng.normal(0, 0.2, v.shape), 0), 0, 1)
    assert ssim(worse, f, region)[0] < 0.9


@pytest.mark.parametrize("T", [2, 3, 4, 6, 7])
def test_tiny_frames_have_a_defined_ssim(rng, T):
    f = rng.random((1, T, T))
    region = np.tri(T, dtype=bool)
    assert ssim(f, f, region)[0] == pytest.approx(1.0)
    assert np.isfinite(ssim(1 - f, f, region)).all()


def test_colour_frames_average_their_channels(rng):
    f = rng.random((2, 3, 12, 12))
    v = f.copy()
    v[:, 0] += 0.1  # one channel off by 0.1: the MSE over all channels is 0.01 / 3
    region = np.ones((12, 12), bool)
    np.testing.assert_allclose(psnr(v, f, region), 10 * np.log10(300), rtol=1e-9)
    assert np.all(ssim(v, f, region) < 1)


def test_flicker_counts_frame_to_frame_change_over_the_region():
    T = 8
    region = np.tri(T, dtype=bool)
    v = np.zeros((4, T, T), np.float32)
    v[1] = 0.5 * region  # 0 -> 0.5 -> 0 -> 0: steps of 0.5, 0.5 and 0 over the region
    assert flicker(v, region) == pytest.approx(1 / 3)
    assert flicker(v[:1], region) == 0.0
    many = np.random.default_rng(0).random((150, T, T)).astype(np.float32)  # more than one block
    expected = np.abs(np.diff(many, axis=0))[:, region].mean()
    assert flicker(many, region) == pytest.approx(expected, rel=1e-6)
    assert flicker(many, region, decode=lambda b: np.asarray(b) * 2) == pytest.approx(2 * expected, rel=1e-6)


def test_summary_is_over_content_frames_with_the_blank_ones_counted(rng):
    T, region = 16, np.tri(16, dtype=bool)
    f = rng.random((5, T, T))
    f[1], f[3] = 0.0, 1.0  # blank frames: black, white
    v = np.clip(f + 0.01 * rng.standard_normal(f.shape), 0, 1)
    v[1], v[3] = 0.0, 1.0  # shown exactly: 100 dB each, which must not lift the summary
    p, q = psnr(v, f, region), ssim(v, f, region)
    content = has_content(f, region)
    assert content.tolist() == [True, False, True, False, True]
    s = summary(p, q, content)
    assert s["median_psnr"] == pytest.approx(np.median(p[[0, 2, 4]]))
    assert s["mean_ssim"] == pytest.approx(q[[0, 2, 4]].mean())
    assert (s["content_frames"], s["blank_frames"]) == (3, 2)
    pooled = 10 * np.log10(1 / np.mean(np.square(v - f)[:, region]))  # every shown pixel of every frame
    assert s["pooled_psnr"] == pytest.approx(pooled, rel=1e-6)  # blank frames: capped at 1e-10, not 0
    everything = summary(p[[1, 3]], q[[1, 3]], content[[1, 3]])  # none has content: over all frames
    assert everything["median_psnr"] == 100.0 and everything["content_frames"] == 0
    assert "over 3 content frames (2 blank; pooled" in summary_text(s)


def test_content_threshold():
    T, region = 20, np.ones((20, 20), bool)
    f = np.zeros((4, T, T))
    f[1] = 0.7  # uniform gray: blank
    f[2, 0, :2] = 1.0  # 2 of 400 pixels (0.5%): std 0.07, content
    f[3, 0, 0] = 0.5  # one half-bright pixel: std 0.025, blank
    assert has_content(f, region).tolist() == [False, False, True, False]
    colour = np.zeros((2, 3, T, T))
    colour[1, 0] = np.eye(T)  # a red diagonal on black
    assert has_content(colour, region).tolist() == [False, True]
