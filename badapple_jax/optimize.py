"""Multi-start optimisation of input embeddings, one compiled step per chunk of frames (SPEC section 6).

For every frame: `seeds` random starts explored for steps // 4 Adam steps each, the best start kept,
then refined for the remaining steps with a fresh Adam and schedule. Frames and seeds are vmapped
(folded into one batch axis) and the steps run in `lax.scan`, so a whole chunk is one XLA program.

Each frame's gradient is that of its own loss (the reference differentiates the chunk's MEAN loss,
which scales gradients by 1/chunk; Adam is invariant to that scale except through its eps), so a
frame's result does not depend on the other frames of its chunk.
"""
import dataclasses
import time
from typing import Iterator

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from badapple_jax.kernel import causal_softmax, head_logits
from badapple_jax.loss import frame_loss
from badapple_jax.targets import desired_logits
from badapple_jax.weights import HeadWeights


@dataclasses.dataclass(frozen=True)
class Settings:
    """Optimiser settings; the defaults are the reference's."""

    steps: int = 1500  # Adam steps per frame: explore = steps // 4 per seed, refine = the rest
    seeds: int = 3  # random starts explored per frame
    lr: float = 0.1  # peak learning rate of each warm-restart cycle
    lr_min: float = 1e-4  # eta_min: the learning rate at the end of each cycle
    init_scale: float = 0.1  # X0 ~ N(0, 1) * init_scale
    seed_select: str = "frame"  # "frame": best start per frame; "chunk": one per chunk by mean loss (reference)

    @property
    def explore(self) -> int:
        return self.steps // 4

    @property
    def refine(self) -> int:
        return self.steps - self.explore


@flax.struct.dataclass
class ChunkResult:
    x: jax.Array  # [B, T, E] final embeddings
    attention: jax.Array  # [B, T, T] attention maps of the final embeddings
    loss: jax.Array  # [B] loss computed in the last refine step (as the reference reports it)
    seed: jax.Array  # [B] int, the start kept for refinement
    explore_loss: jax.Array  # [B, S] loss of each start in its last explore step
    explore_trace: jax.Array  # [B, explore, S] loss at every explore step
    refine_trace: jax.Array  # [B, refine] loss at every refine step


def warm_restart_cosine(lr, lr_min, T_0, n_steps) -> optax.Schedule:
    """PyTorch's CosineAnnealingWarmRestarts (T_mult 1) stepped after every update:
    lr(t) = lr_min + (lr - lr_min) (1 + cos(pi (t mod T_0) / T_0)) / 2."""
    cycle = optax.cosine_decay_schedule(lr, T_0, alpha=lr_min / lr)
    n_cycles = -(-n_steps // T_0)
    return optax.join_schedules([cycle] * n_cycles, [T_0 * i for i in range(1, n_cycles)])


def phase_optimizer(settings: Settings, n_steps: int) -> optax.GradientTransformation:
    """Adam with PyTorch's defaults and a fresh warm-restart schedule with T_0 = max(n_steps // 4, 50)."""
    T_0 = max(n_steps // 4, 50)
    return optax.adam(warm_restart_cosine(settings.lr, settings.lr_min, T_0, n_steps), b1=0.9, b2=0.999, eps=1e-8)


def frame_losses(x, w: HeadWeights, d):  # [N, T, E], [N, T, T] -> [N]
    return frame_loss(jax.vmap(head_logits, in_axes=(0, None))(x, w), d)


def adam_phase(x, w: HeadWeights, d, settings: Settings, n_steps: int):  # [N, T, E] -> [N, T, E], [n_steps, N]
    """`n_steps` Adam updates of every frame's embedding from a fresh optimiser state."""
    opt = phase_optimizer(settings, n_steps)

    def total_loss(x):
        losses = frame_losses(x, w, d)
        return jnp.sum(losses), losses

    def step(carry, _):
        x, state = carry
        (_, losses), g = jax.value_and_grad(total_loss, has_aux=True)(x)
        updates, state = opt.update(g, state)
        return (optax.apply_updates(x, updates), state), losses

    (x, _), trace = jax.lax.scan(step, (x, opt.init(x)), length=n_steps)
    return x, trace


def select_seed(explore_loss, valid, how: str):  # [S, B], [B] bool -> [B] int
    """Best start per frame, or the reference's single start per chunk by its frames' mean loss."""
    if how == "frame":
        return jnp.argmin(explore_loss, axis=0)
    chunk_mean = jnp.sum(jnp.where(valid, explore_loss, 0.0), axis=1) / jnp.maximum(jnp.sum(valid), 1)
    return jnp.full(explore_loss.shape[1], jnp.argmin(chunk_mean))


def multi_start(w: HeadWeights, d, x0, valid, settings: Settings) -> ChunkResult:
    """Explore every start in `x0` [S, B, T, E] against desired logits `d` [B, T, T], keep the best, refine."""
    S, B, T, E = x0.shape
    d_all = jnp.broadcast_to(d, (S, B, T, T)).reshape(S * B, T, T)
    x, explore_trace = adam_phase(x0.reshape(S * B, T, E), w, d_all, settings, settings.explore)
    explore_trace = explore_trace.reshape(-1, S, B)
    seed = select_seed(explore_trace[-1], valid, settings.seed_select)
    x = x.reshape(S, B, T, E)[seed, jnp.arange(B)]
    x, refine_trace = adam_phase(x, w, d, settings, settings.refine)
    attn = causal_softmax(jax.vmap(head_logits, in_axes=(0, None))(x, w))
    return ChunkResult(
        x, attn, refine_trace[-1], seed, explore_trace[-1].T, explore_trace.transpose(2, 0, 1), refine_trace.T
    )


def initial_embeddings(seed: int, frame_index, n_seeds: int, T: int, E: int, scale: float):  # [B] -> [S, B, T, E]
    """N(0, 1) * scale, keyed by (seed, frame index, start) so a frame's start never depends on its chunk."""

    def one(i, s):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), i), s)
        return jax.random.normal(key, (T, E), jnp.float32) * scale

    starts = jnp.arange(n_seeds)
    return jax.vmap(lambda s: jax.vmap(lambda i: one(i, s))(frame_index))(starts)


def optimize_chunk(w: HeadWeights, frames, frame_index, valid, seed, settings: Settings) -> ChunkResult:
    """Frames [B, T, T] in [0, 1] -> their optimised embeddings and attention maps (jit with static settings)."""
    B, T, _ = frames.shape
    x0 = initial_embeddings(seed, frame_index, settings.seeds, T, w.config.n_embd, settings.init_scale)
    return multi_start(w, desired_logits(frames), x0, valid, settings)


optimize_chunk_jit = jax.jit(optimize_chunk, static_argnames=("settings",))


def chunk_inputs(frames: np.ndarray, start: int, chunk_size: int):  # -> frames [B,T,T], index [B], valid [B]
    """One chunk, the last padded by repeating its final frame so every chunk has the compiled shape."""
    stop = min(start + chunk_size, len(frames))
    index = np.arange(start, start + chunk_size)
    valid = index < stop
    index = np.minimum(index, stop - 1)
    return frames[index], index.astype(np.int32), valid


def compile_chunk(w: HeadWeights, T: int, chunk_size: int, settings: Settings):
    """Ahead-of-time compile of `optimize_chunk` for one chunk shape -> (program, seconds it took)."""
    t0 = time.perf_counter()
    shapes = (
        jax.ShapeDtypeStruct((chunk_size, T, T), jnp.float32),
        jax.ShapeDtypeStruct((chunk_size,), jnp.int32),
        jax.ShapeDtypeStruct((chunk_size,), jnp.bool_),
        jax.ShapeDtypeStruct((), jnp.int32),
    )
    compiled = optimize_chunk_jit.lower(w, *shapes, settings=settings).compile()
    return compiled, time.perf_counter() - t0


def optimize_frames(
    w: HeadWeights,
    frames: np.ndarray,
    settings: Settings,
    *,
    seed: int = 0,
    chunk_size: int = 64,
    progress: bool = True,
    compiled=None,
) -> Iterator[tuple[int, ChunkResult]]:
    """Optimise every frame [N, T, T] in [0, 1], chunk after chunk through one compiled program.

    Yields (start, result) per chunk, padding removed, arrays on the host. `compiled` is the
    program from `compile_chunk` for this chunk size (compiled here when not given)."""
    chunk_size = min(chunk_size, len(frames))
    if compiled is None:
        compiled, _ = compile_chunk(w, frames.shape[1], chunk_size, settings)
    losses = []
    with tqdm(total=len(frames), unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(frames), chunk_size):
            f, index, valid = chunk_inputs(frames, start, chunk_size)
            result = jax.device_get(compiled(w, f, index, valid, np.int32(seed)))
            n = int(valid.sum())
            result = jax.tree.map(lambda a: a[:n], result)
            losses.extend(result.loss.tolist())
            bar.set_postfix(mean_loss=f"{np.mean(losses):.4f}")
            bar.update(n)
            yield start, result
