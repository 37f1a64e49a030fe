"""How fast does the whole video go? Time and fidelity of solver settings on consecutive frames.

    python benchmarks/video_speed.py [--input badapple] [--start 1200] [--frames 120]
                                     [--out benchmarks/video_speed_cpu.json]

Every point optimises the same consecutive frames with the same weights in chunks of --chunk frames and
reports the optimisation time (compile excluded; lift, pictures and fidelity included, as in a render),
the median / worst PSNR and SSIM of the shown frames, their flicker against the targets' own, and the
time the whole input would take at that rate. The baseline is the fast preset of before (head space,
1 seed, 1200 steps of the reference's optimiser); the last lines print each point's speed-up over it and
whether it meets issue 16's bar (>= 3x, median PSNR at most 0.5 dB lower, flicker at most 10% higher).
A quality-against-time plot goes beside the JSON.
"""
import argparse
import json
import time
from pathlib import Path

import imageio_ffmpeg
import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from badapple_jax import (Settings, compile_chunk, flicker, load_layer, optimize_frames, pick_head,  # noqa: E402
                          read_clip)
from badapple_jax.optimize import FAST_SOLVERS, PRESETS  # noqa: E402
from badapple_jax.video import badapple_video  # noqa: E402


BASELINE = dict(solver="headspace", seeds=1, steps=1200)  # --preset fast before issue 16, spelled out
FAST = dict(PRESETS["fast"], solver="headspace", **FAST_SOLVERS["headspace"])  # --preset fast before the qk solver
POINTS = {  # label -> settings; the ablation isolates what each change of the fast preset buys
    "baseline: headspace, 1200 steps, restarts, lr 0.1, b2 0.999": BASELINE,
    "headspace, 200 steps, restarts, lr 0.1, b2 0.999": dict(BASELINE, steps=200),
    "headspace, 200 steps, cosine, lr 0.5, b2 0.999": dict(FAST, b2=0.999),
    "headspace, 200 steps, cosine, lr 0.1, b2 0.9": dict(FAST, lr=0.1),
    **{f"fast: headspace, {n} steps, cosine, lr 0.5, b2 0.9": dict(FAST, steps=n) for n in (100, 150, 200, 300)},
    "fast above layer 0: embedding, 400 steps, cosine, lr 0.1, b2 0.9": dict(FAST, solver="embedding",
                                                                              **FAST_SOLVERS["embedding"]),
}


def video_frames(source: str, fps: float) -> int:
    """Frames the whole input has at `fps` (the projection's length)."""
    path = str(badapple_video()) if source == "badapple" else source
    return round(imageio_ffmpeg.count_frames_and_secs(path)[1] * fps)


def measure(w, frames, settings: Settings, chunk: int) -> dict:
    program, _ = compile_chunk(w, frames.shape[-1], chunk, settings)
    t0 = time.perf_counter()
    results = [r for _, r in optimize_frames(program, frames)]
    seconds = time.perf_counter() - t0
    psnr, ssim = (np.concatenate([getattr(r, k) for r in results]) for k in ("psnr", "ssim"))
    picture = np.concatenate([r.picture for r in results])
    region = settings.encoding(w.config.causal).region(frames.shape[-1])
    return {"seconds": seconds, "seconds_per_frame": seconds / len(frames),
            "median_loss": float(np.median(np.concatenate([r.loss for r in results]))),
            "median_psnr": float(np.median(psnr)), "mean_psnr": float(psnr.mean()), "min_psnr": float(psnr.min()),
            "median_ssim": float(np.median(ssim)), "flicker": flicker(picture, region)}


def plot(points: dict, baseline: str, title: str) -> Figure:
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    fast = sorted((p["seconds_per_frame"], p["median_psnr"], p["settings"]["steps"]) for k, p in points.items()
                  if k.startswith("fast: "))
    ax.plot([f[0] for f in fast], [f[1] for f in fast], "o-", label="fast preset's optimiser, by steps")
    for s, q, n in fast:
        ax.annotate(str(n), (s, q), textcoords="offset points", xytext=(4, -10), fontsize=8)
    for label, p in points.items():
        if not label.startswith("fast: "):
            marker = "*" if label == baseline else "s"
            ax.scatter([p["seconds_per_frame"]], [p["median_psnr"]], marker=marker, s=160 if marker == "*" else 40,
                       label=label, zorder=3)
    ax.axhline(points[baseline]["median_psnr"] - 0.5, color="k", lw=0.5, ls="--", label="baseline - 0.5 dB")
    ax.axvline(points[baseline]["seconds_per_frame"] / 3, color="k", lw=0.5, ls=":", label="baseline / 3")
    ax.set(xscale="log", xlabel="optimisation seconds per frame", ylabel="median PSNR (dB)", title=title)
    ax.legend(fontsize=7)
    return fig


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default="badapple")
    p.add_argument("--model", default="random:gpt2-xl")
    p.add_argument("--start", type=int, default=1200, help="first frame (at --fps)")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--chunk", type=int, default=16, help="frames per compiled step (the CPU's automatic size)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/video_speed.json"))
    args = p.parse_args()

    w = pick_head(load_layer(args.model)[0], 0)
    frames = read_clip(args.input, size=args.size, fps=args.fps, max_frames=args.start + args.frames).frames
    frames = frames[args.start:]
    total = video_frames(args.input, args.fps)
    region = Settings().encoding(w.config.causal).region(args.size)
    points = {}
    for label, options in POINTS.items():
        points[label] = {"settings": options, **measure(w, frames, Settings(**options), args.chunk)}
        points[label]["projected_minutes"] = points[label]["seconds_per_frame"] * total / 60
        print(json.dumps({label: points[label]}), flush=True)

    baseline = next(iter(POINTS))
    base = points[baseline]
    targets_flicker = flicker(frames, region)
    device = jax.devices()[0].device_kind
    print(f"\n{len(frames)} consecutive frames from {args.start} of {args.input} ({total} frames at {args.fps} fps), "
          f"{args.model} layer 0 head 0, {device}; targets' own flicker {targets_flicker:.4f}")
    print("| settings | s / frame | whole video (min) | median PSNR | worst | median SSIM | flicker | speed-up | "
          "meets the bar |\n|---|---|---|---|---|---|---|---|---|")
    for label, q in points.items():
        ratio = base["seconds"] / q["seconds"]
        meets = (ratio >= 3 and q["median_psnr"] >= base["median_psnr"] - 0.5
                 and q["flicker"] <= 1.1 * base["flicker"])
        print(f"| {label} | {q['seconds_per_frame']:.3f} | {q['projected_minutes']:.1f} | {q['median_psnr']:.2f} | "
              f"{q['min_psnr']:.2f} | {q['median_ssim']:.4f} | {q['flicker']:.4f} | {ratio:.2f}x | "
              f"{'yes' if meets else 'no'} |")
    fast = points[f"fast: headspace, {FAST['steps']} steps, cosine, lr 0.5, b2 0.9"]
    fig = plot(points, baseline, f"{len(frames)} consecutive frames, {args.model}, {device}")
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    args.out.write_text(json.dumps({"points": points, "targets_flicker": targets_flicker, "video_frames": total,
                                    "args": vars(args) | {"out": str(args.out)}, "device": device}, indent=1))
    print(f"--preset fast: {base['seconds'] / fast['seconds']:.2f}x faster than the baseline, median PSNR "
          f"{fast['median_psnr'] - base['median_psnr']:+.2f} dB, flicker {fast['flicker'] / base['flicker'] - 1:+.1%}; "
          f"the whole video in {fast['projected_minutes']:.1f} min of optimisation (baseline "
          f"{base['projected_minutes']:.1f})")


if __name__ == "__main__":
    main()
