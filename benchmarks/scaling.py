"""Optimiser throughput (frame-steps per second) against frames per compiled step and sequence size T.

    python benchmarks/scaling.py [--model random:gpt2-xl] [--chunks 1,2,4,...] [--sizes 64,128,...] [--quick]

A frame-step is one Adam update of one frame's embedding (one start). Each point compiles one chunk
shape (compile excluded from the timing) and runs exactly one chunk. Writes a JSON of the points,
a plot beside it (.png) and prints a markdown table (rows T, columns chunk size).
"""
import argparse
import datetime
import json
import os
import pathlib
import time

import jax
import jaxlib
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from badapple_jax import Settings, compile_chunk, load_layer, optimize_frames, pick_head, read_clip  # noqa: E402


# Live [T, n_embd] float32 arrays per start in the compiled step: X, its gradient, Adam's m and v,
# the update u, and LayerNorm / projection temporaries. A rough upper figure, meant to skip points that
# would not fit rather than to predict XLA's allocation; a real out-of-memory is caught as well.
LIVE_ARRAYS_PER_START = 12


def estimated_bytes(chunk: int, seeds: int, T: int, n_embd: int) -> int:
    return chunk * seeds * T * n_embd * 4 * LIVE_ARRAYS_PER_START


def device_memory_bytes(device) -> int:
    """The accelerator's allocatable memory, or the host's RAM on CPU."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def demo_frames(T: int, chunk: int) -> np.ndarray:  # -> [chunk, T, T], the demo clip repeated as needed
    return np.resize(read_clip("demo", size=T, max_frames=chunk).frames, (chunk, T, T))


def time_chunk(w, frames, settings: Settings, repeat: int) -> tuple[float, float]:
    """(best of `repeat` seconds for one chunk, compile seconds)."""
    chunk, T, _ = frames.shape
    program, compile_seconds = compile_chunk(w, T, chunk, settings)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in optimize_frames(program, frames):
            pass
        times.append(time.perf_counter() - t0)
    return min(times), compile_seconds


def measure_point(w, T: int, chunk: int, settings: Settings, repeat: int, memory_limit: float) -> dict:
    """One (T, chunk) point: its timing, or the reason it was skipped."""
    est = estimated_bytes(chunk, settings.seeds, T, w.config.n_embd)
    point = {"T": T, "chunk": chunk, "est_bytes": est}
    if T > w.config.n_positions:
        return point | {"skipped": f"T > n_positions ({w.config.n_positions})"}
    if est > memory_limit:
        return point | {"skipped": f"estimate {est / 2**20:,.0f} MiB > limit {memory_limit / 2**20:,.0f} MiB"}
    try:
        seconds, compile_seconds = time_chunk(w, demo_frames(T, chunk), settings, repeat)
    except jax.errors.JaxRuntimeError as e:  # XlaRuntimeError in older jax
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        return point | {"skipped": "out of memory: " + str(e).splitlines()[0][:200]}
    n = chunk * settings.frame_steps
    return point | {"seconds": round(seconds, 4), "compile_seconds": round(compile_seconds, 2),
                    "frame_steps_per_second": round(n / seconds, 2), "ms_per_frame_step": round(1e3 * seconds / n, 4)}


def markdown_table(points: list[dict], sizes: list[int], chunks: list[int]) -> str:
    cell = {(p["T"], p["chunk"]): f"{p['frame_steps_per_second']:,.0f}" for p in points if "skipped" not in p}
    rows = ["| T \\ chunk | " + " | ".join(map(str, chunks)) + " |", "|---" * (len(chunks) + 1) + "|"]
    rows += [f"| {T} | " + " | ".join(cell.get((T, c), "-") for c in chunks) + " |" for T in sizes]
    return "\n".join(rows)


def plot(points: list[dict], sizes: list[int], chunks: list[int], title: str, path: pathlib.Path):
    fig, ax = plt.subplots(figsize=(8, 5))
    for T in sizes:
        done = sorted((p["chunk"], p["frame_steps_per_second"]) for p in points if p["T"] == T and "skipped" not in p)
        if done:
            ax.plot(*zip(*done), marker="o", label=f"T = {T}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(chunks, [str(c) for c in chunks])
    ax.set_xlabel("frames per compiled step (chunk size)")
    ax.set_ylabel("frame-steps per second")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random:gpt2-xl")
    p.add_argument("--chunks", default="1,2,4,8,16,32,64,128,256,512")
    p.add_argument("--sizes", default="64,128,256,512")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--solver", default="embedding", choices=("embedding", "headspace"))
    p.add_argument("--steps", type=int, default=40, help="short runs: the time per step is what matters")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per point, the best is kept")
    p.add_argument("--memory-fraction", type=float, default=0.6)
    p.add_argument("--out", default="benchmarks/scaling.json", help="JSON path; the plot goes beside it as .png")
    p.add_argument("--quick", action="store_true", help="chunks 1,4,16, sizes 64,256, 12 steps")
    args = p.parse_args()
    if args.quick:
        args.chunks, args.sizes, args.steps = "1,4,16", "64,256", 12
    chunks = [int(c) for c in args.chunks.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]

    w = pick_head(load_layer(args.model)[0], 0)
    settings = Settings(steps=args.steps, seeds=args.seeds, solver=args.solver)
    device = jax.devices()[0]
    memory_limit = args.memory_fraction * device_memory_bytes(device)
    points = []
    for T in sizes:
        for chunk in chunks:
            points.append(measure_point(w, T, chunk, settings, args.repeat, memory_limit))
            print(json.dumps(points[-1]), flush=True)

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "device": {"kind": device.device_kind, "platform": device.platform},
        "versions": {"jax": jax.__version__, "jaxlib": jaxlib.__version__},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "args": vars(args), "points": points,
    }, indent=1))
    title = (f"{args.model}, {args.solver} solver, on {device.device_kind} ({device.platform}): "
             f"{args.seeds} seeds, {args.steps} steps")
    plot(points, sizes, chunks, title, out.with_suffix(".png"))
    print(markdown_table(points, sizes, chunks))


if __name__ == "__main__":
    main()
