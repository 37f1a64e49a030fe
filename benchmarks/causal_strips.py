"""The causal strips (issue 24, item 1): the step's time with the loss computing every logit against only the row
strips its mask reaches (`loss.qk_loss`), interleaved in one process.

    python benchmarks/causal_strips.py [--preset fast] [--strips 1 2 4 8] [--repeat 3] [--out benchmarks/causal_strips_cpu.json]

Variant "all" is the loss before the strips: every logit of q k^T computed (`solver.logits`), then masked
(`loss.frame_loss`); "n" is `qk_loss` with n strips (1: the rows the mask counts, every column). Each variant's
program runs one chunk of Bad Apple frames at --steps and 2x --steps (compile excluded); the difference over
the frame-steps is its time per frame-step, free of the fixed part. Variants run in turn, --repeat rounds; each
time is the fastest of its rounds (a loaded machine only ever slows a run). Beside the wall clock, the CPU time of
this process (both XLA threads), which a machine shared with other jobs distorts less. The loss of each variant's last
chunk is kept beside it (mean, and the largest change of a frame's): the strips change only float rounding, which
hundreds of steps at --preset fast's learning rate amplify frame by frame (percents), not on average.
"""
import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

import badapple_jax as bj
from badapple_jax import chunks, loss, optimize


def all_logits(p, w, solver, problem):  # the loss before the strips: [B, L, P] -> [B, H]
    return loss.frame_loss(jax.vmap(solver.logits, in_axes=(0, None))(p, w), problem.d, problem.mask)


def compiled(variant, w, frames, settings):
    """The chunk program of `variant` ("all" or a strip count), compiled afresh (the program cache is keyed by
    shapes and plan, not by the loss)."""
    chunks._programs.clear()
    jax.clear_caches()  # and the traces: the loss is read when optimize_chunk is traced
    strips, head_losses = loss.STRIPS, optimize.head_losses
    try:
        if variant == "all":
            optimize.head_losses = all_logits
        else:
            loss.STRIPS = int(variant)
        return bj.plan(w, frames.shape[-1], len(frames), settings, chunk_size=len(frames))
    finally:
        loss.STRIPS, optimize.head_losses = strips, head_losses


def run(program, frames):  # -> (wall seconds, CPU seconds of this process, losses [B])
    t0, c0 = time.perf_counter(), time.process_time()
    (_, result), = bj.optimize_frames(program, frames)
    return time.perf_counter() - t0, time.process_time() - c0, np.asarray(result.loss)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random:gpt2-xl")
    p.add_argument("--input", default="badapple")
    p.add_argument("--start", type=int, default=960)
    p.add_argument("--frames", type=int, default=16, help="one chunk (the CPU's automatic chunk size)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--preset", default="fast")
    p.add_argument("--mode", default=None, help="the encoding's mode (default: the preset's)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--strips", nargs="+", default=["2", "3", "4", "8"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("benchmarks/causal_strips_cpu.json"))
    args = p.parse_args(argv)

    w = bj.pick_head(bj.load_layer(args.model)[0], 0)
    frames = bj.read_clip(args.input, size=args.size, fps=15.0, start=args.start, max_frames=args.frames).frames
    base = bj.preset_settings(args.preset, 0, **({"mode": args.mode} if args.mode else {}))
    variants = ["all", *args.strips]
    steps = (args.steps, 2 * args.steps)
    programs = {(v, n): compiled(v, w, frames, dataclasses.replace(base, steps=n)) for v in variants for n in steps}
    times, cpu = {key: [] for key in programs}, {key: [] for key in programs}
    losses = {}
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        for key, program in programs.items():
            seconds, cpu_seconds, losses[key] = run(program, frames)
            times[key].append(seconds)
            cpu[key].append(cpu_seconds)
    frame_steps = len(frames) * (dataclasses.replace(base, steps=steps[1]).frame_steps
                                 - dataclasses.replace(base, steps=steps[0]).frame_steps)
    per_step = {v: (min(times[v, steps[1]]) - min(times[v, steps[0]])) / frame_steps for v in variants}
    cpu_step = {v: (min(cpu[v, steps[1]]) - min(cpu[v, steps[0]])) / frame_steps for v in variants}
    result = {"model": args.model, "preset": args.preset, "mode": base.mode, "solver": base.solver,
              "frames": len(frames), "steps": steps, "repeat": args.repeat, "load_before": load_before,
              "load_after": os.getloadavg(), "seconds": {f"{v}@{n}": t for (v, n), t in times.items()},
              "ms_per_frame_step": {v: per_step[v] * 1e3 for v in variants},
              "ratio_to_all": {v: per_step[v] / per_step["all"] for v in variants},
              "cpu_seconds": {f"{v}@{n}": t for (v, n), t in cpu.items()},
              "cpu_ms_per_frame_step": {v: cpu_step[v] * 1e3 for v in variants},
              "cpu_ratio_to_all": {v: cpu_step[v] / cpu_step["all"] for v in variants},
              "mean_loss": {v: float(np.mean(losses[v, steps[1]])) for v in variants},
              "max_rel_loss_change": {v: float(np.max(np.abs(losses[v, steps[1]] / losses["all", steps[1]] - 1)))
                                      for v in variants}}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
