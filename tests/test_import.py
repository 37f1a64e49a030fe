"""Importing the library changes nothing in the caller's process (issue 21): no environment variable, no warnings
filter, no signal handler; the command sets what it needs for itself."""
import os
import subprocess
import sys

PROBE = """
import os, signal, sys, warnings
# what our dependencies do on import (JAX sets TF_CPP_MIN_LOG_LEVEL, scipy.special a warnings filter) is theirs
import flax, huggingface_hub, imageio.v3, imageio_ffmpeg, jax, matplotlib, optax, PIL, safetensors, tqdm
import numpy as np, scipy.ndimage, scipy.special, skimage.metrics
environ, filters = dict(os.environ), list(warnings.filters)
handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
import badapple_jax as bj
clip = bj.demo_clip(size=8, seconds=0.2)
bj.write_video(np.zeros((2, 8, 8, 3), np.uint8), sys.argv[1], fps=15)  # ffmpeg, forked beside JAX
assert bj.read_clip(sys.argv[1], size=8).frames.shape == (2, 8, 8)
assert dict(os.environ) == environ, set(os.environ.items()) ^ set(environ.items())
assert list(warnings.filters) == filters, [f for f in warnings.filters if f not in filters]
assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers
print("untouched")
"""


def test_the_jitted_core_imports_no_drawing_library():
    probe = ("import sys, badapple_jax.optimize, badapple_jax.chunks, badapple_jax.encoding; "
             "print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "False", done.stderr


def test_importing_and_using_the_library_leaves_the_process_as_it_was(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "v.mp4")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "untouched", done.stderr
    assert "os.fork() was called" not in done.stderr  # ffmpeg's fork is silenced where it happens, not globally
