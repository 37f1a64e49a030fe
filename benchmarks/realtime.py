"""Real time (issue 24): the whole `render --preset fast` command on Bad Apple!!, wall clock, projected to the whole
video and set against the video's own duration; and the roofline line, the step's achieved GFLOP/s beside the
machine's fp32 matmul peak measured in the same run.

    python benchmarks/realtime.py [--input badapple] [--model random:gpt2-xl] [--start 960] [--max-frames 480]
                                  [--short 48] [--out benchmarks/realtime_cpu.json]

The command runs as a user runs it, in a subprocess with a fresh temporary work directory (nothing reused):
`python -m badapple_jax render INPUT -o OUT.mp4 --preset fast --start S --max-frames N -q`, timed from start to
exit (start-up, decode, compile, optimise, pictures, PNGs, encode). It runs twice from the same start, N and
--short frames; the line through the two walls gives the fixed part and the part per frame, and the whole
video is projected as fixed + per frame x --video-frames (3481: Bad Apple!! at 15 fps, 232 s). The fixed part
so measured includes decoding the frames before S (the decoder reads from the video's beginning), which the
whole video does not pay twice: a slight over-estimate. Fidelity is the long run's metrics.json: the median PSNR
over its content frames and the flicker beside the targets'. The default stretch, frames 960-1439, is the
480-frame window (on a 30-frame grid) closest to the whole video in blank frames (25 of 480 against 176 of 3481)
and in mean edge density (busy and simple passages alike).

The roofline: a --matmul-size square fp32 matmul in JAX (fastest of 10 after a warm-up), and the fast preset's
step's matmul FLOPs (`step_flops`: the logits the loss computes, its causal strips) over its time per frame-step,
from one chunk of --roofline-frames (8, the command's CPU chunk) run at --roofline-steps and twice as many (the
difference removes the fixed part), compiled as the command compiles it (its solver's CPU matmul path, cpu.py).
Each run's CPU seconds (the command and its children) are recorded beside its wall. The ratio to the video's
duration is printed last.
"""
import argparse
import dataclasses
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import badapple_jax as bj
from badapple_jax import loss
from badapple_jax.metrics import read
from badapple_jax.workdir import WorkDir


def render_wall(args, frames: int) -> dict:
    """One fresh `render` of `frames` frames from --start: its wall seconds and its metrics.json."""
    with tempfile.TemporaryDirectory(prefix="realtime-") as tmp:
        out = Path(tmp) / "out.mp4"
        command = [sys.executable, "-m", "badapple_jax", "render", args.input, "-o", str(out), "--preset", "fast",
                   "--model", args.model, "--size", str(args.size), "--fps", str(args.fps),
                   "--start", str(args.start), "--max-frames", str(frames), "-q", *shlex.split(args.render_args)]
        t0, cpu0 = time.perf_counter(), children_cpu()
        subprocess.run(command, check=True, env=same_package())
        wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
        metrics = read(WorkDir.beside(out))
    keys = ("frames", "content_frames", "blank_frames", "median_psnr", "pooled_psnr", "flicker", "target_flicker",
            "compile_seconds", "optimize_seconds", "chunk_size")
    return {"command": " ".join(command[1:]), "wall_seconds": wall, "seconds_per_frame": wall / frames,
            "cpu_seconds": cpu,
            **{k: metrics[k] for k in keys}}


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children and theirs (the command's ffmpeg too): a
    second measure beside the wall, less moved by what else runs on the machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def same_package() -> dict:
    """The environment with this process's badapple_jax first on the child's path (the tree being measured)."""
    path = [str(Path(bj.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)))


def projection(long: dict, short: dict, video_frames: int) -> dict:
    """The line wall = fixed + per_frame x frames through the two runs, and the whole video on it."""
    per_frame = (long["wall_seconds"] - short["wall_seconds"]) / (long["frames"] - short["frames"])
    fixed = long["wall_seconds"] - per_frame * long["frames"]
    return {"fixed_seconds": fixed, "per_frame_seconds": per_frame,
            "projected_wall_seconds": fixed + per_frame * video_frames}


def matmul_peak(n: int) -> float:
    """GFLOP/s of an n x n fp32 matmul in JAX: 2 n^3 FLOPs, the fastest of 10 after a warm-up."""
    a, b = (jax.random.normal(jax.random.key(i), (n, n), jnp.float32) for i in (0, 1))
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()
    best = min(timed(lambda: mm(a, b).block_until_ready()) for _ in range(10))
    return 2 * n**3 / best / 1e9


def timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def step_flops(mask, P: int, solver: str) -> dict:
    """Matmul FLOPs of one Adam step of one frame in the fast preset's solver, L tokens (`mask` [L, L], the
    encoding's), P = 2 d_head numbers per row (a multiply-add counts 2):
    - the logits q k^T the loss computes, the row strips of `loss.strips` (n rows by c columns each, of D = P / 2),
      and their two gradients dS k and dS^T q: 6 D sum(n c); all L^2 of them: 6 L^2 D (`all_logits_flops`);
    - head space (`headspace`) only: the projection y = z SVt, [L, P] x [P, P]: 2 L P^2, and its gradient
      dy SVt^T: 2 L P^2 (SVt is frozen); the q/k solver (`qk`) optimises y itself.
    Elementwise work (softmax, loss, Adam) is not counted."""
    D, L = P // 2, len(mask)
    logits = 6 * D * sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in loss.strips(mask, loss.strip_count(len(mask))))
    projection = 4 * L * P * P if solver == "headspace" else 0
    return {"logits_flops": logits, "all_logits_flops": 6 * L * L * D, "projection_flops": projection,
            "step_flops": logits + projection}


def chunk_seconds(w, frames: np.ndarray, settings) -> float:
    """Seconds of `optimize_frames` over `frames` (one chunk), compile excluded: the faster of two runs."""
    program = bj.plan(w, frames.shape[-1], len(frames), settings, chunk_size=len(frames))
    return min(timed(lambda: list(bj.optimize_frames(program, frames))) for _ in range(2))


def roofline(args) -> dict:
    """The machine's matmul peak and the fast preset's step: FLOPs, time per frame-step, achieved GFLOP/s."""
    peak = matmul_peak(args.matmul_size)
    w = bj.pick_head(bj.load_layer(args.model)[0], 0)
    frames = bj.read_clip(args.input, size=args.size, fps=args.fps, start=args.start,
                          max_frames=args.roofline_frames).frames
    settings = bj.preset_settings("fast", 0)
    n = args.roofline_steps
    t1, t2 = (chunk_seconds(w, frames, dataclasses.replace(settings, steps=s)) for s in (n, 2 * n))
    step = (t2 - t1) / n / len(frames)  # seconds per frame-step
    encoding = settings.encoding(w.config.causal)
    L = encoding.tokens(args.size)
    flops = step_flops(encoding.mask(args.size), 2 * w.config.d_head, settings.solver)
    return {"matmul_size": args.matmul_size, "matmul_gflops": peak, "frames": len(frames), "steps": [n, 2 * n],
            "chunk_seconds": [t1, t2], "tokens": L, **flops, "step_ms_per_frame": step * 1e3,
            "step_gflops": flops["step_flops"] / step / 1e9, "logits_gflops": flops["logits_flops"] / step / 1e9,
            "effective_gflops": (flops["all_logits_flops"] + flops["projection_flops"]) / step / 1e9}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default="badapple")
    p.add_argument("--model", default="random:gpt2-xl", help="the command's default, gpt2-xl, is a download; the "
                   "random weights have its shapes, so the same time")
    p.add_argument("--start", type=int, default=960, help="first frame (at --fps)")
    p.add_argument("--max-frames", type=int, default=480, help="frames of the long run")
    p.add_argument("--short", type=int, default=48, help="frames of the short run (the fit's second point)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--video-frames", type=int, default=3481, help="frames of the whole video at --fps")
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--roofline-frames", type=int, default=8,
                   help="frames of the roofline's chunk (the command's on a CPU)")
    p.add_argument("--roofline-steps", type=int, default=200, help="steps of the roofline's first run (then 2x)")
    p.add_argument("--render-args", default="", help="more flags for both runs of the command (not the "
                   "roofline), e.g. '--steps 150' (--preset fast alone when empty)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/realtime_cpu.json"))
    args = p.parse_args(argv)

    load_before = os.getloadavg()
    long, short = render_wall(args, args.max_frames), render_wall(args, args.short)
    fit = projection(long, short, args.video_frames)
    roof = roofline(args)
    duration = args.video_frames / args.fps
    result = {"device": jax.devices()[0].device_kind, "cores": os.cpu_count(), "load_before": load_before,
              "load_after": os.getloadavg(), "long": long, "short": short, **fit, "video_frames": args.video_frames,
              "video_seconds": duration, "ratio": fit["projected_wall_seconds"] / duration, "roofline": roof,
              "args": vars(args) | {"out": str(args.out)}}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    print(f"\n{long['frames']} frames from {args.start}: {long['wall_seconds']:.1f} s wall "
          f"({long['seconds_per_frame'] * 1e3:.1f} ms per frame; compile {long['compile_seconds']:.1f} s, optimise "
          f"{long['optimize_seconds']:.1f} s; {long['cpu_seconds']:.1f} CPU-s); {short['frames']} frames: "
          f"{short['wall_seconds']:.1f} s")
    print(f"fidelity: median PSNR {long['median_psnr']:.2f} dB over {long['content_frames']} content frames, "
          f"flicker {long['flicker']:.4f} (targets {long['target_flicker']:.4f})")
    print(f"whole video: {fit['fixed_seconds']:.1f} s fixed + {fit['per_frame_seconds'] * 1e3:.1f} ms x "
          f"{args.video_frames} frames = {fit['projected_wall_seconds']:.1f} s wall")
    print(f"roofline: step {roof['step_gflops']:.1f} GFLOP/s ({roof['step_flops'] / 1e6:.1f} MFLOP in "
          f"{roof['step_ms_per_frame']:.3f} ms per frame-step; logits alone {roof['logits_gflops']:.1f}) against "
          f"{roof['matmul_gflops']:.1f} GFLOP/s for a {args.matmul_size}^2 matmul: "
          f"{roof['step_gflops'] / roof['matmul_gflops']:.2f} of the peak; {roof['effective_gflops']:.1f} GFLOP/s "
          f"counting all L^2 logits ({roof['all_logits_flops'] / 1e6:.1f} MFLOP of them)")
    print(f"projected wall / video duration: {result['ratio']:.2f} ({fit['projected_wall_seconds']:.1f} s / "
          f"{duration:.1f} s)")


if __name__ == "__main__":
    main()
