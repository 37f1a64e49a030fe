"""Which head makes the best display? Every head of the chosen layers against a few sample frames.

Every head runs through render's chunk driver (`chunks.optimize_frames`, with its non-finite guard and the
solver's check), the heads of a layer through one compiled program: they share every shape. Heads are ranked by what a viewer sees: the mean PSNR of their pictures
(the settings' encoding's `picture`) against the frames over the shown region (SPEC 12), with SSIM beside it.
The loss of the final embeddings through the ordinary kernel (`loss`) stands next to them: it
lives in logit space and says little about the picture, but compares head-space and embedding runs.
`badapple-jax survey INPUT` writes PREFIX.json, PREFIX.md (the ranking) and PREFIX.png (a heatmap).
"""
import dataclasses
import io
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from badapple_jax.chunks import optimize_frames
from badapple_jax.encoding import DISPLAYS
from badapple_jax.errors import BadInputError, OptionError
from badapple_jax.files import write_atomic
from badapple_jax.outputs import claim, mark
from badapple_jax.optimize import FAST_EMBEDDING, PRESETS, SOLVERS, Settings, preset_settings
from badapple_jax.render import check_clip_options
from badapple_jax.video import read_clip
from badapple_jax.model import pick_head
from badapple_jax.weights import load_layer

TOP = 10  # rows printed
MAX_FRAMES = 256  # sample frames: every head optimises all of them in one program


def layer_results(layer_weights, frames, settings: Settings, seed: int):  # -> loss, psnr, ssim: [H, F] each
    """Every head of one layer against frames [F, T, T], head after head through `optimize_frames`: each head's
    loss per frame (full mode: the mean of the two views, as render reports it) and the PSNR and SSIM of its
    pictures, as render measures them."""
    results = [result for h in range(layer_weights.config.n_head)
               for _, result in optimize_frames(pick_head(layer_weights, h), frames, settings, seed=seed)]
    H, F = layer_weights.config.n_head, len(frames)
    loss = np.concatenate([r.loss.reshape(len(r.loss), -1).mean(axis=-1) for r in results]).reshape(H, F)
    psnr, ssim = (np.concatenate([getattr(r, k) for r in results]).reshape(H, F) for k in ("psnr", "ssim"))
    return loss, psnr, ssim


def survey(model: str, layers: list[int], frames: np.ndarray, settings: Settings, seed: int = 0,
           above: Settings | None = None) -> list[dict]:
    """Frames [F, T, T] in [0, 1] -> one row per (layer, head), sorted by mean PSNR (best first; ties by
    mean loss, then layer and head).

    Head space works at layer 0 only: layers above it use `above`, an embedding solver's settings (default:
    `settings` with the embedding solver); each row names its solver."""
    above = above or dataclasses.replace(settings, solver="embedding", warm_start=False)
    rows = []
    for layer in layers:
        layer_weights, _ = load_layer(model, layer)
        s = settings if layer == 0 or settings.solver == "embedding" else above
        loss, psnr, ssim = layer_results(layer_weights, frames, s, seed)
        rows += [{"layer": layer, "head": h, "solver": s.solver,
                  "mean_psnr": float(np.mean(p)), "median_psnr": float(np.median(p)), "mean_ssim": float(np.mean(q)),
                  "mean_loss": float(np.mean(l)), "median_loss": float(np.median(l)), "max_loss": float(np.max(l))}
                 for h, (p, q, l) in enumerate(zip(psnr, ssim, loss))]
    return sorted(rows, key=lambda r: (-r["mean_psnr"], r["mean_loss"], r["layer"], r["head"]))


def parse_layers(text: str, n_layer: int) -> list[int]:
    """`0`, `0,5,10` or `all` -> sorted layers, each named once and checked against n_layer."""
    if text.strip() == "all":
        return list(range(n_layer))
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() for part in parts):  # int() would also take "٠", "0_0" and "+0"
        raise OptionError(f"`layers` must be a layer, a list like 0,5,10 or 'all', got {text!r}.")
    layers = sorted(int(part) for part in parts)
    twice = [a for a, b in zip(layers, layers[1:]) if a == b]
    if twice:
        raise OptionError(f"`layers` {text!r} names layer {twice[0]} twice.")
    if layers[-1] >= n_layer:
        raise OptionError(f"`layers` {text!r} is out of range: the model has n_layer {n_layer} "
                          f"(valid 0..{n_layer - 1}).")
    return layers


def sample_frames(n: int, k: int) -> np.ndarray:  # -> up to k distinct frame indices spread evenly over 0..n-1
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


COLUMNS = [("mean PSNR", "mean_psnr", ".2f"), ("median PSNR", "median_psnr", ".2f"), ("mean SSIM", "mean_ssim", ".3f"),
           ("mean loss", "mean_loss", ".4g"), ("median loss", "median_loss", ".4g"), ("max loss", "max_loss", ".4g")]


def markdown(rows: list[dict], caption: str) -> str:
    names = ["rank", "layer", "head"] + [name for name, _, _ in COLUMNS]
    lines = [f"<!-- {mark('survey')} -->", caption, "", "| " + " | ".join(names) + " |", "|" + "---:|" * len(names)]
    lines += ["| " + " | ".join([str(i), str(r["layer"]), str(r["head"])] +
                                [format(r[key], spec) for _, key, spec in COLUMNS]) + " |"
              for i, r in enumerate(rows, 1)]
    return "\n".join(lines) + "\n"


def heatmap(rows: list[dict], caption: str) -> Figure:
    """Layers x heads of mean PSNR (linear colour scale, brighter is better), the best head starred."""
    layers = sorted({r["layer"] for r in rows})
    grid = np.full((len(layers), 1 + max(r["head"] for r in rows)), np.nan)
    for r in rows:
        grid[layers.index(r["layer"]), r["head"]] = r["mean_psnr"]
    size = (max(6.0, 2.5 + 0.3 * grid.shape[1]), max(2.5, 1.5 + 0.25 * len(layers)))
    fig = Figure(figsize=size, dpi=120, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="magma", aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="mean PSNR (dB)")
    best = rows[0]
    ax.scatter([best["head"]], [layers.index(best["layer"])], marker="*", s=160, c="cyan", edgecolors="black")
    ax.set_title(f"{textwrap.fill(caption, int(13 * size[0]))}\nbest (*): layer {best['layer']} head {best['head']}, "
                 f"mean PSNR {best['mean_psnr']:.2f} dB, mean loss {best['mean_loss']:.3g}", fontsize=9)
    ax.set(xlabel="head", ylabel="layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yticks(range(len(layers)), layers)
    return fig


def add_parser(commands) -> None:
    """The `survey` subcommand, on an argparse subparsers object."""
    p = commands.add_parser("survey", help="rank every head of the chosen layers by how well it displays a few "
                                           "sample frames: writes PREFIX.json, PREFIX.md and PREFIX.png")
    p.add_argument("input", help="video file, directory of images, 'demo' or 'badapple'")
    p.add_argument("--model", default="gpt2-xl", help="hub id, local dir, minilm or random:NAME (default: gpt2-xl)")
    p.add_argument("--layers", default="0", help="a layer, a comma-separated list (0,5,10) or 'all' (default: 0)")
    p.add_argument("--frames", type=int, default=8, help="sample frames, spread evenly over the clip (default: 8)")
    p.add_argument("--size", type=int, default=64, help="display size T, small for a quick scan (default: 64)")
    p.add_argument("--fps", type=float, default=15.0, help="frames per second sampled from the input (default: 15)")
    p.add_argument("--steps", type=int, default=200, help="Adam steps per frame (default: 200)")
    p.add_argument("--seeds", type=int, default=1, help="random starts per frame (default: 1)")
    p.add_argument("--solver", choices=SOLVERS, default="headspace",
                   help="headspace (default; layer 0 only, the embedding solver above it) or embedding")
    p.add_argument("--display", choices=DISPLAYS, default="sink",
                   help="sink (default; token 0 an attention sink, the frame at its true brightness, T+1 positions) "
                        "or zscore (the reference's row-normalised target and z-scored picture)")
    p.add_argument("--lr", type=float, help="peak learning rate of the one cosine cycle (default: --preset fast's, "
                                            f"{PRESETS['fast']['lr']} in head space, {FAST_EMBEDDING['lr']} for the "
                                            "embedding solver)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the starts (default: 0)")
    p.add_argument("-o", "--output", default="survey", help="output prefix (default: survey)")
    p.set_defaults(func=run)


def run(args) -> int:
    """The `survey` command: sample frames, survey, write the three files, print the top rows."""
    # --preset fast's optimiser, with the learning rate each solver wants (benchmarks/RESULTS.md); --solver
    # embedding runs every layer as the layers above 0 run
    chosen = {"steps": args.steps, "seeds": args.seeds, "display": args.display,
              **({} if args.lr is None else {"lr": args.lr})}
    above = preset_settings("fast", 1, **chosen)
    settings = preset_settings("fast", 0, **chosen) if args.solver == "headspace" else above
    settings.check()  # the rules render applies: one set for every command
    check_clip_options(args.size, args.fps, args.seed)
    if not 1 <= args.frames <= MAX_FRAMES:
        raise BadInputError(f"--frames must be in 1..{MAX_FRAMES} (sample frames, all in one program), got {args.frames}.")
    prefix = Path(args.output)
    if not prefix.name or args.output.endswith(os.sep) or prefix.is_dir():
        raise BadInputError(f"-o takes a file name prefix (PREFIX.json, .md, .png are written), got '{args.output}'.")
    if not prefix.parent.is_dir() or not os.access(prefix.parent, os.W_OK):
        raise BadInputError(f"Output directory {prefix.parent} does not exist or is not writable.")
    paths = [claim(prefix.with_name(prefix.name + ext), "survey",
                   inputs={"the input": args.input, "the model": args.model})
             for ext in (".json", ".md", ".png")]
    _, info = load_layer(args.model, 0)  # the config: layer count and positions, before any work
    layers = parse_layers(args.layers, info.config.n_layer)
    encoding = settings.encoding(info.config.causal)  # refuses --mode full for an encoder
    tokens, positions = encoding.tokens(args.size), info.config.n_positions
    if tokens > positions:
        raise BadInputError(f"--size {args.size} needs {tokens} positions with --display {args.display} but the model "
                            f"has {positions}: use --size {positions - (tokens - args.size)} or less.")
    clip = read_clip(args.input, size=args.size, fps=args.fps)
    index = sample_frames(len(clip.frames), args.frames)
    print(f"model: {info.source}\ninput: {clip.label}, frames {index.tolist()} of {len(clip.frames)} at "
          f"{args.size}x{args.size}; layers {args.layers}, {info.config.n_head} heads each", file=sys.stderr)
    t0 = time.perf_counter()
    rows = survey(args.model, layers, clip.frames[index], settings, seed=args.seed, above=above)
    seconds = time.perf_counter() - t0
    solvers = {r["solver"] for r in rows}
    solver = solvers.pop() if len(solvers) == 1 else "headspace at layer 0, embedding above"
    caption = (f"{args.model}, {len(index)} frames of {clip.label} at {args.size}x{args.size}, steps {args.steps}, "
               f"seeds {args.seeds}, solver {solver}, display {args.display}")
    summary = {"written_by": mark("survey"), "input": clip.label, "model": info.as_dict(), "layers": layers, "frames": index.tolist(),
               "size": args.size, "fps": clip.fps, "seed": args.seed, "settings": dataclasses.asdict(settings),
               "settings_above_layer_0": dataclasses.asdict(above),
               **encoding.constants(args.size),
               "seconds": seconds, "rows": rows}
    picture = io.BytesIO()
    heatmap(rows, caption).savefig(picture, format="png", metadata={"Software": mark("survey")})
    for path, data in zip(paths, (json.dumps(summary, indent=1).encode(), markdown(rows, caption).encode(),
                                  picture.getvalue())):
        write_atomic(path, data)
    print(f"{'rank':>4} {'layer':>5} {'head':>4} " + " ".join(f"{name:>11}" for name, _, _ in COLUMNS))
    for i, r in enumerate(rows[:TOP], 1):
        print(f"{i:>4} {r['layer']:>5} {r['head']:>4} " + " ".join(f"{r[key]:>11{spec}}" for _, key, spec in COLUMNS))
    print(f"{len(rows)} heads surveyed in {seconds:.1f} s (compiling included); wrote {', '.join(map(str, paths))}")
    return 0
