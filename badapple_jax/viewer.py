"""A finished render as one self-contained HTML page: every frame beside its target with its loss, PSNR and
SSIM, a slider, play/pause at the clip's rate, and the PSNR of every frame as a strip to click through.

`badapple-jax viewer WORKDIR` writes WORKDIR/viewer.html. The frames are embedded as data URIs, so the page
needs no server and no network: open it in any browser (a 3286-frame render at 256x256 makes ~60 MB).
"""
import base64
import html
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from badapple_jax.errors import BadInputError
from badapple_jax.files import write_atomic
from badapple_jax.outputs import claim, mark
from badapple_jax.metrics import Run, read_run
from badapple_jax.workdir import VIEWER, frame_path

def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def strip(psnr: np.ndarray, width: int = 600, height: int = 60) -> str:
    """An SVG polyline of PSNR per frame, scaled to its own range."""
    low, high = float(psnr.min()), float(psnr.max())
    x = np.linspace(0, width, len(psnr)) if len(psnr) > 1 else np.array([width / 2])
    y = height - (psnr - low) / max(high - low, 1e-9) * (height - 4) - 2
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
    return (f'<svg id="strip" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<polyline points="{points}" fill="none" stroke="#b73779" stroke-width="1.5"/>'
            f'<line id="cursor" x1="0" x2="0" y1="0" y2="{height}" stroke="#333"/></svg>'
            f'<div class="note">PSNR per frame, {low:.1f} to {high:.1f} dB: click to jump</div>')


def page(run: Run) -> str:
    """The HTML of the viewer for a checked run."""
    shown = [data_uri(frame_path(run.workdir, i).read_bytes()) for i in range(run.loss.size)]
    targets = [data_uri(iio.imwrite("<bytes>", t, extension=".png")) for t in run.targets]
    data = json.dumps({"shown": shown, "targets": targets, "loss": run.loss.tolist(), "psnr": run.psnr.tolist(),
                       "ssim": run.ssim.tolist(), "fps": run.fps})
    title = html.escape(run.caption)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{mark('viewer')}"><title>badapple-jax: {title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
.pair {{ display: flex; gap: 1em; }} .pair figure {{ margin: 0; text-align: center; }}
img {{ width: 320px; height: 320px; image-rendering: pixelated; border: 1px solid #ccc; }}
#controls {{ margin: 1em 0; display: flex; gap: 1em; align-items: center; }} #slider {{ width: 420px; }}
.note {{ color: #666; font-size: 12px; }} #strip {{ cursor: pointer; border: 1px solid #eee; }}
</style></head>
<body>
<h1>{title}</h1>
<div class="note">median PSNR {np.median(run.psnr):.1f} dB, median SSIM {np.median(run.ssim):.3f},
mean loss {run.loss.mean():.3g}; {run.loss.size} frames at {run.fps:g} fps; {run.display} display</div>
<div class="pair">
<figure><img id="target" alt="target"><figcaption>target</figcaption></figure>
<figure><img id="shown" alt="attention map"><figcaption>what the head shows</figcaption></figure>
</div>
<div id="controls"><button id="play">play</button>
<input id="slider" type="range" min="0" max="{run.loss.size - 1}" value="0">
<span id="label"></span></div>
{strip(run.psnr)}
<script id="data" type="application/json">{data}</script>
<script>
const d = JSON.parse(document.getElementById("data").textContent);
const n = d.shown.length, slider = document.getElementById("slider"), play = document.getElementById("play");
let timer = null;
function show(i) {{
  i = Math.max(0, Math.min(n - 1, i));
  slider.value = i;
  document.getElementById("shown").src = d.shown[i];
  document.getElementById("target").src = d.targets[i];
  document.getElementById("label").textContent = `frame ${{i + 1}} of ${{n}} (${{(i / d.fps).toFixed(2)}} s): ` +
    `loss ${{d.loss[i].toPrecision(3)}}, PSNR ${{d.psnr[i].toFixed(1)}} dB, SSIM ${{d.ssim[i].toFixed(3)}}`;
  const x = n > 1 ? i / (n - 1) * 600 : 300;
  for (const a of ["x1", "x2"]) document.getElementById("cursor").setAttribute(a, x);
}}
slider.addEventListener("input", () => show(Number(slider.value)));
play.addEventListener("click", () => {{
  if (timer) {{ clearInterval(timer); timer = null; play.textContent = "play"; return; }}
  play.textContent = "pause";
  timer = setInterval(() => show((Number(slider.value) + 1) % n), 1000 / d.fps);
}});
document.getElementById("strip").addEventListener("click", e => {{
  show(Math.round(e.offsetX / 600 * (n - 1)));
}});
document.addEventListener("keydown", e => {{
  if (e.key === "ArrowRight") show(Number(slider.value) + 1);
  if (e.key === "ArrowLeft") show(Number(slider.value) - 1);
}});
show(0);
</script>
</body></html>
"""


def write_viewer(workdir, out=None) -> Path:
    """Write the viewer of a finished render (default WORKDIR/viewer.html); returns its path."""
    run = read_run(workdir)
    path = claim(Path(out) if out is not None else run.workdir / VIEWER, "viewer")
    text = page(run)
    try:
        write_atomic(path, text.encode())
    except OSError as err:
        raise BadInputError(f"Cannot write {path}: {err.strerror or err}.") from err
    return path
