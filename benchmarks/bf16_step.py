"""bf16 on the CPU (issue 24, item 3): the head-space step of --preset fast in fp32, compiled under
`jax.default_matmul_precision("bfloat16")` (what `Settings.precision` bf16 does), and with q and k cast to bfloat16
before the loss's logits (float32 accumulation), interleaved in one process.

    python benchmarks/bf16_step.py [--steps 40] [--repeat 10] [--out benchmarks/bf16_step_cpu.json]

Each variant is `run_phase` (Adam) over one chunk of Bad Apple frames (16, from 960) for --steps steps, jitted, run in turn
--repeat times; the fastest wall and CPU (this process) time of each, per frame-step, and the largest change of the
final parameters against fp32 (0: the same program).
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
from badapple_jax import loss, optimize


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random:gpt2-xl")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("benchmarks/bf16_step_cpu.json"))
    args = p.parse_args(argv)
    w = bj.pick_head(bj.load_layer(args.model)[0], 0)
    frames = bj.read_clip("badapple", size=256, fps=15.0, start=960, max_frames=16).frames
    s = bj.preset_settings("fast", 0)
    encoding = s.encoding(True)
    mask, d = encoding.mask(256), encoding.desired(frames)[:, None]
    solver = bj.make_solver("headspace", w)
    valid = np.ones(len(frames), bool)
    p0 = jax.random.normal(jax.random.key(0), (len(frames), encoding.tokens(256), solver.width(w))) * 3
    fp32_loss = loss.qk_loss

    def bf16_inputs(q, k, d, mask, n=None):
        return fp32_loss(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), d, mask, n)

    programs = {}
    for name in ("fp32", "bf16-precision", "bf16-inputs"):
        optimize.qk_loss = bf16_inputs if name == "bf16-inputs" else fp32_loss
        step = jax.jit(lambda p, d: optimize.run_phase(p, w, solver, bj.Problem(d, mask, valid), s, args.steps)[0])
        with jax.default_matmul_precision("bfloat16" if name == "bf16-precision" else "float32"):
            programs[name] = step.lower(p0, d).compile()
        jax.clear_caches()  # the next variant is traced afresh
    optimize.qk_loss = fp32_loss
    final = {name: f(p0, d) for name, f in programs.items()}
    wall, cpu = {n: [] for n in programs}, {n: [] for n in programs}
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        for name, f in programs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f(p0, d).block_until_ready()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    per = lambda t: min(t) / args.steps / len(frames) * 1e3  # noqa: E731  ms per frame-step
    result = {"frames": len(frames), "steps": args.steps, "repeat": args.repeat, "load_before": load_before,
              "load_after": os.getloadavg(),
              "ms_per_frame_step": {n: per(wall[n]) for n in programs},
              "ratio_to_fp32": {n: per(wall[n]) / per(wall["fp32"]) for n in programs},
              "cpu_ms_per_frame_step": {n: per(cpu[n]) for n in programs},
              "cpu_ratio_to_fp32": {n: per(cpu[n]) / per(cpu["fp32"]) for n in programs},
              "max_abs_change_of_p": {n: float(jnp.abs(final[n] - final["fp32"]).max()) for n in programs},
              "max_abs_p": float(jnp.abs(final["fp32"]).max())}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
