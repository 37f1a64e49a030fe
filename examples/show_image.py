"""Show any image in any attention head of a frozen GPT-2.

    python examples/show_image.py PICTURE [--model random:gpt2-xl] [--layer 0] [--head 0]
        [--size 256] [--steps 400] [--seeds 1] [--solver headspace] [-o attention.png]

Optimises one input embedding X [size, n_embd] so that the head's size x size attention map shows
PICTURE (gray, resized), then writes the target and the head's attention map side by side and
prints the loss of X through the ordinary kernel. Only the lower triangle (j <= i) can show: the
head is causal. `--solver headspace` works at layer 0 only; use `--solver embedding` above it.
"""
import argparse
import sys

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

import badapple_jax as bj


def read_gray(path, size):  # any Pillow-readable image -> [size, size] float32 in [0, 1], white = 1
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", help="any image Pillow can read")
    p.add_argument("--model", default="random:gpt2-xl", help="hub id, local checkpoint dir, or random:gpt2[-xl]")
    p.add_argument("--layer", type=int, default=0)
    p.add_argument("--head", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="T: the map is T x T tokens")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--solver", choices=("headspace", "embedding"), default="headspace")
    p.add_argument("-o", "--output", default="attention.png")
    args = p.parse_args()
    try:
        frame = read_gray(args.image, args.size)
        layer, info = bj.load_layer(args.model, args.layer)
        w = bj.pick_head(layer, args.head)
        settings = bj.Settings(steps=args.steps, seeds=args.seeds, solver=args.solver)
        _, result = next(bj.optimize_frames(bj.plan(w, frame.shape[-1], 1, settings, chunk_size=1), frame[None]))
    except (bj.BadInputError, OSError) as err:
        print(f"show_image: error: {err}", file=sys.stderr)
        return 2
    shown = bj.to_rgb(result.picture)[0]  # [T, T, 3] uint8, magma: what the display shows

    fig = Figure(figsize=(8, 4.4), layout="constrained")
    titles = ("target", f"{info.name}  layer {args.layer}  head {args.head}")
    for ax, image, title in zip(fig.subplots(1, 2), (frame, shown), titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"{result.psnr[0]:.1f} dB PSNR, SSIM {result.ssim[0]:.3f}, loss {result.loss[0]:.3g}  "
                 f"({settings.display} display, {args.solver}, {args.steps} steps)")
    fig.savefig(args.output, dpi=100, bbox_inches="tight")
    print(info.source)
    print(f"loss {result.loss[0]:.6g}")
    print(f"psnr {result.psnr[0]:.2f} dB, ssim {result.ssim[0]:.4f}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
