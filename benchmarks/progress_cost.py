"""What the progress bar's reports cost the step (issue 22): one chunk compiled with and without them, run
alternately in one process, the fastest of each printed as a ratio. The reports are `jax.debug.callback`s
(progress.py), about 20 per Adam phase.

    python benchmarks/progress_cost.py [--model random:gpt2-xl] [--size 256] [--chunk 4] [--repeats 5]
"""
import argparse
import json
import time

import jax
import numpy as np

import badapple_jax as bj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:gpt2-xl")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    w = bj.pick_head(bj.load_layer(args.model)[0], 0)
    settings = bj.preset_settings("fast", 0)
    frames = bj.read_clip("demo", size=args.size, max_frames=args.chunk).frames
    chunk = bj.Chunk(frames, np.arange(args.chunk, dtype=np.int32), np.ones(args.chunk, bool))
    programs = {on: bj.compile_chunk(w, args.size, args.chunk, settings, options=bj.PhaseOptions(progress=on))[0] for on in (False, True)}
    best = {False: np.inf, True: np.inf}
    for _ in range(args.repeats):
        for on, program in programs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(program(chunk, 0).x)
            best[on] = min(best[on], time.perf_counter() - t0)
    print(json.dumps({"device": jax.devices()[0].device_kind, "model": args.model, "size": args.size,
                      "chunk": args.chunk, "steps": settings.steps, "seconds_without": best[False],
                      "seconds_with": best[True], "ratio": best[True] / best[False]}))


if __name__ == "__main__":
    main()
