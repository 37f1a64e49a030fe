"""What sharing one embedding between three heads (colour) costs, against three independent heads.

    python benchmarks/colour_cost.py [--model random:gpt2-xl] [--heads 0,1,2] [--frames 6] [--size 128]

The same colour frames: one run drives the three heads with one shared embedding (one channel
each), three runs optimise each head alone on its channel. Prints the per-channel mean losses of
both and their ratio (shared / independent).
"""
import argparse
import json

import numpy as np

from badapple_jax import Settings, load_layer, optimize_frames, pick_head, pick_heads, plan, read_clip


def losses(w, frames, settings):  # -> per-frame, per-head final loss [F, H]
    program = plan(w, frames.shape[-1], len(frames), settings)
    return np.concatenate([r.head_loss for _, r in optimize_frames(program, frames)])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random:gpt2-xl")
    p.add_argument("--heads", default="0,1,2")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--solver", default="headspace")
    args = p.parse_args()
    layer, _ = load_layer(args.model, 0)
    index = [int(h) for h in args.heads.split(",")]
    heads = [pick_head(layer, h) for h in index]
    clip = read_clip("demo", size=args.size, colour=True)
    frames = np.moveaxis(clip.frames[np.linspace(0, len(clip.frames) - 1, args.frames).round().astype(int)], -1, 1)
    settings = Settings(steps=args.steps, seeds=1, solver=args.solver)
    shared = losses(pick_heads(layer, index), frames, settings).mean(axis=0)
    alone = np.array([losses(w, frames[:, c], settings).mean() for c, w in enumerate(heads)])
    print(json.dumps({"model": args.model, "heads": args.heads, "frames": args.frames, "size": args.size,
                      "steps": args.steps, "solver": args.solver, "shared": [float(f"{v:.4g}") for v in shared],
                      "independent": [float(f"{v:.4g}") for v in alone],
                      "ratio": [round(float(v), 3) for v in shared / alone]}))


if __name__ == "__main__":
    main()
