"""How far the running chunk has got, reported from inside its compiled program, so a progress bar moves
while a chunk computes instead of once per chunk; and the blocks of steps those reports and the early stop share.

A program compiled with `progress` on runs each phase as REPORTS blocks of steps (`scan`) and, after each
block, calls `jax.debug.callback` with the share of the chunk's Adam updates done (`Settings.frame_steps`: every
start explored, the kept one refined). The callback carries one float32 scalar, and no conditional enters the
step (a GPU would copy its predicate to the host every step). A program compiled without it is unchanged; XLA's
persistent cache does not store programs with host callbacks, so only a program that shows a bar has them
(`plan(..., options=PhaseOptions(progress=True))`, the command without -q). Its cost: benchmarks/RESULTS.md.

The early stop (`scan(..., until=...)`) asks its question once a block, in a `lax.while_loop`'s predicate: a GPU
copies that one boolean to the host REPORTS times a phase, never once a step.
"""
import jax
import jax.numpy as jnp

REPORTS = 20  # blocks per phase: the bar moves in steps of ~5% of a phase, the early stop looks as often


class Running:
    """The share of the running chunk's updates done, in [0, 1]: set from the program, read by the bar."""

    done = 0.0

    @classmethod
    def restart(cls) -> None:  # a chunk is about to run
        cls.done = 0.0

    @classmethod
    def reached(cls, share) -> None:  # called by the program (on every device of a mesh: the same share)
        cls.done = max(cls.done, float(share))


def scan(step, carry, n_steps: int, share=None, until=None):
    """jax.lax.scan(step, carry, length=n_steps) -> (carry, ys). With `share` (steps done -> share of the chunk
    done) or `until` (carry -> bool scalar) the steps run in REPORTS blocks: each followed by a report of its
    share; no block starting once `until(carry)` holds, the steps not run given the ys of the last one run (`until`
    must mean that further steps change nothing that counts). The remainder of n_steps / REPORTS always runs."""
    if share is None and until is None:
        return jax.lax.scan(step, carry, None, length=n_steps)
    k = max(n_steps // REPORTS, 1)
    blocks, rest = divmod(n_steps, k)

    def block(carry, b):  # k steps, then a report
        carry, ys = jax.lax.scan(step, carry, None, length=k)
        if share is not None:
            jax.debug.callback(Running.reached, jnp.float32(share((b + 1) * k)))
        return carry, ys

    if until is None:
        carry, ys = jax.lax.scan(block, carry, jnp.arange(blocks))
    else:
        carry, ys = blocks_until(block, carry, blocks, until)
    ys = jax.tree.map(lambda y: y.reshape(blocks * k, *y.shape[2:]), ys)
    if rest:
        carry, tail = jax.lax.scan(step, carry, None, length=rest)
        if share is not None:
            jax.debug.callback(Running.reached, jnp.float32(share(n_steps)))
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, tail)
    return carry, ys


def blocks_until(block, carry, n_blocks: int, until):  # -> carry, ys [n_blocks, k, ...]
    """`block` (carry, b) -> (carry, ys [k, ...]) for b = 0, 1, ... while b < n_blocks and not `until(carry)`; the
    rows of the blocks not run repeat the last row run."""
    shapes = jax.eval_shape(lambda c: block(c, 0)[1], carry)
    ys = jax.tree.map(lambda s: jnp.zeros((n_blocks, *s.shape), s.dtype), shapes)

    def body(state):
        b, carry, ys = state
        carry, y = block(carry, b)
        return b + 1, carry, jax.tree.map(lambda a, y: a.at[b].set(y), ys, y)

    ran, carry, ys = jax.lax.while_loop(lambda s: (s[0] < n_blocks) & ~until(s[1]), body, (0, carry, ys))
    run = jnp.arange(n_blocks) < ran  # ran >= 1: nothing has reached its goal before a step
    ys = jax.tree.map(lambda a: jnp.where(run.reshape(-1, *[1] * (a.ndim - 1)), a, a[ran - 1, -1]), ys)
    return carry, ys
