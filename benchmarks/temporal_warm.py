"""Fewer steps per frame (issue 24): does a frame started from its predecessor's solution, or a shorter cold run,
reach the fast preset's picture? Both are ways to real time; both are measured here on the same frames.

    python benchmarks/temporal_warm.py [--frames 96] [--out benchmarks/temporal_warm_cpu.json]

Bad Apple frames from 960 at 256x256, random:gpt2-xl layer 0 head 0, --preset fast (head space, sink display).
Cold: every frame from its random start for --steps in (200, 175, 150, 125), 16 frames side by side.
Warm: the frames split into 16 lanes of consecutive frames; a lane's first frame is cold (200 steps), every later
one starts from its predecessor's final z (the z its lifted X shows the head) and runs n steps of one cosine cycle
at peak rate lr (4 steps at 1e-12: the start as it is); the median PSNR is over the warm frames only, beside the cold run's on the same frames.
"""
import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import badapple_jax as bj
from badapple_jax.chunks import shown
from badapple_jax.optimize import Problem, multi_start, start_keys
from badapple_jax.targets import frame_values

LANES = 16


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=96, help="a multiple of 16")
    p.add_argument("--out", type=Path, default=Path("benchmarks/temporal_warm_cpu.json"))
    args = p.parse_args(argv)
    w = bj.pick_head(bj.load_layer("random:gpt2-xl")[0], 0)
    frames = bj.read_clip("badapple", size=256, fps=15.0, start=960, max_frames=args.frames).frames
    fast = bj.preset_settings("fast", 0)
    encoding, solver = fast.encoding(True), bj.make_solver("headspace", w)
    mask = encoding.mask(256)

    @jax.jit
    def run(index, batch, p0, settings):  # p0 None: cold, from the frames' random starts
        problem = Problem(encoding.desired(frame_values(batch)), mask, jnp.ones(batch.shape[0], bool))
        if p0 is None:
            p0 = solver.init(start_keys(0, index, 1), w, problem.d, settings.init_scale)[0]
        return multi_start(w, solver, problem, p0[None], settings)

    def psnr(result, index):  # [B] dB of what the display shows
        return shown(np.asarray(result.attention), frames[index], encoding)[2]

    def with_steps(n, lr=fast.lr):
        return fast.__class__(**{**fast.__dict__, "steps": n, "lr": lr, "lr_min": min(fast.lr_min, lr)})

    cold, report = {}, {"cold": [], "warm": []}
    for steps in (200, 175, 150, 125):
        ps = np.zeros(args.frames)
        for c in range(0, args.frames, LANES):
            index = np.arange(c, c + LANES)
            ps[index] = psnr(run(jnp.asarray(index), frames[index], None, with_steps(steps)), index)
        cold[steps] = ps
        report["cold"].append({"steps": steps, "median_psnr": float(np.median(ps))})
        print(f"cold {steps} steps: median {np.median(ps):.2f} dB", flush=True)
    per_lane = args.frames // LANES
    heads = np.arange(LANES) * per_lane
    rest = np.setdiff1d(np.arange(args.frames), heads)
    for steps, lr in [(4, 1e-12), (25, 0.15), (50, 0.15), (100, 0.05), (100, 0.15), (100, 0.5), (150, 0.5),
                      (200, 0.15), (200, 0.5)]:
        first = run(jnp.asarray(heads), frames[heads], None, fast)
        ps, result, t0 = np.zeros(args.frames), first, time.perf_counter()
        for t in range(1, per_lane):
            index = heads + t
            p0 = jax.vmap(lambda x: bj.to_head_space(x, solver))(result.x)
            result = run(jnp.asarray(index), frames[index], p0, with_steps(steps, lr))
            ps[index] = psnr(result, index)
        row = {"steps": steps, "lr": lr, "median_psnr": float(np.median(ps[rest])),
               "cold_200_median_psnr": float(np.median(cold[200][rest])), "seconds": time.perf_counter() - t0}
        report["warm"].append(row)
        print(f"warm {steps} steps at lr {lr}: median {row['median_psnr']:.2f} dB against cold 200's "
              f"{row['cold_200_median_psnr']:.2f}", flush=True)
    f = frames.astype(np.float64)
    report["consecutive_median_psnr"] = float(np.median(-10 * np.log10(np.mean((f[1:] - f[:-1]) ** 2, axis=(1, 2)))))
    print(f"a frame against its predecessor: median {report['consecutive_median_psnr']:.2f} dB")
    report.update(frames=args.frames, lanes=LANES, load=os.getloadavg())
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
