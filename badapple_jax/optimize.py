"""Multi-start optimisation of one chunk of frames as one XLA program (SPEC sections 6 and 9).

For every frame: `seeds` random starts explored for steps // 4 Adam steps each, the best start kept,
then refined for the remaining steps with a fresh Adam and schedule (the one-cycle schedule runs one
start's steps as one phase: there is nothing to choose); `PhaseOptions.optimizer` puts another optax
transformation in Adam's place. Frames and seeds are vmapped and the steps run in `lax.scan`. The
parameters are the solver's (`solver.py`): the embedding X itself (`Embedding`, the reference's method) or the
head-space z of `headspace.py`, lifted to X at the end; either way the final X is checked through the ordinary kernel.

Each frame's gradient is that of its own loss (the reference differentiates the chunk's MEAN loss,
which scales gradients by 1/chunk; Adam is invariant to that scale except through its eps), so a
frame's result does not depend on the other frames of its chunk.

`Settings` is a pytree: its numbers (`NUMBERS`: learning rates, b2, init scale, sink constants) are leaves,
traced when it is passed to a jitted function as an ordinary argument, and the rest (the step plan: steps,
seeds, schedule, solver, encoding, ...) is static, in its tree structure. So a sweep over the numbers runs one
compiled program, and a change of plan compiles a new one.
"""
import dataclasses
import math
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from badapple_jax.encoding import SINK_BLACK, SINK_Z, check_sink, make_encoding
from badapple_jax.errors import BadInputError, OptionError
from badapple_jax.headspace import svd_start  # noqa: F401  (the API's name for it before solver.py)
from badapple_jax.layers import masked_softmax
from badapple_jax.loss import frame_loss, qk_loss
from badapple_jax.model import HeadWeights, check_fields, group_of, is_int
from badapple_jax.progress import scan as progress_scan
from badapple_jax.solver import HEAD_SPACE, SOLVERS, Embedding, Solver, as_solver, random_embeddings  # noqa: F401  (SOLVERS: the API's)
from badapple_jax.targets import check_on_mask, frame_values, traced

SCHEDULES = ("restarts", "cosine")
TRANSPOSED = 1 << 30  # frame-index offset that keys the starts of a frame's transposed copy
RETRY = 1 << 29  # frame-index offset that keys the fresh starts of a frame retried after a non-finite loss
PRECISIONS = {"fp32": "float32", "tf32": "tensorfloat32", "bf16": "bfloat16"}  # -> jax.default_matmul_precision
# Upper bounds, far beyond any useful value: 10 million Adam steps is days per frame, and steps or starts of
# 1000 saturate every LayerNorm; every command (render, survey, the API) refuses more.
LIMITS = {"steps": 10**7, "seeds": 10**4, "lr": 1e3, "init_scale": 1e3}
# The Settings fields that change no shape and no step: traced, so a sweep over them compiles once.
NUMBERS = ("lr", "lr_min", "b2", "init_scale", "sink_z", "sink_black")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Optimiser settings; the defaults are the reference's. A pytree whose leaves are the numbers (`NUMBERS`);
    the other fields, the step plan, are static: pass it to `jax.jit` as an ordinary argument.

        steps, seeds          Adam steps per frame (a quarter explore each start), random starts per frame
        lr, lr_min, b2        each cosine cycle's peak and final learning rate; Adam's beta2
        schedule              "restarts" (warm restarts) or "cosine" (one cycle) per phase
        init_scale            the random starts: X0 ~ N(0, 1) * init_scale
        seed_select           "frame": each frame keeps its best start; "chunk": one for the chunk (reference)
        solver, warm_start    "embedding" optimises X; "headspace" z, "qk" the q and k rows, lifted to X
                              (warm_start: start 0 by SVD)
        precision             GPU matmuls: fp32, tf32 or bf16
        display, mode, sink_z, sink_black: the encoding, `encoding(causal)` (sink or zscore; causal, full or
                              quarter; the sink's Z / T and black level b)"""

    steps: int = 1500  # Adam steps per frame: explore = steps // 4 per seed, refine = the rest
    seeds: int = 3  # random starts explored per frame
    lr: float = 0.1  # peak learning rate of each cosine cycle
    lr_min: float = 1e-4  # eta_min: the learning rate at the end of each cycle
    b2: float = 0.999  # Adam's beta2 (PyTorch's default); 0.9 follows the shrinking gradient ~10x sooner
    schedule: str = "restarts"  # per phase: "restarts", warm restarts every max(n // 4, 50) steps; "cosine", one cycle
    init_scale: float = 0.1  # X0 ~ N(0, 1) * init_scale
    seed_select: str = "frame"  # "frame": best start per frame; "chunk": one per chunk by mean loss (reference)
    solver: str = "embedding"  # "embedding": optimise X (reference); "headspace" z, "qk" [q k]: lifted to X
    precision: str = "fp32"  # matmul precision on GPU: fp32, tf32 or bf16 (CPUs compute fp32 regardless)
    warm_start: bool = False  # headspace, qk: start 0 of each frame from a rank-d_head SVD of its target
    mode: str = "causal"  # "full": a second embedding shows the transposed target; "quarter": 2T + 1 tokens, one map
    display: str = "sink"  # "sink": token 0 an attention sink, true brightness (SPEC 11); "zscore": the reference
    sink_z: float = SINK_Z  # the sink display's Z / T: a white pixel is given 1 / Z of its row's attention
    sink_black: float = SINK_BLACK  # the sink display's black level b: pixels are given (f + b) / Z

    def check(self) -> None:
        """Refuse settings the optimiser cannot run, with one line naming the option. Traced numbers (under jit)
        are checked where they are known, as the settings were built: here only the plan is."""
        if any(traced(getattr(self, k)) for k in NUMBERS):
            return dataclasses.replace(self, **{k: getattr(Settings, k) for k in NUMBERS}).check()
        check_fields(self)
        rules = [
            (self.steps >= 4, f"`steps` must be at least 4 (explore is steps // 4), got {self.steps}"),
            (self.seeds >= 1, f"`seeds` must be at least 1, got {self.seeds}"),
            (math.isfinite(self.lr) and self.lr > 0, f"`lr` must be a positive number, got {self.lr}"),
            (math.isfinite(self.lr_min) and self.lr_min >= 0, f"`lr_min` must be a number >= 0, got {self.lr_min}"),
            (self.lr_min <= self.lr, f"`lr` {self.lr} is below `lr_min` {self.lr_min}, the floor of its schedule: "
                                     "raise `lr` or lower `lr_min`"),
            (math.isfinite(self.b2) and 0 <= self.b2 < 1, f"`b2` must be in [0, 1), got {self.b2}"),
            (self.schedule in SCHEDULES, f"`schedule` must be one of {', '.join(SCHEDULES)}, got {self.schedule}"),
            (math.isfinite(self.init_scale) and self.init_scale > 0,
             f"`init_scale` must be positive, got {self.init_scale}"),
            (self.seed_select in ("frame", "chunk"), f"`seed_select` must be frame or chunk, got {self.seed_select}"),
            (self.solver in SOLVERS, f"`solver` must be one of {', '.join(SOLVERS)}, got {self.solver}"),
            (self.precision in PRECISIONS, f"`precision` must be one of {', '.join(PRECISIONS)}, got {self.precision}"),
            (not self.warm_start or self.solver in HEAD_SPACE, "`warm_start` needs `solver` headspace or qk"),
            *((getattr(self, k) <= v, f"`{k}` must be at most {v}, got {getattr(self, k)}") for k, v in LIMITS.items()),
        ]
        for ok, message in rules:
            if not ok:
                raise OptionError(message + ".")
        make_encoding(self.display, self.mode)  # the encoding's own rules, under the same names
        check_sink(self.sink_z, self.sink_black, names=("sink_z", "sink_black"), mode=self.mode)

    def encoding(self, causal: bool):
        """The encoding of frames into targets and of maps into pictures (`encoding.py`) these settings name,
        for a causal model or an encoder (`ModelConfig.causal`)."""
        return make_encoding(self.display, self.mode, causal, z=self.sink_z, black=self.sink_black)

    @property
    def explore(self) -> int:
        """Steps each start explores: a quarter, as the reference; none for one start on one cycle."""
        return 0 if self.schedule == "cosine" and self.seeds == 1 else self.steps // 4

    @property
    def refine(self) -> int:
        return self.steps - self.explore

    @property
    def frame_steps(self) -> int:
        """Adam updates one frame costs: every start explores, the kept one refines (2250 by default)."""
        return self.seeds * self.explore + self.refine


jax.tree_util.register_dataclass(Settings, data_fields=list(NUMBERS),
                                 meta_fields=[f.name for f in dataclasses.fields(Settings) if f.name not in NUMBERS])


def traced_numbers(settings: Settings) -> Settings:
    """The settings as a compiled program takes them: every number a float32 scalar (the program is compiled
    for those, never for a Python float's weak type)."""
    return jax.tree.map(np.float32, settings)


# Named settings; options given explicitly override them. "reference": the reference's optimiser AND its
# row-normalised target and z-scored display, so losses compare with it; "fast": the cheapest measured
# setting at least as faithful as head space with the reference's optimiser (benchmarks/RESULTS.md):
# one start, one cosine cycle, a large step and a short memory of squared gradients, in the q and k rows.
PRESETS = {
    "reference": {"display": "zscore"},
    "fast": {"solver": "qk", "seeds": 1, "steps": 160, "lr": 0.5, "b2": 0.85, "schedule": "cosine"},
}
DEFAULT_PRESET = "fast"  # the command's when none is named: the best measured; `Settings()` stays the reference's
# "fast" with another solver: each wants its own steps. Head space's z and the embedding X (the solver above layer
# 0, where head space cannot run) as measured before the q/k solver's were: b2 0.9, X a smaller step and more of them.
FAST_SOLVERS = {"headspace": {"steps": 200, "lr": 0.5, "b2": 0.9}, "embedding": {"steps": 400, "lr": 0.1, "b2": 0.9}}


def preset_settings(name: str | None = None, layer: int = 0, **options) -> Settings:
    """The settings preset `name` names (None: the defaults) for a head at `layer`, with `options` (Settings
    fields) given explicitly over it. The fast preset takes another solver's own steps, lr and b2 (FAST_SOLVERS)
    where that solver runs instead: the embedding solver above layer 0 (head space cannot run there) unless
    `options` name a solver, or the solver `options` name. Not checked: `Settings.check` is."""
    if name is not None and name not in PRESETS:
        raise OptionError(f"`preset` must be one of {', '.join(PRESETS)}, got {name!r}.")
    if not is_int(layer):  # its range is the model's, checked where the layer is loaded
        raise OptionError(f"`layer` must be an integer, got {layer!r}.")
    preset = PRESETS[name] if name is not None else {}
    if name == "fast":
        solver = options.get("solver", "embedding" if layer else preset["solver"])
        preset = {**preset, "solver": solver, **FAST_SOLVERS.get(solver, {})}
    return Settings(**{**preset, **options})


@flax.struct.dataclass
class ChunkResult:
    """What `optimize_chunk` returns for B frames (full mode adds a view axis after B, colour a head axis H).
    `loss` is the one to quote: the loss of the saved embedding, which anyone recomputes from `x` (SPEC 5);
    `last_step_loss` is the value the reference reports, taken inside its last Adam step.

    L = encoding.tokens(T) tokens, E = n_embd, S = settings.seeds starts:
        x [B, L, E]                    the final embeddings X (a head-space solver's z lifted to X)
        attention [B, (H,) L, L]       softmax(A) of x through the ordinary kernel
        loss, last_step_loss [B]       as above; head_loss [B, H] is `loss` per head
        space_loss [B]                 the loss in the solver's own parameters (= loss for X)
        start [B] int                  which of the S starts was kept and refined
        explore_loss [B, S]            each start's loss at its last explore step
        explore_trace [B, explore, S], refine_trace [B, refine]: the loss at every step
        retried, failed [B] bool       the non-finite guard's: redone once; non-finite again
        picture [B, (H,) T, T]         what the display shows, in [0, 1] (`encoding.picture`)
        psnr, ssim [B]                 the picture against its frame, over the shown region
    The last five are set on the host (`chunks.run_chunk`, `finish_chunk`): None from the compiled program."""

    x: jax.Array  # [B, L, E] final embeddings (lifted from head space by that solver); L = encoding.tokens(T)
    attention: jax.Array  # [B, (H,) L, L] attention maps of the final embeddings, through the ordinary kernel
    loss: jax.Array  # [B] loss of the final embeddings `x` through the ordinary kernel: what x shows
    last_step_loss: jax.Array  # [B] loss computed in the last refine step, before its update (the reference's)
    head_loss: jax.Array  # [B, H] `loss` per head (H = 1 but for colour: R, G, B)
    space_loss: jax.Array  # [B] loss of the final parameters in the solver's own space (= loss for X)
    start: jax.Array  # [B] int, the index of the start kept for refinement
    explore_loss: jax.Array  # [B, S] loss of each start in its last explore step (its first, where none explores)
    explore_trace: jax.Array  # [B, explore, S] loss at every explore step
    refine_trace: jax.Array  # [B, refine] loss at every refine step
    # Set on the host by `chunks.run_chunk` and `chunks.finish_chunk`, None inside the compiled program:
    retried: jax.Array | None = None  # [B] bool: the first attempt went non-finite and the frame was redone
    failed: jax.Array | None = None  # [B] bool: non-finite on the retry too; shown from its best finite state
    picture: jax.Array | None = None  # [B, (H,) T, T] in [0, 1]: what the display shows (encoding.picture)
    psnr: jax.Array | None = None  # [B] dB of the picture against the target, over the shown region
    ssim: jax.Array | None = None  # [B] SSIM of the same


def warm_restart_cosine(lr, lr_min, T_0, n_steps) -> optax.Schedule:
    """PyTorch's CosineAnnealingWarmRestarts (T_mult 1) stepped after every update:
    lr(t) = lr_min + (lr - lr_min) (1 + cos(pi (t mod T_0) / T_0)) / 2."""
    cycle = optax.cosine_decay_schedule(lr, T_0, alpha=lr_min / lr)
    n_cycles = -(-n_steps // T_0)
    return optax.join_schedules([cycle] * n_cycles, [T_0 * i for i in range(1, n_cycles)])


def phase_optimizer(settings: Settings, n_steps: int) -> optax.GradientTransformation:
    """The default optimiser of every phase: Adam (PyTorch's b1 and eps, `settings.b2`) with a fresh schedule: warm
    restarts with T_0 = max(n_steps // 4, 50), the reference's, or one cosine cycle over the phase
    (CosineAnnealingLR). Any function of (settings, n_steps) to an optax transformation can stand in for it
    (`PhaseOptions.optimizer`); its numbers are read from `settings` as this one's are, traced."""
    if settings.schedule == "cosine":
        schedule = optax.cosine_decay_schedule(settings.lr, n_steps, alpha=settings.lr_min / settings.lr)
    else:
        schedule = warm_restart_cosine(settings.lr, settings.lr_min, max(n_steps // 4, 50), n_steps)
    return optax.adam(schedule, b1=0.9, b2=settings.b2, eps=1e-8)


@flax.struct.dataclass
class Chunk:
    """B frames optimised together, as `optimize_chunk` takes them (`chunks.chunk_inputs` builds one, padded)."""

    frames: jax.Array  # [B, (H,) T, T] in [0, 1] (uint8 scaled); one channel per head of a group
    index: jax.Array  # [B] int: each frame's index in the clip, which keys its random starts
    valid: jax.Array  # [B] bool: a real frame, not the padding of a last chunk


@flax.struct.dataclass
class Problem:
    """What the optimiser minimises for B frames, as an encoding states it (SPEC 5): the loss of each frame's logits
    against its desired logits `d` over the entries of `mask` (`loss.frame_loss`)."""

    d: jax.Array  # [B, H, L, L] desired logits, row-centred, zero outside the mask (H = 1 for one head)
    mask: jax.Array  # [L, L] bool: the entries the loss counts (NumPy, as encodings give it: the loss computes only
    # the strips of it that its rows reach, `loss.qk_loss`; a traced mask costs every logit)
    valid: jax.Array  # [B] bool: the real frames against a chunk's padding (the chunk-wide start choice counts them)


def head_losses(p, w, solver, problem: Problem):  # [B, L, P] -> [B, H]: each head's loss
    q, k = jax.vmap(solver.qk, in_axes=(0, None))(p, w)  # [B, H, L, D] each
    return qk_loss(q, k, problem.d, problem.mask)  # only the logits the mask counts are computed


def frame_losses(p, w, solver, problem: Problem):  # [..., B, L, P] -> [..., B], the mean over heads
    losses = lambda p: jnp.mean(head_losses(p, w, solver, problem), axis=-1)  # noqa: E731
    for _ in range(p.ndim - 3):  # seeds: vmapped, not reshaped, so a sharded frame axis stays whole
        losses = jax.vmap(losses)
    return losses(p)


@dataclasses.dataclass(frozen=True)
class PhaseOptions:
    """How each phase (explore, refine) of a compiled chunk runs besides its steps (static: each combination is its
    own program). `optimizer`: (settings, n_steps) -> the optax.GradientTransformation of a phase of n_steps,
    built afresh for each (default `phase_optimizer`, Adam on the settings' schedule), e.g.
    `lambda s, n: optax.sgd(s.lr)`; a module-level function, so equal options compile once. `keep_best`: end at each
    frame's lowest-loss finite parameters met on the way (the final ones included) instead of the last: the
    non-finite guard's retry, never on the hot path. `progress`: report the steps done to the host as they run
    (`progress.py`), for a progress bar."""

    optimizer: Callable[[Settings, int], optax.GradientTransformation] = phase_optimizer
    keep_best: bool = False
    progress: bool = False


def run_phase(p, w, solver, problem: Problem, settings: Settings, n_steps: int,
              options: PhaseOptions = PhaseOptions()):
    """`n_steps` updates of every frame's parameters (the solver's) by a fresh `options.optimizer(settings,
    n_steps)`, put back in reach by `solver.project` every `solver.PROJECT_EVERY` steps and at the end ([..., B, L, P]
    -> same, loss trace [n_steps, ..., B]).

    `options` (PhaseOptions): the optimiser, the best finite state kept instead of the last, progress reports."""
    opt = options.optimizer(settings, n_steps)

    def total_loss(p):
        losses = frame_losses(p, w, solver, problem)
        return jnp.sum(losses), losses

    def keep(best, p, losses):  # (p, loss) of each frame's lowest finite loss so far
        better = jnp.isfinite(losses) & (losses < best[1])
        return jnp.where(better[..., None, None], p, best[0]), jnp.where(better, losses, best[1])

    def step(carry, _):
        p, state, best = carry
        (_, losses), g = jax.value_and_grad(total_loss, has_aux=True)(p)
        if options.keep_best:
            best = keep(best, p, losses)
        updates, state = opt.update(g, state)
        return (optax.apply_updates(p, updates), state, best), losses

    best = (p, jnp.full(p.shape[:-2], jnp.inf)) if options.keep_best else None
    exploring = p.ndim == 4  # [S, B, L, P]: every start side by side; the refine phase (one start) follows it
    before, width = (0, p.shape[0]) if exploring else (settings.seeds * settings.explore, 1)
    share = (lambda steps: (before + steps * width) / settings.frame_steps) if options.progress else None  # noqa: E731
    every = solver.PROJECT_EVERY or None  # steps between the solver's projections (None: at the end only)
    back = (lambda c: (solver.project(c[0]), *c[1:])) if every else None  # noqa: E731
    (p, _, best), trace = progress_scan(step, (p, opt.init(p), best), n_steps, share, every, back)
    if options.keep_best:
        p = keep(best, p, frame_losses(p, w, solver, problem))[0]
    if options.keep_best or not every:  # the last block ended projected
        p = solver.project(p)
    return p, trace


def select_start(explore_loss, valid, how: str):  # [S, B], [B] bool -> [B] int
    """Best start per frame, or the reference's single start per chunk by its frames' mean loss;
    a start whose loss went non-finite counts as the worst."""
    explore_loss = jnp.where(jnp.isfinite(explore_loss), explore_loss, jnp.inf)
    if how == "frame":
        return jnp.argmin(explore_loss, axis=0)
    chunk_mean = jnp.sum(jnp.where(valid, explore_loss, 0.0), axis=1) / jnp.maximum(jnp.sum(valid), 1)
    return jnp.full(explore_loss.shape[1], jnp.argmin(chunk_mean))


def multi_start(w: HeadWeights, solver: Solver | None, problem: Problem, p0, settings: Settings,
                options: PhaseOptions = PhaseOptions()) -> ChunkResult:
    """Explore every start in `p0` [S, B, L, P] against `problem` (its desired logits `d` [B, (H,) L, L] over `mask`
    [L, L]), keep the best, refine. S is `settings.seeds`. `problem.valid` [B] bool marks the chunk's real frames
    against its padding: only they count when `settings.seed_select` is "chunk" (one start for all, by their mean
    loss). The result's `picture`, `psnr` and `ssim` stay None: `d` carries neither the frames nor their encoding.
    Draw them as `chunks.finish_chunk` does: `picture = encoding.picture(result.attention)`, then
    `psnr(picture, frames, encoding.region(T))`.

    `solver` (`solver.py`; None: `Embedding()`) owns the parameters: X itself (P = n_embd), or a HeadSpace's z
    (P = 2 d_head), lifted to X. `options` (PhaseOptions): the optimiser of each phase; the non-finite guard's retry
    ends each phase at its best finite parameters; a progress bar's program reports its steps to the host. Inside,
    heads are always a group (H >= 1); the result has one head's shapes for one head."""
    settings.check()
    check_on_mask(problem.mask, d=problem.d)
    solver = as_solver(solver)
    B, L = np.shape(problem.d)[0], np.shape(problem.mask)[0]
    heads = group_of(w)
    wanted = {"d": ("[B, (H,) L, L]", (B, *heads, L, L), problem.d),
              "p0": ("[seeds, B, L, P]", (settings.seeds, B, L, solver.width(w)), p0),
              "valid": ("[B]", (B,), problem.valid)}
    for name, (axes, shape, a) in wanted.items():
        if np.shape(a) != shape:
            raise BadInputError(f"{name} must be {axes} = {shape}, got shape {np.shape(a)}.")
    problem = problem.replace(d=jnp.reshape(problem.d, (B, -1, L, L)))  # [B, H, L, L]
    if settings.explore:
        p, explore_trace = run_phase(p0, w, solver, problem, settings, settings.explore, options)  # [explore, S, B]
        explore_loss = frame_losses(p, w, solver, problem) if options.keep_best else explore_trace[-1]  # [S, B]
        start = select_start(explore_loss, problem.valid, settings.seed_select)
        p = p[start, jnp.arange(B)]
    else:  # one start, nothing explored
        start, p = jnp.zeros(B, int), p0[0]
    p, refine_trace = run_phase(p, w, solver, problem, settings, settings.refine, options)
    if not settings.explore:  # the start's loss: the first refine step's, taken before its update
        explore_loss, explore_trace = refine_trace[:1], refine_trace[:0, None]  # [1, B], [0, 1, B]
    x = jax.vmap(solver.to_x)(p)
    A = jax.vmap(Embedding().logits, in_axes=(0, None))(x, w)  # [B, H, L, L]: the ordinary kernel
    per_head = frame_loss(A, problem.d, problem.mask)
    A = A.reshape(B, *heads, L, L)
    space_loss = frame_losses(p, w, solver, problem)
    return ChunkResult(
        x, masked_softmax(A, w.config.causal), per_head.mean(axis=-1), space_loss if options.keep_best else refine_trace[-1],
        per_head, space_loss, start, explore_loss.T, explore_trace.transpose(2, 0, 1), refine_trace.T,
    )


def checked_frames(frames, w: HeadWeights):
    """Frames as a head (or a group of H heads) is optimised to show: [N, T, T] ([N, H, T, T], one channel per
    head), at least one, as `targets.frame_values` takes them (uint8 scaled) -> float32; anything else is a
    BadInputError in the API's terms, before compiling."""
    group, shape = group_of(w), np.shape(frames)
    if len(shape) != 3 + len(group) or shape[1:1 + len(group)] != group:
        want = f"[N, {group[0]}, T, T] (one channel per head)" if group else "[N, T, T]"
        hint = " (one frame: frames[None])" if len(shape) == 2 + len(group) else ""
        raise BadInputError(f"frames must be {want} with square T x T frames, got shape {shape}{hint}.")
    if shape[0] == 0:
        raise BadInputError("frames is empty: give at least one frame.")
    return frame_values(frames)


def start_keys(seed: int, frame_index, n_seeds: int):  # [B] -> [S, B] keys
    """The random starts' keys, by (seed, frame index, start) so a frame's start never depends on its chunk."""
    one = lambda i, s: jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), i), s)  # noqa: E731
    return jax.vmap(lambda s: jax.vmap(lambda i: one(i, s))(frame_index))(jnp.arange(n_seeds))


def initial_embeddings(seed: int, frame_index, n_seeds: int, L: int, E: int, scale: float):  # [B] -> [S, B, L, E]
    """The embedding solver's random starts, N(0, 1) * scale, keyed by `start_keys`."""
    return random_embeddings(start_keys(seed, frame_index, n_seeds), L, E, scale)


def optimize_chunk(w: HeadWeights, solver: Solver | None, chunk: Chunk, seed, settings: Settings,
                   options: PhaseOptions = PhaseOptions()) -> ChunkResult:
    """A chunk's frames [B, T, T] in [0, 1] (or [B, H, T, T]: one channel per head of a group) -> optimised
    embeddings and attention maps, encoded as `settings.encoding` says for the head's model, by `solver`
    (`solver.make_solver(settings.solver, w)`; None: the embedding solver), from random starts keyed by `seed` and
    each frame's `chunk.index`. Jitted with `settings` an ordinary (traced) argument, one program serves every
    value of its numbers (`NUMBERS`).

    An encoding with two views per frame (full mode) optimises every frame's transpose alongside it, in
    the same vmapped batch, and each field of the result gains a view axis after the frame axis: [B, 2, ...].
    `options` (PhaseOptions): the optimiser of each phase; every phase ends at its best finite parameters (the
    non-finite guard's retry); the steps done are reported to the host (a progress bar's program)."""
    frames = checked_frames(chunk.frames, w)
    B, T = frames.shape[0], frames.shape[-1]
    frame_index, valid = chunk.index, chunk.valid
    for name, a, shape in (("index", frame_index, (B,)), ("valid", valid, (B,)), ("seed", seed, ())):
        if np.shape(a) != shape:
            raise BadInputError(f"{name} must have shape {shape} for {B} frames, got {np.shape(a)}.")
    solver = as_solver(solver)
    encoding = settings.encoding(w.config.causal)
    V = encoding.views
    frames = jnp.concatenate([frames, jnp.swapaxes(frames, -1, -2)][:V])  # [V B, ...]: view-major
    frame_index = jnp.concatenate([frame_index + v * TRANSPOSED for v in range(V)])
    valid = jnp.concatenate([valid] * V)
    problem = Problem(encoding.desired(frames), encoding.mask(T), valid)  # d [V B, (H,) L, L]
    # every solver starts where a random X would: head space from the z it would show the head, drawn in head space
    p0 = solver.init(start_keys(seed, frame_index, settings.seeds), w, problem.d, settings.init_scale,
                     settings.warm_start)
    result = multi_start(w, solver, problem, p0, settings, options)
    if V == 1:
        return result
    return jax.tree.map(lambda a: jnp.stack([a[v * B:(v + 1) * B] for v in range(V)], axis=1), result)


optimize_chunk_jit = jax.jit(optimize_chunk, static_argnames="options")  # settings: its numbers traced
