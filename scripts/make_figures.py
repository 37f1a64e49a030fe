"""Make the README's figures: targets above the attention maps that display them, and a video still.

    python scripts/make_figures.py WORKDIR [--input demo] [--out docs/demo.png] [--still VIDEO.mp4 --frame 20]

WORKDIR is the work directory of a finished `badapple-jax render` of the same input and size;
`--still` saves one frame of a rendered video (e.g. a --side-by-side one) beside `--out`.
"""
import argparse
from pathlib import Path

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from badapple_jax import read_clip  # noqa: E402
from badapple_jax.metrics import read  # noqa: E402
from badapple_jax.workdir import WorkDir  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--input", default="demo")
    parser.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--still", type=Path, help="a rendered video to take one frame of")
    parser.add_argument("--frame", type=int, default=20)
    args = parser.parse_args()

    work = WorkDir(args.workdir)
    metrics = read(work)
    job = metrics["settings"]
    clip = read_clip(args.input, size=job["size"], fps=job["fps"], max_frames=job["max_frames"])
    loss, psnr = np.asarray(metrics["per_frame_loss"]), np.asarray(metrics["per_frame_psnr"])
    picks = np.linspace(0, len(loss) - 1, args.columns).round().astype(int)
    fig, axes = plt.subplots(2, args.columns, figsize=(2.2 * args.columns, 5.0), squeeze=False, layout="constrained")
    for col, i in enumerate(picks):
        axes[0, col].imshow(clip.frames[i], cmap="gray", vmin=0, vmax=1)
        axes[0, col].set_title(f"frame {i}", fontsize=9)
        axes[1, col].imshow(iio.imread(work.frame(i)))
        axes[1, col].set_title(f"{psnr[i]:.1f} dB, loss {loss[i]:.2g}", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    model = metrics["model"]
    fig.suptitle(f"target (top) and layer {job['layer']} head {job['head']} attention of {model['name']} (bottom, "
                 f"{metrics['display']} display)",
                 fontsize=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    if args.still:
        still = args.out.with_name(args.still.stem + ".png")
        iio.imwrite(still, iio.imread(args.still, index=args.frame))
        print(f"wrote {still}")


if __name__ == "__main__":
    main()
