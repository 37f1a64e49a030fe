"""Check a finished render against Hugging Face transformers: every written frame must be the attention map that
transformers' own model (eager attention) computes from the saved embeddings, pictured as the display says.

    python scripts/check_with_transformers.py WORKDIR

The render must have used --save-embeddings, one head (no --color) and one map per frame (--mode causal or quarter,
not full), with a model transformers can load offline: `minilm`, a local directory, or random:NAME weights
(exported as a checkpoint first, as `badapple-jax export` does). Prints the largest difference per frame in gray
levels (a PNG holds 256 magma bins: within 1/256 is equal) and exits 1 if any frame differs by more than one bin.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from badapple_jax.display import gray_of
from badapple_jax.encoding import make_encoding
from badapple_jax.metrics import read
from badapple_jax.weights import MINILM, export_checkpoint, minilm_dir
from badapple_jax.workdir import WorkDir

TOLERANCE = 1 / 256 + 1e-4  # one magma bin, and float rounding


def attentions(model_dir: Path, x: np.ndarray, layer: int, head: int) -> np.ndarray:  # [N, L, E] -> [N, L, L]
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        return np.stack([model(inputs_embeds=torch.from_numpy(e)[None], output_attentions=True)
                         .attentions[layer][0, head].numpy() for e in x])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdir", type=Path)
    args = p.parse_args(argv)
    work = WorkDir(args.workdir)
    metrics = read(work)
    job, config = metrics["settings"], metrics["model"]["config"]
    s = job["settings"]
    problems = [(job["save_embeddings"], "it was rendered without --save-embeddings"),
                (not job["color"] and s["mode"] != "full", "only one-head renders of one map per frame are checked")]
    for ok, why in problems:
        if not ok:
            print(f"check_with_transformers: cannot check {args.workdir}: {why}.", file=sys.stderr)
            return 2
    x = np.load(work.embeddings)  # [N, L, E]
    with tempfile.TemporaryDirectory() as tmp:
        if metrics["model"]["is_random"]:
            model_dir = export_checkpoint(job["model"], Path(tmp) / "model", job["layer"])
        else:
            model_dir = minilm_dir() if job["model"] == MINILM else Path(job["model"]).expanduser()
        a = attentions(model_dir, x, job["layer"], job["head"])
    encoding = make_encoding(s["display"], s["mode"], config["causal"], s["sink_z"], s["sink_black"])
    expected = encoding.picture(a)  # [N, T, T]
    pngs = work.frames()
    worst = [float(np.abs(gray_of(iio.imread(png), False) - v).max()) for png, v in zip(pngs, expected)]
    print(f"{len(pngs)} frames of {job['model']} layer {job['layer']} head {job['head']} ({s['display']} display, "
          f"{s['mode']} mode) "
          f"against transformers' {config['family']} attentions: largest difference {max(worst) * 256:.2f} gray "
          f"levels of 256 (per frame: {', '.join(f'{d * 256:.2f}' for d in worst)})")
    return 0 if len(pngs) == len(x) and max(worst) <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
