"""Where a frame's fixed part goes (issue 24, item 2): the work of `render --preset fast` per frame besides its
Adam steps, timed piece by piece on one chunk of Bad Apple frames, in one process.

    python benchmarks/fixed_part.py [--frames 16] [--repeat 5] [--out benchmarks/fixed_part_cpu.json]

Device side (jitted, compile excluded; each the fastest of --repeat runs over the chunk):
    starts        the head-space solver's random starts as drawn now, in head space (`headspace.random_z`)
    starts_through_x  as drawn before 2026-12-07: X ~ N(0, s^2) [L, n_embd] drawn, then projected to z
    finish        the lift z -> X, the ordinary kernel's logits and softmax, and the losses multi_start reports
    finish_twice  the same with the kernel's logits computed a second time for the reported loss (before 2026-12-07)
    program_fixed the whole chunk program at 2 steps less 2/200 of its 200-step time's step part: what the
                  program spends besides its steps ((t(steps) - t(2 steps)) scaled), the transfer to the host included
Host side (as `chunks.finish_chunk` and `render.run` do per chunk):
    check, picture, psnr, ssim, to_rgb, png   the lift check, the display's picture, fidelity, colours, PNG bytes
All in ms per frame.
"""
import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np

import badapple_jax as bj
from badapple_jax import chunks, fidelity
from badapple_jax.display import to_rgb
from badapple_jax.headspace import to_head_space
from badapple_jax.optimize import initial_embeddings, start_keys


def best(f, repeat):  # fastest of `repeat` calls of f, seconds (after one warm-up call)
    jax.block_until_ready(f())
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(f())
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random:gpt2-xl")
    p.add_argument("--input", default="badapple")
    p.add_argument("--start", type=int, default=960)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("benchmarks/fixed_part_cpu.json"))
    args = p.parse_args(argv)

    w = bj.pick_head(bj.load_layer(args.model)[0], 0)
    frames = bj.read_clip(args.input, size=args.size, fps=15.0, start=args.start, max_frames=args.frames).frames
    settings = bj.preset_settings("fast", 0)
    B, T = len(frames), args.size
    encoding = settings.encoding(w.config.causal)
    L, E = encoding.tokens(T), w.config.n_embd
    solver = bj.make_solver("headspace", w)
    d = encoding.desired(frames)[:, None]
    mask = encoding.mask(T)
    index = jnp.arange(B)
    load_before = os.getloadavg()

    scale = np.float32(settings.init_scale)
    starts = jax.jit(lambda index, solver: solver.init(start_keys(0, index, 1), w, d[:, 0], scale))
    through_x = jax.jit(lambda index, solver: jax.vmap(jax.vmap(to_head_space, in_axes=(0, None)), in_axes=(0, None))(
        initial_embeddings(0, index, 1, L, E, scale), solver))
    p0 = starts(index, solver)[0]

    def finish(twice):
        @jax.jit
        def run(p, solver):
            x = jax.vmap(solver.to_x)(p)
            A = jax.vmap(bj.Embedding().logits, in_axes=(0, None))(x, w)
            problem = bj.Problem(d, mask, np.ones(B, bool))
            per_head = (bj.optimize.head_losses(x, w, bj.Embedding(), problem) if twice
                        else bj.frame_loss(A, d, mask))
            return (x, jax.nn.softmax(jnp.where(mask, A, -jnp.inf), -1), per_head,
                    bj.optimize.frame_losses(p, w, solver, problem))
        return lambda: run(p0, solver)

    ms = lambda s: s / B * 1e3  # noqa: E731  seconds per chunk -> ms per frame
    out = {}
    for _ in range(2):  # in turn, twice: the fastest of all
        for name, f in (("starts", lambda: starts(index, solver)), ("starts_through_x", lambda: through_x(index, solver)),
                        ("finish", finish(False)), ("finish_twice", finish(True))):
            out[name] = min(out.get(name, np.inf), ms(best(f, args.repeat)))

    programs = {n: bj.plan(w, T, B, dataclasses.replace(settings, steps=n), chunk_size=B) for n in (4, 200)}
    run = lambda n: lambda: list(bj.optimize_frames(programs[n], frames))  # noqa: E731
    t4, t200 = best(run(4), args.repeat), best(run(200), args.repeat)
    step = (t200 - t4) / 196  # one step of the chunk
    out["program_fixed"] = ms(t4 - 4 * step)
    out["step_ms_per_frame_step"] = ms(step)
    out["chunk_200"] = ms(t200)

    result = chunks._run(programs[200], frames, np.arange(B), 0, programs[200].mesh, 0)
    out["check"] = ms(best(lambda: solver.check(result, np.arange(B)), args.repeat))
    attention = np.where(np.isfinite(result.attention), result.attention, 0.0)
    out["picture"] = ms(best(lambda: np.asarray(encoding.picture(attention)), args.repeat))
    picture = np.asarray(encoding.picture(attention))
    region = encoding.region(T)
    out["psnr"] = ms(best(lambda: fidelity.psnr(picture, frames, region), args.repeat))
    out["ssim"] = ms(best(lambda: fidelity.ssim(picture, frames, region), args.repeat))
    out["to_rgb"] = ms(best(lambda: to_rgb(picture), args.repeat))
    rgb = to_rgb(picture)
    out["png"] = ms(best(lambda: [iio.imwrite("<bytes>", f, extension=".png") for f in rgb], args.repeat))
    out["host_total"] = sum(out[k] for k in ("check", "picture", "psnr", "ssim", "to_rgb", "png"))
    result_json = {"model": args.model, "frames": B, "size": T, "repeat": args.repeat, "load_before": load_before,
                   "load_after": os.getloadavg(), "ms_per_frame": out}
    args.out.write_text(json.dumps(result_json, indent=1))
    print(json.dumps(result_json, indent=1))


if __name__ == "__main__":
    main()
