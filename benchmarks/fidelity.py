"""Fidelity of the displays: PSNR and SSIM of what a viewer sees, for each display and step budget.

    python benchmarks/fidelity.py [--input badapple] [--frames 8] [--budgets 150,300,600,1200,1500]
                                  [--variants zscore,sink] [--out benchmarks/fidelity_cpu.json]

Every point optimises the same frames (spread evenly over the input) with the same weights, solver and
starts, and reports the optimisation time (compile excluded), the mean / median loss and the mean /
median PSNR and SSIM of the shown gray frame against the target over the region it shows (SPEC 12:
the causal triangle, or the whole frame for an encoder such as --model minilm).
A variant is `zscore` (the reference's target and display), `sink` (the defaults), or a sink with its
constants set, e.g. `sink:z=3` or `sink:black=0.02`. The table is printed last; a picture of the
targets above every variant's display at the largest budget goes beside the JSON.
"""
import argparse
import json
import textwrap
import time
from pathlib import Path

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from badapple_jax import Settings, compile_chunk, load_layer, optimize_frames, pick_head, read_clip  # noqa: E402
from badapple_jax.display import to_rgb  # noqa: E402


def variant_settings(name: str, steps: int, seeds: int, solver: str) -> Settings:
    """`zscore`, `sink` or `sink:z=3,black=0.02` -> Settings."""
    display, _, constants = name.partition(":")
    sink = {f"sink_{k}": float(v) for k, v in (c.split("=") for c in constants.split(",") if c)}
    return Settings(steps=steps, seeds=seeds, solver=solver, display=display, **sink)


def measure(w, frames, settings):  # -> dict of seconds, losses, fidelity and the pictures
    program, _ = compile_chunk(w, frames.shape[-1], len(frames), settings)
    t0 = time.perf_counter()
    (_, r), = optimize_frames(program, frames)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "mean_loss": float(r.loss.mean()), "median_loss": float(np.median(r.loss)),
            "mean_psnr": float(r.psnr.mean()), "median_psnr": float(np.median(r.psnr)),
            "min_psnr": float(r.psnr.min()), "mean_ssim": float(r.ssim.mean()),
            "median_ssim": float(np.median(r.ssim)), "per_frame_psnr": r.psnr.tolist(),
            "per_frame_ssim": r.ssim.tolist()}, r.picture


def picture(frames, shown: dict, caption: str) -> Figure:
    """Targets (top row) above each variant's display, one column per frame."""
    rows = 1 + len(shown)
    fig = Figure(figsize=(1.6 * len(frames) + 1.2, 1.7 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, len(frames), squeeze=False)
    for col, f in enumerate(frames):
        axes[0, col].imshow(f, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        for row, (name, (v, psnr)) in enumerate(shown.items(), 1):
            axes[row, col].imshow(to_rgb(v[col:col + 1])[0], interpolation="nearest")
            axes[row, col].set_xlabel(f"{psnr[col]:.1f} dB", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("target")
    for row, name in enumerate(shown, 1):
        axes[row, 0].set_ylabel(name)
    fig.suptitle(textwrap.fill(caption, 24 * len(frames)), fontsize=9)
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random:gpt2-xl")
    p.add_argument("--head", type=int, default=0, help="of layer 0")
    p.add_argument("--input", default="badapple", help="video, image directory, demo or badapple")
    p.add_argument("--frames", type=int, default=8, help="frames spread evenly over the input")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--budgets", default="150,300,600,1200,1500", help="steps per frame")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--solver", default="headspace", choices=("headspace", "embedding"))
    p.add_argument("--variants", default="zscore,sink", help="comma-free list separated by ';' if constants are set")
    p.add_argument("--out", type=Path, default=Path("benchmarks/fidelity_cpu.json"))
    args = p.parse_args(argv)
    variants = args.variants.split(";") if ";" in args.variants else args.variants.split(",")
    budgets = [int(b) for b in args.budgets.split(",")]

    w = pick_head(load_layer(args.model)[0], args.head)
    clip = read_clip(args.input, size=args.size)
    index = np.unique(np.linspace(0, len(clip.frames) - 1, args.frames + 2).round().astype(int)[1:-1])
    frames = clip.frames[index]  # spread, without the first and last (often black) frames
    points, shown = [], {}
    for name in variants:
        for steps in budgets:
            point, pictures = measure(w, frames, variant_settings(name, steps, args.seeds, args.solver))
            points.append({"variant": name, "steps": steps, **point})
            print(json.dumps({k: v for k, v in points[-1].items() if not k.startswith("per_frame")}), flush=True)
        shown[name] = (pictures, point["per_frame_psnr"])

    device = jax.devices()[0].device_kind
    caption = (f"{len(frames)} frames of {clip.label.split(' (')[0]} (indices {index.tolist()}) at {args.size}x{args.size}, "
               f"{args.model} head {args.head}, {args.solver}, {args.seeds} seed(s), {budgets[-1]} steps; {device}")
    picture(frames, shown, caption).savefig(args.out.with_suffix(".png"), dpi=110)
    args.out.write_text(json.dumps({"points": points, "frames": index.tolist(), "input": clip.label,
                                    "args": vars(args) | {"out": str(args.out)}, "device": device}, indent=1))
    print(f"\n{caption}")
    print("| variant | steps | seconds | mean loss | median PSNR dB | mean PSNR | min PSNR | median SSIM |\n"
          "|---|---|---|---|---|---|---|---|")
    for q in points:
        print(f"| {q['variant']} | {q['steps']} | {q['seconds']:.2f} | {q['mean_loss']:.4g} | {q['median_psnr']:.1f} | "
              f"{q['mean_psnr']:.1f} | {q['min_psnr']:.1f} | {q['median_ssim']:.3f} |")
    first, last = (max((q for q in points if q["variant"] == v), key=lambda q: q["steps"]) for v in variants[:2])
    if len(variants) > 1:
        print(f"median PSNR at {budgets[-1]} steps: {first['variant']} {first['median_psnr']:.1f} dB, "
              f"{last['variant']} {last['median_psnr']:.1f} dB ({last['median_psnr'] - first['median_psnr']:+.1f} dB)")


if __name__ == "__main__":
    main()
