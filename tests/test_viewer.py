"""The HTML viewer in a real headless browser (Debian's chromium, which .ci/run installs): the page's script
runs, opens on a frame with content or the fragment's, loads its pictures from beside the page wherever it is
written, stays small for a long clip; and its axes, ticks and opening frame as functions."""
import json
import shutil
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest

from badapple_jax import viewer
from badapple_jax.cli import main
from badapple_jax.display import colourise
from badapple_jax.errors import BadInputError
from badapple_jax.fidelity import summary
from badapple_jax.outputs import mark
from badapple_jax.workdir import WorkDir

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]  # the DOM is dumped once the pictures have loaded or failed
N, BLANK = 1000, 40  # a long clip whose first 40 targets are black
T = 8


@pytest.fixture(scope="module")
def page(tiny_ckpt, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewer")
    assert main(["render", "demo", "-o", str(tmp / "v.mp4"), "--model", str(tiny_ckpt), "--size", "16",
                 "--max-frames", "3", "--steps", "100", "--seeds", "1", "--solver", "headspace", "-q"]) == 0
    assert main(["viewer", str(tmp / "v.work")]) == 0
    return tmp / "v.work" / "viewer.html"


def fake_workdir(work, n, blank):
    """A work directory of n frames as render leaves it, built cheaply: one frame PNG written n times, a disc
    moving over the targets after `blank` black ones, PSNR rising with the frame index."""
    frame = WorkDir(work).frame
    frame(0).parent.mkdir(parents=True)
    png = iio.imwrite("<bytes>", colourise(np.tri(T) * 0.7), extension=".png")
    for i in range(n):
        frame(i).write_bytes(png)
    yy, xx = np.mgrid[:T, :T]
    targets = np.stack([((xx - i % T) ** 2 + (yy - T / 2) ** 2 < 4) * 255 * (i >= blank) for i in range(n)])
    np.savez_compressed(work / "targets.npz", frames=targets.astype(np.uint8))
    psnr, ssim, content = 30 + np.arange(n) / 100, np.full(n, 0.9), np.arange(n) >= blank
    psnr[:blank] = 80.0
    (work / "metrics.json").write_text(json.dumps({
        "model": {"name": "random:gpt2-xl"},
        "settings": {"layer": 0, "head": 0, "size": T, "settings": {"steps": 100, "seeds": 1, "solver": "headspace"}},
        "frames": n, "fps": 30.0, "per_frame_loss": np.full(n, 1e-6).tolist(), "display": "sink",
        "per_frame_psnr": psnr.tolist(), "per_frame_ssim": ssim.tolist(), "per_frame_content": content.tolist(),
        **summary(psnr, ssim, content), "flicker": 0.01, "target_flicker": 0.01}))
    return work


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):  # a space in its name: the page's paths must be URLs
    return fake_workdir(tmp_path_factory.mktemp("long") / "long clip.work", N, BLANK)


def browse(page, tmp_path, *args, fragment="") -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install chromium (as .ci/run does)")
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args,
                           page.as_uri() + fragment], capture_output=True, text=True, timeout=120, cwd=tmp_path)


def with_script(page, script: str):
    """A copy of the page beside it that runs `script` after its own (a key press, a look at what loaded)."""
    copy = page.with_name("probe.html")
    copy.write_text(page.read_text().replace("</body>", f"<script>{script}</script></body>"))
    return copy


@pytest.mark.slow
def test_the_page_runs_in_a_browser(page, tmp_path):
    dom = browse(page, tmp_path, "--dump-dom").stdout  # the document after its script ran
    assert "frame 0 of 0-2 (0.00 s): loss " in dom and " dB, SSIM " in dom and "x 1 seed<" in dom
    assert 'src="../v.work/frames/frame_000000.png"' not in dom and 'src="frames/frame_000000.png"' in dom
    assert (page.parent / "targets" / "target_000002.png").is_file()
    browse(page, tmp_path, "--window-size=900,800", f"--screenshot={tmp_path / 'shot.png'}")
    shot = iio.imread(tmp_path / "shot.png")[..., :3].astype(int)
    colourful = np.abs(shot - shot.mean(axis=-1, keepdims=True)).sum(axis=-1) > 60  # magma, not gray or white
    assert colourful.sum() > 2000, colourful.sum()  # the 320 x 320 attention map is on screen


def test_a_long_clip_stays_small_and_opens_the_fragments_frame(long_clip, tmp_path):
    assert main(["viewer", str(long_clip)]) == 0
    page = long_clip / "viewer.html"
    assert page.stat().st_size < 200_000, page.stat().st_size  # numbers per frame, no pictures
    probe = with_script(page, "addEventListener('load', () => document.body.dataset.loaded = "
                              "[shown.naturalWidth, target.naturalWidth]);")
    dom = browse(probe, tmp_path, "--dump-dom", fragment="#frame=123").stdout
    assert "frame 123 of 0-999 (4.10 s): loss 1.00e-6, PSNR 31.2 dB, SSIM 0.900" in dom
    assert 'src="frames/frame_000123.png"' in dom and 'src="targets/target_000123.png"' in dom
    assert f'data-loaded="{T},{T}"' in dom  # both pictures found beside the page
    assert "over 960 content frames (40 blank;" in dom and "100 steps x 1 seed<" in dom and "seeds" not in dom
    assert dom.count("blank target</title>") == 1  # frames 0-39 greyed on the strip, as one band
    assert '>frame</text>' in dom and '>800</text>' in dom  # the frame axis
    assert '>PSNR (dB)</text>' in dom and '>40</text>' in dom  # the dB axis

    dom = browse(page, tmp_path, "--dump-dom").stdout  # no fragment: the first frame with content
    assert f"frame {BLANK} of 0-999" in dom and 'id="problem"></div>' in dom


def test_a_page_elsewhere_finds_its_pictures_and_a_bad_fragment_falls_back(long_clip, tmp_path):
    page = tmp_path / "pages" / "deep" / "view.html"
    page.parent.mkdir(parents=True)
    assert main(["viewer", str(long_clip), "-o", str(page)]) == 0
    probe = with_script(page, "document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight'}));"
                              "addEventListener('load', () => document.body.dataset.loaded = "
                              "[shown.naturalWidth, target.naturalWidth, location.hash]);")
    dom = browse(probe, tmp_path, "--dump-dom", fragment="#frame=5000").stdout
    assert 'no frame "frame=5000" here (frames 0-999): opened on frame 40' in dom
    assert f"frame {BLANK + 1} of 0-999" in dom  # the arrow key moved on from the opening frame
    assert f'data-loaded="{T},{T},#frame={BLANK + 1}"' in dom  # pictures loaded; the fragment follows the frame
    relative = "../../../" + long_clip.parent.name + "/long%20clip.work/frames/frame_000041.png"
    assert f'src="{relative}"' in dom

    page.rename(page.parent.parent / "moved.html")  # the relative paths no longer reach: the page says so
    dom = browse(page.parent.parent / "moved.html", tmp_path, "--dump-dom").stdout
    assert "cannot load " in dom and "from beside this page" in dom


def test_the_targets_are_ours_and_kept_when_unchanged(tmp_path):
    work = fake_workdir(tmp_path / "short.work", 3, 1)
    first = WorkDir(work).target(0)
    viewer.write_viewer(work)
    assert mark("viewer").encode() in first.read_bytes()[:200]
    stamp = first.stat().st_mtime_ns
    viewer.write_viewer(work)
    assert first.stat().st_mtime_ns == stamp
    first.write_bytes(b"someone else's picture")
    with pytest.raises(BadInputError, match="target_000000.png exists and is not a file badapple-jax viewer wrote"):
        viewer.write_viewer(work)


@pytest.mark.parametrize("low, high, count, expected", [
    (30.0, 80.0, 4, [40, 60, 80]), (51.3, 52.9, 4, [51.5, 52, 52.5]), (0, 999, 6, [0, 200, 400, 600, 800]),
    (0, 0, 4, [0])])
def test_ticks_are_round_and_inside(low, high, count, expected):
    assert viewer.ticks(low, high, count).tolist() == pytest.approx(expected)


def test_opening_frame_and_blank_runs():
    content = np.array([False, False, True, False, True, True])
    assert viewer.opening(content) == 2 and viewer.opening(np.zeros(3, bool)) == 0
    assert viewer.runs(~content) == [(0, 2), (3, 4)]


def test_viewer_of_a_missing_render_is_one_line(tmp_path, capsys):
    assert main(["viewer", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
