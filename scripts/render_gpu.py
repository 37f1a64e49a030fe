"""Render on a CUDA GPU with the reference's settings, after checking that JAX really sees the GPU.

    pip install -e '.[cuda]'
    python scripts/render_gpu.py badapple.mp4 -o badapple_gpt2.mp4 [any other render option]

Every option of `badapple-jax render` passes through; the defaults are the reference's
(gpt2-xl, layer 0 head 0, 256x256, 15 fps, 1500 steps, 3 seeds, chunks of 64 frames).
"""
import sys

import jax

from badapple_jax.cli import main


def gpu_or_exit() -> None:
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        found = ", ".join(sorted({d.platform for d in jax.devices()}))
        sys.exit(
            f"render_gpu: JAX sees no GPU (only: {found}). Install the CUDA build with "
            "pip install -e '.[cuda]' and check nvidia-smi; or run badapple-jax render on the CPU."
        )
    print(f"render_gpu: rendering on {len(gpus)} x {gpus[0].device_kind}", file=sys.stderr)


if __name__ == "__main__":
    gpu_or_exit()
    sys.exit(main(["render", *sys.argv[1:]]))
