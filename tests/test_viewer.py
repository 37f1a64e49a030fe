"""The HTML viewer in a real headless browser (Debian's chromium, which .ci/run installs): the page's script
runs, shows frame 1 of N with its numbers, and the screenshot holds the target and the attention map."""
import shutil
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest

from badapple_jax.cli import main

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(tiny_ckpt, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewer")
    assert main(["render", "demo", "-o", str(tmp / "v.mp4"), "--model", str(tiny_ckpt), "--size", "16",
                 "--max-frames", "3", "--steps", "100", "--seeds", "1", "--solver", "headspace", "-q"]) == 0
    assert main(["viewer", str(tmp / "v.work")]) == 0
    return tmp / "v.work" / "viewer.html"


def browse(page, tmp_path, *args) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install chromium (as .ci/run does)")
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.slow
def test_the_page_runs_in_a_browser(page, tmp_path):
    dom = browse(page, tmp_path, "--dump-dom").stdout  # the document after its script ran
    assert "frame 1 of 3 (0.00 s): loss " in dom and " dB, SSIM " in dom
    assert dom.count('src="data:image/png;base64,') == 2  # target and attention map, set by the script
    browse(page, tmp_path, "--window-size=900,700", f"--screenshot={tmp_path / 'shot.png'}")
    shot = iio.imread(tmp_path / "shot.png")[..., :3].astype(int)
    colourful = np.abs(shot - shot.mean(axis=-1, keepdims=True)).sum(axis=-1) > 60  # magma, not gray or white
    assert colourful.sum() > 2000, colourful.sum()  # the 320 x 320 attention map is on screen


def test_viewer_of_a_missing_render_is_one_line(tmp_path, capsys):
    assert main(["viewer", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
