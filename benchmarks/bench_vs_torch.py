"""Side-by-side benchmark: our JAX optimiser against the PyTorch baseline on the same frames and weights.

    python benchmarks/bench_vs_torch.py --quick                       # ~3 min on 2 CPU cores
    python benchmarks/bench_vs_torch.py --frames 256 --repeat 3 --out benchmarks/gpu.json

Each run is a fresh process per side (so peak memory is that side's own), sides interleaved
J T J T ... so drift hits both; the table shows the median of `--repeat` runs. JAX compile time
is excluded from its optimisation time and reported apart; torch is warmed up by a short run of
the same shapes first. Both sides: the same weights (our loader; the torch side gets them as
arrays), frames, steps, seeds, chunk size and init distribution N(0, 1) * init_scale.
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks.torch_baseline` also when run as a script

def peak_host_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_jax(args, frames):
    import jax

    from badapple_jax import Settings, compile_chunk, load_layer, optimize_frames, pick_head

    w = pick_head(load_layer(args.model)[0], args.head)
    settings = Settings(steps=args.steps, seeds=args.seeds, lr=args.lr, lr_min=args.lr_min,
                        init_scale=args.init_scale, solver=args.solver, precision=args.precision,
                        warm_start=args.warm_start, display="zscore")  # the baseline's target: losses compare
    chunk = min(args.chunk_size, len(frames))
    program, compile_seconds = compile_chunk(w, frames.shape[-1], chunk, settings)
    t0 = time.perf_counter()
    losses = np.concatenate([r.last_step_loss for _, r in optimize_frames(program, frames, seed=args.seed)])
    seconds = time.perf_counter() - t0
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform == "gpu" else None
    peak = stats["peak_bytes_in_use"] / 2**20 if stats else peak_host_mb()
    return dict(seconds=seconds, compile_seconds=compile_seconds, peak_mb=peak, losses=losses.tolist(),
                device=device.device_kind, version=jax.__version__)


def run_torch(args, frames):
    import torch

    from benchmarks import torch_baseline as tb

    device = "cuda" if torch.cuda.is_available() else "cpu"
    head = tb.load_head(args.head_npz, device)
    f = torch.from_numpy(frames).to(device)
    chunk = min(args.chunk_size, len(frames))
    T, E = frames.shape[-1], head["pos"].shape[1]

    def chunks(steps):
        for i, start in enumerate(range(0, len(frames), chunk)):
            x0 = tb.initial_starts(args.seed + i, args.seeds, len(f[start:start + chunk]), T, E, args.init_scale, device)
            yield tb.optimize_chunk(f[start:start + chunk], head, x0, steps=steps, lr=args.lr, lr_min=args.lr_min)

    next(chunks(8))  # warm-up: threads, allocator, CUDA context and kernels at the same shapes
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    losses = torch.cat([r["loss"] for r in chunks(args.steps)]).cpu().numpy()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_host_mb()
    kind = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return dict(seconds=seconds, compile_seconds=0.0, peak_mb=peak, losses=losses.tolist(), device=kind,
                version=torch.__version__)


def summarise(side, runs, n_frames, args):
    from badapple_jax import Settings  # here, in the parent: the torch worker never imports JAX

    pick = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    losses = np.asarray(runs[0]["losses"])
    seconds = pick("seconds")
    return dict(side=side, seconds=seconds, compile_seconds=pick("compile_seconds"), peak_mb=pick("peak_mb"),
                frames_per_second=n_frames / seconds,
                ms_per_frame_step=1e3 * seconds / (n_frames * Settings(steps=args.steps, seeds=args.seeds).frame_steps),
                mean_loss=float(losses.mean()), median_loss=float(np.median(losses)), max_loss=float(losses.max()),
                device=runs[0]["device"], version=runs[0]["version"], runs=runs)


def table(rows):
    lines = ["| side | optimise s | compile s | frames/s | ms/frame-step | peak MB | mean loss | median | max |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['side']} ({r['device']}) | {r['seconds']:.1f} | {r['compile_seconds']:.1f} | "
                     f"{r['frames_per_second']:.3g} | {r['ms_per_frame_step']:.3f} | {r['peak_mb']:.0f} | "
                     f"{r['mean_loss']:.4g} | {r['median_loss']:.4g} | {r['max_loss']:.4g} |")
    return "\n".join(lines)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random:gpt2-xl")
    p.add_argument("--head", type=int, default=0)
    p.add_argument("--input", default="demo", help="video, image directory or demo")
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--lr-min", type=float, default=1e-4)
    p.add_argument("--init-scale", type=float, default=0.1)
    p.add_argument("--chunk-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--solver", default="embedding", choices=("embedding", "headspace"), help="JAX side's solver")
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"), help="JAX side's matmuls")
    p.add_argument("--warm-start", action="store_true", help="JAX side, headspace: SVD warm start")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="8 frames, 1 run per side: ~3 minutes on 2 CPU cores")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--frames-npy", help=argparse.SUPPRESS)
    p.add_argument("--head-npz", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.frames, args.repeat = 8, 1
    return args


def main(argv=None):
    args = parse(argv)
    if args.worker:  # one side, in its own process: print its result as JSON
        frames = np.load(args.frames_npy)
        print(json.dumps((run_jax if args.worker == "jax" else run_torch)(args, frames)))
        return

    from badapple_jax import load_layer, pick_head, read_clip
    from benchmarks.torch_baseline import save_head

    frames = read_clip(args.input, size=args.size, max_frames=args.frames).frames
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "frames.npy", frames)
        save_head(Path(tmp) / "head.npz", pick_head(load_layer(args.model)[0], args.head))
        argv = argv if argv is not None else sys.argv[1:]
        runs = {"jax": [], "torch": []}
        for i in range(args.repeat):
            for side in ("jax", "torch"):
                cmd = [sys.executable, "-m", "benchmarks.bench_vs_torch", *argv, "--worker", side,
                       "--frames-npy", str(Path(tmp) / "frames.npy"), "--head-npz", str(Path(tmp) / "head.npz")]
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if done.returncode:
                    sys.exit(f"{side} worker failed:\n{done.stderr[-3000:]}")
                runs[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"run {i + 1}/{args.repeat} {side}: {runs[side][-1]['seconds']:.1f} s", file=sys.stderr)
    rows = [summarise(side, runs[side], len(frames), args) for side in ("jax", "torch")]
    speedup = rows[1]["seconds"] / rows[0]["seconds"]
    print(table(rows))
    print(f"\nframes {len(frames)}, T {args.size}, steps {args.steps}, seeds {args.seeds}, chunk {args.chunk_size}, "
          f"model {args.model}, JAX solver {args.solver} ({args.precision}); median of {args.repeat} run(s) per side")
    print(f"speed-up (torch time / JAX time): {speedup:.2f}x")
    if args.out:
        settings = {k: v for k, v in vars(args).items() if k not in ("out", "worker", "frames_npy", "head_npz")}
        args.out.write_text(json.dumps({"settings": settings, "speedup": speedup, "sides": rows}, indent=1))


if __name__ == "__main__":
    main()
