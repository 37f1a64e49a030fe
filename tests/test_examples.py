"""examples/*.py run end to end on the tiny checkpoint: exit 0, a readable PNG, a finite loss."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FAST_COMPILE

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--size", "16", "--steps", "12"]


def run_example(name, *args):
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "XLA_FLAGS": FAST_COMPILE})


def printed_loss(stdout):
    return float(re.search(r"^loss (\S+)", stdout, re.MULTILINE).group(1))


@pytest.fixture
def picture(tmp_path):
    """A gray disk on black with an alpha channel: not square, not gray, not T x T."""
    y, x = np.mgrid[:30, :40]
    disk = ((x - 20) ** 2 + (y - 15) ** 2 < 100).astype(np.uint8) * 200
    path = tmp_path / "disk.png"
    Image.fromarray(np.stack([disk, disk, disk, np.full_like(disk, 255)], axis=-1)).save(path)
    return path


@pytest.mark.slow
def test_show_image(tiny_ckpt, picture, tmp_path):
    out = tmp_path / "attention.png"
    done = run_example("show_image.py", picture, "--model", tiny_ckpt, "--head", 3, *TINY, "-o", out)
    assert done.returncode == 0, done.stderr
    assert math.isfinite(printed_loss(done.stdout))
    psnr = float(re.search(r"^psnr (\S+) dB", done.stdout, re.MULTILINE).group(1))
    assert 0 < psnr <= 100
    with Image.open(out) as im:
        assert im.width > 1.5 * im.height > 200  # two panels side by side


@pytest.mark.slow
def test_head_grid_shows_every_head(tiny_ckpt, tmp_path):
    out = tmp_path / "grid.png"
    done = run_example("head_grid.py", "--model", tiny_ckpt, "--head", 1, "--frame", 3, *TINY, "-o", out)
    assert done.returncode == 0, done.stderr
    assert "heads 4" in done.stdout.splitlines()  # one panel per head
    assert math.isfinite(printed_loss(done.stdout))
    with Image.open(out) as im:
        assert im.width > 200 and im.height > 200  # 2 x 2 panels of about 200 pixels each


@pytest.mark.slow
def test_api_error_is_one_line_and_status_2(tiny_ckpt, picture):
    done = run_example("show_image.py", picture, "--model", tiny_ckpt, "--layer", 1, *TINY)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "layer 0 only" in done.stderr
