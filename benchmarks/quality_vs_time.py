"""Loss against time for each solver and step budget: how few steps reach the reference's quality?

    python benchmarks/quality_vs_time.py [--frames 16] [--budgets 100,200,400,800,1500] [--out q.json]

Every point optimises the same frames (spread evenly over the demo clip) with the same weights and
reports the optimisation time (compile excluded) and the mean / median loss. The reference point is
the embedding solver at the reference settings (1500 steps, 3 seeds, one seed per chunk); the
cheapest point of each solver whose mean loss is no worse is marked. A plot goes beside the JSON.
"""
import argparse
import json
import time
from pathlib import Path

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from badapple_jax import Settings, compile_chunk, load_layer, optimize_frames, pick_head, read_clip  # noqa: E402


REFERENCE = Settings(seed_select="chunk", display="zscore")  # the loss compares with the reference


def measure(w, frames, settings, chunk):  # -> seconds, per-frame losses
    program, _ = compile_chunk(w, frames.shape[-1], chunk, settings)
    t0 = time.perf_counter()
    loss = np.concatenate([r.loss for _, r in optimize_frames(program, frames)])
    return time.perf_counter() - t0, loss


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random:gpt2-xl")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--budgets", default="100,200,400,800,1500", help="steps per frame")
    p.add_argument("--seeds", default="1,3", help="starts per frame")
    p.add_argument("--solvers", default="headspace,embedding")
    p.add_argument("--warm-start", action="store_true", help="also headspace with the SVD warm start")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/quality_vs_time.json"))
    args = p.parse_args()

    w = pick_head(load_layer(args.model)[0], 0)
    clip = read_clip("demo", size=args.size, fps=15.0 * 4)  # 120 frames over the same 2 s: more variety
    frames = clip.frames[np.linspace(0, len(clip.frames) - 1, args.frames).round().astype(int)]
    chunk = len(frames)
    t, loss = measure(w, frames, REFERENCE, chunk)
    ref = {"solver": "reference", "steps": REFERENCE.steps, "seeds": REFERENCE.seeds, "seconds": t,
           "mean": float(loss.mean()), "median": float(np.median(loss))}
    print(json.dumps(ref), flush=True)
    points = []
    variants = [(s, False) for s in args.solvers.split(",")] + ([("headspace", True)] if args.warm_start else [])
    for solver, warm in variants:
        for seeds in map(int, args.seeds.split(",")):
            for steps in map(int, args.budgets.split(",")):
                settings = Settings(steps=steps, seeds=seeds, solver=solver, warm_start=warm, lr=args.lr, display="zscore")
                t, loss = measure(w, frames, settings, chunk)
                points.append({"solver": solver + (" warm" if warm else ""), "steps": steps, "seeds": seeds,
                               "seconds": t, "mean": float(loss.mean()), "median": float(np.median(loss))})
                print(json.dumps(points[-1]), flush=True)

    print(f"\nreference: {ref['seconds']:.1f} s, mean loss {ref['mean']:.4g} ({len(frames)} frames, {args.model})")
    print("| solver | seeds | steps | seconds | mean loss | median | speed-up vs reference |\n|---|---|---|---|---|---|---|")
    for q in points:
        mark = " **" if q["mean"] <= ref["mean"] else ""
        print(f"| {q['solver']} | {q['seeds']} | {q['steps']} | {q['seconds']:.2f} | {q['mean']:.4g}{mark} | "
              f"{q['median']:.4g} | {ref['seconds'] / q['seconds']:.1f}x |")
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in dict.fromkeys((q["solver"], q["seeds"]) for q in points):
        pts = sorted((q["seconds"], q["mean"]) for q in points if (q["solver"], q["seeds"]) == name)
        ax.plot(*zip(*pts), marker="o", label=f"{name[0]}, {name[1]} seed(s)")
    ax.scatter([ref["seconds"]], [ref["mean"]], marker="*", s=200, c="k", label="reference settings", zorder=3)
    ax.axhline(ref["mean"], color="k", lw=0.5, ls="--")
    ax.set(xscale="log", yscale="log", xlabel="optimisation seconds", ylabel="mean loss",
           title=f"{len(frames)} frames, {args.model}, {jax.devices()[0].device_kind}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    args.out.write_text(json.dumps({"reference": ref, "points": points, "args": vars(args) | {"out": str(args.out)},
                                    "device": jax.devices()[0].device_kind}, indent=1))


if __name__ == "__main__":
    main()
