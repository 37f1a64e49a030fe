"""A finished render as one HTML page: every frame beside its target with its loss, PSNR and SSIM, a slider,
play/pause at the clip's rate, and the PSNR of every frame as a strip with axes to click through.

`badapple-jax viewer WORKDIR [-o PAGE]` writes the page (default WORKDIR/viewer.html) and each frame's gray
target as WORKDIR/targets/target_NNNNNN.png. The page holds only numbers per frame (~100 bytes); its pictures,
WORKDIR/frames/ and WORKDIR/targets/, load by paths relative to the page, so it needs no server and no network
and stays small for a whole video (34 KB for 1000 frames, under 200 KB for 3481). Wherever it is written it sees the work
directory: move the two together, or write the page again.

The page opens on the first frame whose target has content (fidelity.has_content), where the video starts to
show something and playing goes on through it, not on a blank frame or a chosen best one; `PAGE#frame=123`
opens frame 123 (numbered from 0, as the frame files), and moving through frames keeps the fragment so. The
summary is fidelity's: over the content frames, the blank ones counted beside them and greyed on the strip.
"""
import html
import io
import json
import os
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from badapple_jax import fidelity
from badapple_jax.errors import BadInputError
from badapple_jax.files import write_atomic
from badapple_jax.metrics import Run
from badapple_jax.outputs import claim, mark
from badapple_jax.workdir import VIEWER, WorkDir

PLOT = (600, 90)  # the strip's plotting area, px
LEFT, BOTTOM, TOP = 52, 34, 6  # its margins for the dB axis, the frame axis and the top label


def ticks(low: float, high: float, count: int = 4) -> np.ndarray:
    """Round values (1, 2 or 5 x 10^k apart) inside [low, high], at most `count` + 1 of them."""
    span = max(high - low, 1e-9)
    step = 10 ** np.floor(np.log10(span / count))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= count)
    return np.arange(np.ceil(low / step) * step, high + step * 1e-6, step)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[N] bool -> the (start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def strip(psnr: np.ndarray, content: np.ndarray, median: float) -> str:
    """An SVG of PSNR per frame: a dB axis, a frame axis, blank frames greyed, the content median dashed."""
    W, H = PLOT
    n = psnr.size
    low, high = float(psnr.min()), float(psnr.max())
    if high - low < 1:  # a flat strip still gets a readable axis
        low, high = low - 0.5, high + 0.5
    x = lambda i: LEFT + (np.asarray(i) / max(n - 1, 1) * W if n > 1 else W / 2)  # noqa: E731
    y = lambda db: TOP + H - (np.asarray(db) - low) / (high - low) * H  # noqa: E731
    parts = [f'<rect x="{x(a) - 0.5:.1f}" y="{TOP}" width="{x(b - 1) - x(a) + 1:.1f}" height="{H}" fill="#ddd">'
             f'<title>frames {a}-{b - 1}: blank target</title></rect>' for a, b in runs(~content)]
    for db in ticks(low, high):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + W}" y1="{y(db):.1f}" y2="{y(db):.1f}" stroke="#eee"/>'
                     f'<text x="{LEFT - 4}" y="{y(db) + 4:.1f}" text-anchor="end">{db:g}</text>')
    for i in ticks(0, n - 1, count=6).round().astype(int):
        parts.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{TOP + H}" y2="{TOP + H + 4}" stroke="#666"/>'
                     f'<text x="{x(i):.1f}" y="{TOP + H + 16}" text-anchor="middle">{i}</text>')
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(np.atleast_1d(x(np.arange(n))), y(psnr)))
    size = (LEFT + W + 8, TOP + H + BOTTOM)
    return f"""<svg id="strip" width="{size[0]}" height="{size[1]}" viewBox="0 0 {size[0]} {size[1]}">
{"".join(parts)}
<line x1="{LEFT}" x2="{LEFT + W}" y1="{y(median):.1f}" y2="{y(median):.1f}" stroke="#b73779" stroke-dasharray="4 3"/>
<polyline points="{points}" fill="none" stroke="#b73779" stroke-width="1.5"/>
<rect x="{LEFT}" y="{TOP}" width="{W}" height="{H}" fill="none" stroke="#999"/>
<text x="12" y="{TOP + H / 2:.0f}" text-anchor="middle" transform="rotate(-90 12 {TOP + H / 2:.0f})">PSNR (dB)</text>
<text x="{LEFT + W / 2:.0f}" y="{TOP + H + BOTTOM - 2}" text-anchor="middle">frame</text>
<line id="cursor" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + H}" stroke="#333"/></svg>
<div class="note">PSNR of each frame: click to jump; grey, a blank target (not in the summary); dashed, the
median over content frames</div>"""


def opening(content: np.ndarray) -> int:
    """The frame the page opens on: the first with content (0 when none has)."""
    return int(np.argmax(content)) if content.any() else 0


def url(path: Path, page: Path) -> str:
    """`path` as a URL relative to the page at `page` (both resolved, so links in either are followed)."""
    try:
        relative = os.path.relpath(path.resolve(), page.resolve().parent)
    except ValueError:  # another drive on Windows: no relative path reaches it
        raise BadInputError(f"{page} cannot refer to {path} by a relative path: write the page on the same drive as "
                            "the work directory.") from None
    return urllib.parse.quote(Path(relative).as_posix())


# The page, for str.format: `page` names its fields; {{ and }} are the braces of its CSS and script.
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{generator}"><title>badapple-jax: {title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
.pair {{ display: flex; gap: 1em; }} .pair figure {{ margin: 0; text-align: center; }}
img {{ width: 320px; height: 320px; image-rendering: pixelated; border: 1px solid #ccc; }}
#controls {{ margin: 1em 0; display: flex; gap: 1em; align-items: center; }} #slider {{ width: 420px; }}
.note {{ color: #666; font-size: 12px; }} #strip {{ cursor: pointer; font-size: 11px; fill: #444; }}
#problem {{ color: #b00; }}
</style></head>
<body>
<h1>{title}</h1>
<div class="note" id="summary">{summary}; mean loss {mean_loss:.3g} over all
{n} frame{plural} at {fps:g} fps; {display} display</div>
<div class="pair">
<figure><img id="target" alt="target"><figcaption>target</figcaption></figure>
<figure><img id="shown" alt="attention map"><figcaption>what the head shows</figcaption></figure>
</div>
<div id="controls"><button id="play">play</button>
<input id="slider" type="range" min="0" max="{last}" value="0">
<span id="label"></span> <a id="link" href="#">link</a></div>
<div class="note" id="problem"></div>
{strip}
<script id="data" type="application/json">{data}</script>
<script>
const d = JSON.parse(document.getElementById("data").textContent);
const n = d.loss.length, slider = document.getElementById("slider"), play = document.getElementById("play");
const shown = document.getElementById("shown"), target = document.getElementById("target");
const problem = document.getElementById("problem");
let timer = null;
const g3 = v => v && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e4) ? v.toExponential(2) : v.toPrecision(3);
const picture = (first, i) => first.replace(/\\d+(?=\\.png$)/, m => String(i).padStart(m.length, "0"));
for (const img of [shown, target]) img.addEventListener("error", () => {{
  problem.textContent = `cannot load ${{decodeURIComponent(img.getAttribute("src"))}} from beside this page: ` +
    "keep the page where it was written, or write it again with badapple-jax viewer";
}});
function show(i) {{
  i = Math.max(0, Math.min(n - 1, i));
  slider.value = i;
  shown.src = picture(d.shown, i);
  target.src = picture(d.target, i);
  document.getElementById("label").textContent = `frame ${{i}} of 0-${{n - 1}} (${{(i / d.fps).toFixed(2)}} s): ` +
    `loss ${{g3(d.loss[i])}}, PSNR ${{d.psnr[i].toFixed(1)}} dB, SSIM ${{d.ssim[i].toFixed(3)}}` +
    (d.content[i] ? "" : " (blank target)");
  document.getElementById("link").href = `#frame=${{i}}`;
  const x = d.left + (n > 1 ? i / (n - 1) * d.width : d.width / 2);
  for (const a of ["x1", "x2"]) document.getElementById("cursor").setAttribute(a, x);
  if (!timer) history.replaceState(null, "", `#frame=${{i}}`);  // not at every frame of play: browsers throttle it
}}
function asked() {{  // the frame the fragment names, or null
  const m = /^#frame=(\\d+)$/.exec(location.hash);
  return m && Number(m[1]) < n ? Number(m[1]) : null;
}}
slider.addEventListener("input", () => show(Number(slider.value)));
play.addEventListener("click", () => {{
  if (timer) {{ clearInterval(timer); timer = null; play.textContent = "play"; show(Number(slider.value)); return; }}
  play.textContent = "pause";
  timer = setInterval(() => {{
    const i = (Number(slider.value) + 1) % n;
    show(i);
    new Image().src = picture(d.shown, (i + 1) % n);  // the next frame, loading while this one shows
  }}, 1000 / d.fps);
}});
document.getElementById("strip").addEventListener("click", e => {{
  const box = e.currentTarget.getBoundingClientRect(), scale = e.currentTarget.viewBox.baseVal.width / box.width;
  show(Math.round(((e.clientX - box.left) * scale - d.left) / d.width * (n - 1)));
}});
document.addEventListener("keydown", e => {{
  if (e.key === "ArrowRight") show(Number(slider.value) + 1);
  if (e.key === "ArrowLeft") show(Number(slider.value) - 1);
}});
window.addEventListener("hashchange", () => {{ if (asked() !== null) show(asked()); }});
if (location.hash && asked() === null)
  problem.textContent = `no frame "${{decodeURIComponent(location.hash.slice(1))}}" here (frames 0-${{n - 1}}): ` +
    `opened on frame ${{d.open}}, the first with content`;
show(asked() ?? d.open);
</script>
</body></html>
"""


def page(run: Run, at: Path) -> str:
    """The HTML of the viewer of a checked run, to be written at `at`."""
    n = run.loss.size
    found = fidelity.summary(run.psnr, run.ssim, run.content)
    data = json.dumps({"shown": url(run.work.frame(0), at), "target": url(run.work.target(0), at),
                       "loss": [float(f"{v:.3g}") for v in run.loss], "psnr": np.round(run.psnr, 1).tolist(),
                       "ssim": np.round(run.ssim, 3).tolist(), "content": run.content.astype(int).tolist(),
                       "fps": run.fps, "open": opening(run.content), "left": LEFT, "width": PLOT[0]},
                      separators=(",", ":"))
    title = html.escape(run.caption)
    return PAGE.format(generator=mark("viewer"), title=title, summary=html.escape(fidelity.summary_text(found)),
                       mean_loss=run.loss.mean(), n=n, plural="s" * (n != 1), fps=run.fps,
                       display=html.escape(run.display), last=n - 1, data=data,
                       strip=strip(run.psnr, run.content, found["median_psnr"]))


def target_png(target: np.ndarray) -> bytes:
    """A gray target [T, T] uint8 as a PNG carrying the viewer's mark."""
    info, buffer = PngInfo(), io.BytesIO()
    info.add_text("Software", mark("viewer"))
    Image.fromarray(target).save(buffer, format="png", pnginfo=info)  # Pillow itself: imageio's lookup is 1 ms a call
    return buffer.getvalue()


def write_targets(run: Run) -> None:
    """Each frame's target as WORKDIR/targets/target_NNNNNN.png; a file already holding the same bytes is kept.
    Not fsynced one by one (5 ms a file): targets.npz holds them, and the next page writes any a crash lost."""
    paths = [claim(run.work.target(i), "viewer") for i in range(run.loss.size)]
    paths[0].parent.mkdir(exist_ok=True)
    for path, target in zip(paths, run.targets):
        png = target_png(target)
        if not (path.is_file() and path.read_bytes() == png):  # a second page of one render rewrites nothing
            write_atomic(path, png, durable=False)


def write_viewer(workdir, out=None) -> Path:
    """Write the viewer of a finished render (default WORKDIR/viewer.html) and the targets it shows; returns the
    page's path."""
    run = WorkDir(Path(workdir)).finished_run()
    path = claim(Path(out) if out is not None else run.work.path / VIEWER, "viewer")
    text = page(run, path)
    try:
        write_targets(run)
        write_atomic(path, text.encode())  # last: a page on disk finds its pictures
    except OSError as err:
        raise BadInputError(f"Cannot write {err.filename or path}: {err.strerror or err}.") from err
    return path
