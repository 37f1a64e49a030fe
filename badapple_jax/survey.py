"""Which head makes the best display? Every head of the chosen layers against a few sample frames.

The sample frames are spread evenly over the clip's frames WITH content (`fidelity.has_content` over the
region the display shows): a blank frame is shown at 70+ dB by any head and tells heads apart by nothing.
Every head runs through render's chunk driver (`chunks.optimize_frames`, with its non-finite guard and the
solver's check), the heads of a layer through one compiled program: they share every shape. Heads are ranked
by what a viewer sees: the mean PSNR of their pictures (the settings' encoding's `picture`) against the
frames over the shown region (SPEC 12), summarised as `fidelity.summary` does (over content frames), with
SSIM beside it. Beside each mean stands its spread over the n frames, the sample standard deviation s, and
each head's paired difference to the best one, d_f = PSNR_f - PSNR_f(best) over the same frames, as its mean
and 95% t-interval (mean d +- t_{0.975, n-1} s_d / sqrt(n)): a head whose interval holds 0 is a TIE with the
best, the frames cannot tell them apart. Layer 0 runs in head space, the layers above with the embedding
solver: each row names its solver, and two solvers' rows differ by the solver as well as the head.
The loss of the final embeddings through the ordinary kernel (`loss`) stands next to them: it
lives in logit space and says little about the picture, but compares head-space and embedding runs.
`badapple-jax survey INPUT` writes PREFIX.json, PREFIX.md (the ranking) and PREFIX.png (a heatmap).
"""
import dataclasses
import functools
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

from badapple_jax import fidelity
from badapple_jax.chunks import optimize_frames, plan
from badapple_jax.encoding import DISPLAYS, largest_size
from badapple_jax.errors import BadInputError, OptionError
from badapple_jax.files import write_atomic
from badapple_jax.outputs import claim, mark
from badapple_jax.processes import add_arguments, current
from badapple_jax.optimize import FAST_SOLVERS, PRESETS, SOLVERS, Settings, preset_settings
from badapple_jax.render import check_clip_options
from badapple_jax.video import read_clip
from badapple_jax.model import pick_head
from badapple_jax.solver import HEAD_SPACE
from badapple_jax.weights import load_layer

TOP = 10  # rows printed
MAX_FRAMES = 256  # sample frames: every head optimises all of them in one program
CONFIDENCE = 0.95  # of the t-interval of a head's mean difference to the best


def layer_results(layer_weights, frames, settings: Settings, seed: int, heads):  # -> loss, psnr, ssim: [H, F] each
    """The `heads` (H of them) of one layer against frames [F, T, T], head after head through `optimize_frames`:
    each head's loss per frame (full mode: the mean of the two views, as render reports it) and the PSNR and SSIM
    of its pictures, as render measures them."""
    H, F, T = len(heads), len(frames), frames.shape[-1]
    results = [result for h in heads
               for _, result in optimize_frames(plan(pick_head(layer_weights, h), T, F, settings), frames, seed=seed)]
    loss = np.concatenate([r.loss.reshape(len(r.loss), -1).mean(axis=-1) for r in results]).reshape(H, F)
    psnr, ssim = (np.concatenate([getattr(r, k) for r in results]).reshape(H, F) for k in ("psnr", "ssim"))
    return loss, psnr, ssim


def t_interval(x) -> list[float] | None:
    """[n] values -> the CONFIDENCE t-interval of their mean, [low, high]; None for fewer than 2."""
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return None
    import scipy.stats  # here, not at the top: 0.6 s of every command's start (the CLI imports this module)

    half = scipy.stats.t.ppf((1 + CONFIDENCE) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]


def head_row(layer: int, head: int, solver: str, psnr, ssim, loss, content) -> dict:
    """One head's row from its per-frame PSNR, SSIM and loss [F]: `fidelity.summary`, and the PSNR's standard
    deviation (ddof 1; None for one frame) and the loss summaries over the same frames (`fidelity.summarised`)."""
    over = fidelity.summarised(content)
    p, l = np.asarray(psnr, np.float64)[over], np.asarray(loss, np.float64)[over]
    return {"layer": layer, "head": head, "solver": solver,
            **fidelity.summary(psnr, ssim, content), "sd_psnr": float(p.std(ddof=1)) if len(p) > 1 else None,
            "mean_loss": float(l.mean()), "median_loss": float(np.median(l)), "max_loss": float(l.max()),
            "per_frame_psnr": np.asarray(psnr).tolist(), "per_frame_ssim": np.asarray(ssim).tolist()}


def ranked(rows: list[dict], over) -> list[dict]:
    """Rows sorted by mean PSNR (best first; equal means by mean loss, then layer and head), each with its paired
    difference to the best over the frames `over`: `vs_best` (mean), `vs_best_ci` (t-interval) and
    `tie_with_best` (the interval holds 0; None for one frame)."""
    rows = sorted(rows, key=lambda r: (-r["mean_psnr"], r["mean_loss"], r["layer"], r["head"]))
    best = np.asarray(rows[0]["per_frame_psnr"])[over]
    out = []
    for r in rows:
        d = np.asarray(r["per_frame_psnr"])[over] - best
        ci = t_interval(d)
        out.append({**r, "vs_best": float(d.mean()), "vs_best_ci": ci,
                    "tie_with_best": None if ci is None else bool(ci[0] <= 0 <= ci[1])})
    return out


def survey(model: str, layers: list[int], frames: np.ndarray, settings: Settings, seed: int = 0,
           above: Settings | None = None) -> list[dict]:
    """Frames [F, T, T] in [0, 1] -> one row per (layer, head), `ranked`; summaries over the frames with
    content (all when none has; `fidelity.summarised`).

    Head space works at layer 0 only: layers above it use `above`, an embedding solver's settings (default:
    `settings` with the embedding solver); each row names its solver. Under JAX's multi-process runtime
    (processes.py) each process surveys its share of every layer's heads, and every process returns all rows."""
    above = above or dataclasses.replace(settings, solver="embedding", warm_start=False)
    rows, content = [], None
    for layer in layers:
        layer_weights, _ = load_layer(model, layer)
        s = settings if layer == 0 or settings.solver not in HEAD_SPACE else above
        content = fidelity.has_content(frames, s.encoding(layer_weights.config.causal).region(frames.shape[-1]))
        loss, psnr, ssim = current().spread(f"layer {layer}", layer_weights.config.n_head,
                                            functools.partial(layer_results, layer_weights, frames, s, seed))
        rows += [head_row(layer, h, s.solver, p, q, l, content) for h, (p, q, l) in enumerate(zip(psnr, ssim, loss))]
    return ranked(rows, fidelity.summarised(content))  # every layer shows the same region: one content


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


def sample_frames(content, k: int) -> np.ndarray:
    """[N] bool (the frames with content) -> up to k distinct indices of content frames, spread evenly over
    them (first and last included); empty when none has content."""
    index = np.flatnonzero(content)
    return index[np.unique(np.linspace(0, len(index) - 1, k).round().astype(int))] if len(index) else index


def _vs_best(r: dict, rank: int) -> str:
    if rank == 1:
        return "best"
    ci = r["vs_best_ci"]
    return f"{r['vs_best']:+.2f}" + ("" if ci is None else f" [{ci[0]:+.2f}, {ci[1]:+.2f}]")


COLUMNS = [  # (name, cell of (row, rank))
    ("rank", lambda r, i: f"{i} (tie)" if i > 1 and r["tie_with_best"] else str(i)),
    ("layer", lambda r, i: str(r["layer"])), ("head", lambda r, i: str(r["head"])),
    ("solver", lambda r, i: r["solver"]),
    ("mean PSNR", lambda r, i: f"{r['mean_psnr']:.2f}"),
    ("PSNR sd", lambda r, i: "n/a" if r["sd_psnr"] is None else f"{r['sd_psnr']:.2f}"),
    ("mean - best [95% t-interval]", _vs_best),
    ("median PSNR", lambda r, i: f"{r['median_psnr']:.2f}"), ("mean SSIM", lambda r, i: f"{r['mean_ssim']:.3f}"),
    ("mean loss", lambda r, i: f"{r['mean_loss']:.4g}"), ("median loss", lambda r, i: f"{r['median_loss']:.4g}"),
    ("max loss", lambda r, i: f"{r['max_loss']:.4g}")]

NOTE = ("PSNR (dB) and SSIM over the {n} sample frames, all with content; PSNR sd: their standard deviation over "
        "those frames (ddof 1). mean - best: the mean per-frame PSNR difference to the best head over the same "
        "frames, with its 95% t-interval; (tie): the interval holds 0, the frames cannot tell the head from the "
        "best. solver: the one the row's layer ran with (head space works at layer 0 only; layers above run the "
        "embedding solver): rows of two solvers differ by the solver as well as the head, compare within one solver.")


def markdown(rows: list[dict], caption: str, note: str) -> str:
    names = [name for name, _ in COLUMNS]
    lines = [f"<!-- {mark('survey')} -->", caption, "", note, "",
             "| " + " | ".join(names) + " |", "|" + "---:|" * len(names)]
    lines += ["| " + " | ".join(cell(r, i) for _, cell in COLUMNS) + " |" for i, r in enumerate(rows, 1)]
    return "\n".join(lines) + "\n"


def heatmap(rows: list[dict], caption: str) -> Figure:
    """Layers x heads of mean PSNR (linear colour scale, brighter is better), the best head starred, its ties
    ringed, each layer labelled with its solver."""
    layers = sorted({r["layer"] for r in rows})
    solver = {r["layer"]: r["solver"] for r in rows}
    grid = np.full((len(layers), 1 + max(r["head"] for r in rows)), np.nan)
    for r in rows:
        grid[layers.index(r["layer"]), r["head"]] = r["mean_psnr"]
    size = (max(6.0, 2.5 + 0.3 * grid.shape[1]), max(2.5, 1.5 + 0.25 * len(layers)))
    fig = Figure(figsize=size, dpi=120, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="magma", aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="mean PSNR (dB)")
    best = rows[0]
    ties = [r for r in rows[1:] if r["tie_with_best"]]
    ax.scatter([r["head"] for r in ties], [layers.index(r["layer"]) for r in ties], marker="o", s=60,
               facecolors="none", edgecolors="cyan")
    ax.scatter([best["head"]], [layers.index(best["layer"])], marker="*", s=160, c="cyan", edgecolors="black")
    sd = "" if best["sd_psnr"] is None else f" (sd {best['sd_psnr']:.2f} over frames)"
    legend = (f"best (*): layer {best['layer']} head {best['head']} ({best['solver']}), mean PSNR "
              f"{best['mean_psnr']:.2f} dB{sd}; ties (o): {len(ties)}, the 95% t-interval of their mean difference "
              "to the best holds 0; each layer names its solver: compare heads within one")
    ax.set_title("\n".join(textwrap.fill(text, int(13 * size[0])) for text in (caption, legend)), fontsize=9)
    ax.set(xlabel="head", ylabel="layer (solver)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yticks(range(len(layers)), [f"{layer} ({solver[layer]})" for layer in layers])
    return fig


def add_parser(commands) -> None:
    """The `survey` subcommand, on an argparse subparsers object."""
    p = commands.add_parser("survey", help="rank every head of the chosen layers by how well it displays a few "
                                           "sample frames: writes PREFIX.json, PREFIX.md and PREFIX.png")
    p.add_argument("input", help="video file, directory of images, 'demo' or 'badapple'")
    p.add_argument("--model", default="gpt2-xl", help="hub id, local dir, minilm or random:NAME (default: gpt2-xl)")
    p.add_argument("--layers", default="0", help="a layer, a comma-separated list (0,5,10) or 'all' (default: 0)")
    p.add_argument("--frames", type=int, default=8, help="sample frames, spread evenly over the clip's frames with "
                                                         "content (blank ones skipped; default: 8)")
    p.add_argument("--size", type=int, default=64, help="display size T, small for a quick scan (default: 64)")
    p.add_argument("--fps", type=float, default=15.0, help="frames per second sampled from the input (default: 15)")
    p.add_argument("--steps", type=int, default=200, help="Adam steps per frame (default: 200)")
    p.add_argument("--seeds", type=int, default=1, help="random starts per frame (default: 1)")
    p.add_argument("--solver", choices=SOLVERS, default=PRESETS["fast"]["solver"],
                   help="qk (default) or headspace (layer 0 only, the embedding solver above it), or embedding")
    p.add_argument("--display", choices=DISPLAYS, default="sink",
                   help="sink (default; token 0 an attention sink, the frame at its true brightness, T+1 positions) "
                        "or zscore (the reference's row-normalised target and z-scored picture)")
    p.add_argument("--lr", type=float, help="peak learning rate of the one cosine cycle (default: --preset fast's, "
                                            f"{PRESETS['fast']['lr']} for qk, {FAST_SOLVERS['headspace']['lr']} for headspace, "
                                            f"{FAST_SOLVERS['embedding']['lr']} for the "
                                            "embedding solver)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the starts (default: 0)")
    p.add_argument("-o", "--output", default="survey", help="output prefix (default: survey)")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """The `survey` command: sample frames, survey, write the three files, print the top rows."""
    # --preset fast's optimiser, with the learning rate each solver wants (benchmarks/RESULTS.md); --solver
    # embedding runs every layer as the layers above 0 run
    chosen = {"steps": args.steps, "seeds": args.seeds, "display": args.display,
              **({} if args.lr is None else {"lr": args.lr})}
    above = preset_settings("fast", 1, **chosen)
    settings = preset_settings("fast", 0, solver=args.solver, **chosen) if args.solver in HEAD_SPACE else above
    settings.check()  # the rules render applies: one set for every command
    check_clip_options(args.size, args.fps, args.seed)
    if not 1 <= args.frames <= MAX_FRAMES:
        raise BadInputError(f"--frames must be in 1..{MAX_FRAMES} (sample frames, all in one program), got {args.frames}.")
    paths = claim_outputs(args)
    _, info = load_layer(args.model, 0)  # the config: layer count and positions, before any work
    layers = parse_layers(args.layers, info.config.n_layer)
    encoding = settings.encoding(info.config.causal)  # refuses --mode full for an encoder
    tokens, positions = encoding.tokens(args.size), info.config.n_positions
    if tokens > positions:
        raise BadInputError(f"--size {args.size} needs {tokens} positions with --display {args.display} but the model "
                            f"has {positions}: use --size {largest_size(encoding, positions)} or less.")
    clip = read_clip(args.input, size=args.size, fps=args.fps)
    content = fidelity.has_content(clip.frames, encoding.region(args.size))
    index = sample_frames(content, args.frames)
    N, n = len(clip.frames), int(content.sum())
    if not len(index):
        raise BadInputError(f"No frame of the {N} of {clip.label} has content (a target's standard deviation over "
                            f"the shown region >= {fidelity.CONTENT_STD}): every head shows a blank frame alike.")
    fewer = (f"only {n} of the {N} frames have content: surveying {n}, not {args.frames}"
             if len(index) < args.frames else None)
    print(f"model: {info.source}\ninput: {clip.label}, frames {index.tolist()} of {N} ({n} with content) at "
          f"{args.size}x{args.size}; layers {args.layers}, {info.config.n_head} heads each"
          + (f"\nnote: {fewer}" if fewer else ""), file=sys.stderr)
    t0 = time.perf_counter()
    rows = survey(args.model, layers, clip.frames[index], settings, seed=args.seed, above=above)
    seconds = time.perf_counter() - t0
    solvers = {r["solver"] for r in rows}
    solver = solvers.pop() if len(solvers) == 1 else f"{settings.solver} at layer 0, embedding above"
    caption = (f"{args.model}, {len(index)} content frames of {clip.label} at {args.size}x{args.size}, "
               f"steps {args.steps}, seeds {args.seeds}, solver {solver}, display {args.display}")
    note = NOTE.format(n=len(index))
    summary = {"written_by": mark("survey"), "input": clip.label, "model": info.as_dict(), "layers": layers,
               "frames": index.tolist(), "frames_asked": args.frames, "clip_frames": N, "clip_content_frames": n,
               "content_std": fidelity.CONTENT_STD, **({"frames_note": fewer} if fewer else {}), "note": note,
               "size": args.size, "fps": clip.fps, "seed": args.seed, "settings": dataclasses.asdict(settings),
               "settings_above_layer_0": dataclasses.asdict(above),
               **encoding.constants(args.size),
               "seconds": seconds, "rows": rows}
    team = current()
    if not team.writer:  # process 0 writes the files
        team.gather("written")
        print(f"{team.label()}: surveyed its share of the {len(rows)} heads; process 0 wrote {args.output}.*")
        return 0
    write_outputs(paths, summary, caption, note)
    team.gather("written", wait=False)
    print_top(rows)
    ties = sum(bool(r["tie_with_best"]) for r in rows[1:])
    print(f"{len(rows)} heads surveyed in {seconds:.1f} s (compiling included), {ties} tied with the best; "
          f"wrote {', '.join(map(str, paths))}")
    return 0


def write_outputs(paths: list[Path], summary: dict, caption: str, note: str) -> None:
    """PREFIX.json (the summary), .md (the ranking) and .png (the heatmap), each written whole."""
    rows, picture = summary["rows"], io.BytesIO()
    heatmap(rows, caption).savefig(picture, format="png", metadata={"Software": mark("survey")})
    for path, data in zip(paths, (json.dumps(summary, indent=1).encode(), markdown(rows, caption, note).encode(),
                                  picture.getvalue())):
        write_atomic(path, data)


def claim_outputs(args) -> list[Path]:
    """PREFIX.json, .md and .png, each a path the survey may write (outputs.claim), before any work."""
    prefix = Path(args.output)
    if not prefix.name or args.output.endswith(os.sep) or prefix.is_dir():
        raise BadInputError(f"-o takes a file name prefix (PREFIX.json, .md, .png are written), got '{args.output}'.")
    if not prefix.parent.is_dir() or not os.access(prefix.parent, os.W_OK):
        raise BadInputError(f"Output directory {prefix.parent} does not exist or is not writable.")
    return [claim(prefix.with_name(prefix.name + ext), "survey", inputs={"the input": args.input, "the model": args.model})
            for ext in (".json", ".md", ".png")]


def print_top(rows: list[dict]) -> None:
    """The TOP rows as an aligned table on stdout."""
    table = [[name for name, _ in COLUMNS]] + [[cell(r, i) for _, cell in COLUMNS] for i, r in enumerate(rows[:TOP], 1)]
    widths = [max(len(line[c]) for line in table) for c in range(len(COLUMNS))]
    for line in table:
        print(" ".join(cell.rjust(w) for cell, w in zip(line, widths)))
