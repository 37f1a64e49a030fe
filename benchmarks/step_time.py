"""Time per frame-step of the compiled optimiser (compile excluded).

    python benchmarks/step_time.py [--model random:gpt2-xl] [--frames 8] [--seeds 3] [--steps 200]

A frame-step is one Adam update of one frame's embedding (one start); a frame at the default
settings costs seeds * (steps // 4) + (steps - steps // 4) = 2250 of them.
"""
import argparse
import json
import time

import jax

from badapple_jax import Settings, compile_chunk, load_layer, optimize_frames, pick_head, read_clip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random:gpt2-xl")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--solver", default="embedding", choices=("embedding", "headspace"))
    args = p.parse_args()

    w = pick_head(load_layer(args.model)[0], 0)
    frames = read_clip("demo", size=args.size, max_frames=args.frames).frames
    settings = Settings(steps=args.steps, seeds=args.seeds, solver=args.solver)
    program, compile_seconds = compile_chunk(w, args.size, len(frames), settings)
    frame_steps = len(frames) * settings.frame_steps
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for _ in optimize_frames(program, frames):
            pass
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(json.dumps({
        "model": args.model, "solver": args.solver, "frames": len(frames), "seeds": args.seeds, "steps": args.steps, "size": args.size,
        "device": jax.devices()[0].device_kind, "compile_seconds": round(compile_seconds, 2),
        "seconds": [round(t, 3) for t in times], "ms_per_frame_step": round(1e3 * best / frame_steps, 3),
        "projected_seconds_per_frame_at_defaults": round(best / frame_steps * Settings().frame_steps, 2),
    }, indent=1))


if __name__ == "__main__":
    main()
