"""What one optimised embedding does to the other heads of its layer.

    python examples/head_grid.py [PICTURE] [--frame 15] [--model random:gpt2-xl] [--head 0]
        [--size 256] [--steps 400] [--solver headspace] [-o head_grid.png]

Optimises X so that head `--head` of layer 0 shows PICTURE (default: frame `--frame` of the built-in
demo clip), then runs that X through EVERY head of layer 0 and saves all their attention maps in a
grid, the optimised head outlined, each titled with its loss against the target. The other heads
read the same LayerNorm output through their own Q/K projections, so they see little of the image.
"""
import argparse
import math
import sys

import jax
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

import badapple_jax as bj


def read_gray(path, size):  # any Pillow-readable image -> [size, size] float32 in [0, 1], white = 1
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255


def target(args):  # -> [T, T]: the picture, or the demo clip's frame
    if args.image:
        return read_gray(args.image, args.size)
    frames = bj.demo_clip(size=args.size).frames
    if not 0 <= args.frame < len(frames):
        raise bj.BadInputError(f"--frame must be in 0..{len(frames) - 1}, got {args.frame}")
    return frames[args.frame]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", nargs="?", help="any image Pillow can read (default: a demo clip frame)")
    p.add_argument("--frame", type=int, default=15, help="demo clip frame (0..29) when no image is given")
    p.add_argument("--model", default="random:gpt2-xl", help="hub id, local checkpoint dir, or random:gpt2[-xl]")
    p.add_argument("--head", type=int, default=0, help="the head X is optimised for")
    p.add_argument("--size", type=int, default=256, help="T: each map is T x T tokens")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--solver", choices=("headspace", "embedding"), default="headspace")
    p.add_argument("-o", "--output", default="head_grid.png")
    args = p.parse_args()
    try:
        frame = target(args)
        layer, info = bj.load_layer(args.model, 0)
        settings = bj.Settings(steps=args.steps, seeds=1, solver=args.solver)
        w = bj.pick_head(layer, args.head)
        _, result = next(bj.optimize_frames(bj.plan(w, frame.shape[-1], 1, settings, chunk_size=1), frame[None]))
    except (bj.BadInputError, OSError) as err:
        print(f"head_grid: error: {err}", file=sys.stderr)
        return 2
    n_head = layer.config.n_head
    heads = bj.pick_heads(layer, range(n_head))
    causal = layer.config.causal
    encoding = settings.encoding(causal)
    logits = jax.vmap(bj.head_logits, in_axes=(None, 0))(result.x[0], heads)  # [n_head, L, L]
    losses = bj.frame_loss(logits, encoding.desired(frame), encoding.mask(args.size))  # [n_head]
    shown = bj.to_rgb(encoding.picture(np.asarray(bj.masked_softmax(logits, causal))))  # [n_head, T, T, 3] uint8

    cols = math.ceil(math.sqrt(n_head))
    rows = math.ceil(n_head / cols)
    fig = Figure(figsize=(2 * cols, 2.2 * rows + 0.4), layout="constrained")
    for h in range(n_head):
        ax = fig.add_subplot(rows, cols, h + 1, xticks=[], yticks=[])
        ax.imshow(shown[h], interpolation="nearest")
        ax.set_title(f"head {h}  loss {losses[h]:.3g}", fontsize=8, color="red" if h == args.head else "black")
        if h == args.head:
            ax.spines[:].set(color="red", linewidth=3)
    fig.suptitle(f"{info.name} layer 0: X optimised for head {args.head} ({args.solver}, {args.steps} steps)")
    fig.savefig(args.output, dpi=100, bbox_inches="tight")
    print(info.source)
    print(f"heads {n_head}")
    others = np.delete(np.asarray(losses), args.head)
    print(f"loss {result.loss[0]:.6g} (head {args.head}); other heads: median {np.median(others):.4f}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
