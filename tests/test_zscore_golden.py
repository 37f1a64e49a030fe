"""`--display zscore` stays the reference's pipeline bit for bit: golden outputs made before the sink display.

The golden arrays were made on MADE_ON by `python tests/test_zscore_golden.py` at commit cdce35f, before the
encoding seam existed. XLA is deterministic on one CPU kind and jax version, and there the comparison is exact;
another CPU or jax may round differently, so elsewhere it is to float rounding (losses to 1e-4, pixels to two
levels), and the exact check wants the arrays regenerated there at that commit.
"""
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from badapple_jax import Settings, demo_clip, optimize_frames, pick_head, pick_heads, random_layer
from badapple_jax.display import to_rgb
from badapple_jax.model import ModelConfig

GOLDEN = Path(__file__).parent / "data" / "zscore_golden.npz"
MADE_ON = "AMD EPYC, jax 0.10.2"
CONFIG = ModelConfig(n_layer=2, n_head=8, n_embd=128, n_positions=64, eps=1e-5)
CASES = {  # name -> (settings, colour)
    "embedding": (dict(steps=40, seeds=2), False),
    "headspace_full": (dict(steps=40, seeds=2, solver="headspace", mode="full"), False),
    "colour": (dict(steps=40, seeds=1, solver="headspace"), True),
}


def zscore(**options) -> Settings:
    return Settings(**options, display="zscore")


def run_case(name: str) -> dict:
    options, colour = CASES[name]
    settings = zscore(**options)
    layer = random_layer(CONFIG, 0, seed=1)
    w = pick_heads(layer, (0, 1, 2)) if colour else pick_head(layer, 1)
    frames = demo_clip(size=16, fps=4, seconds=1.5, colour=colour).frames  # [6, 16, 16(, 3)]
    frames = np.moveaxis(frames, -1, 1) if colour else frames
    results = [r for _, r in optimize_frames(w, frames, settings, seed=5, chunk_size=4, progress=False)]
    r = jax.tree.map(lambda *a: np.concatenate(a), *results)
    rgb = to_rgb(settings.encoding(True).picture(r.attention), colour)
    return {"rgb": rgb, "loss": r.last_step_loss, "final_loss": r.loss}  # the golden file's names, from before


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").is_file() else "unknown CPU"
    return f"{cpu}, jax {jax.__version__}"


@pytest.mark.parametrize("name", CASES)
def test_zscore_display_is_bit_identical_to_the_golden_run(name):
    with np.load(GOLDEN) as golden:
        expected = {k.removeprefix(name + "/"): golden[k] for k in golden.files if k.startswith(name + "/")}
    got = run_case(name)
    exact = machine() == MADE_ON
    for key, want in expected.items():
        if exact:
            np.testing.assert_array_equal(got[key], want, err_msg=f"{name}: {key}")
        elif key == "rgb":
            assert np.abs(got[key].astype(int) - want).max() <= 2, f"{name}: {key} (on {machine()}, not {MADE_ON})"
        else:
            np.testing.assert_allclose(got[key], want, rtol=1e-4, err_msg=f"{name}: {key} (on {machine()})")


if __name__ == "__main__":  # regenerate (only on the commit the docstring names)
    arrays = {f"{name}/{k}": v for name in CASES for k, v in run_case(name).items()}
    np.savez_compressed(GOLDEN, **arrays)
    print(f"wrote {GOLDEN}: {', '.join(arrays)}", file=sys.stderr)
