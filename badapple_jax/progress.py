"""How far the running chunk has got, reported from inside its compiled program, so a progress bar moves
while a chunk computes instead of once per chunk.

A program compiled with `progress` on runs each phase as REPORTS blocks of steps (`scan`) and, after each
block, calls `jax.debug.callback` with the share of the chunk's Adam updates done (`Settings.frame_steps`: every
start explored, the kept one refined). The callback carries one float32 scalar, and no conditional enters the
step (a GPU would copy its predicate to the host every step). A program compiled without it is unchanged; XLA's
persistent cache does not store programs with host callbacks, so only a program that shows a bar has them
(`plan(..., options=PhaseOptions(progress=True))`, the command without -q). Its cost: benchmarks/RESULTS.md.
"""
import jax
import jax.numpy as jnp

REPORTS = 20  # reports per phase: the bar moves in steps of ~5% of a phase


class Running:
    """The share of the running chunk's updates done, in [0, 1]: set from the program, read by the bar."""

    done = 0.0

    @classmethod
    def restart(cls) -> None:  # a chunk is about to run
        cls.done = 0.0

    @classmethod
    def reached(cls, share) -> None:  # called by the program (on every device of a mesh: the same share)
        cls.done = max(cls.done, float(share))


def scan(step, carry, n_steps: int, share=None, every: int | None = None, after=None):
    """jax.lax.scan(step, carry, length=n_steps) -> (carry, ys), in blocks of `every` steps (the last one shorter),
    `after(carry)` applied after each; with `share` (steps done -> share of the chunk done) each block is followed by
    a report of its share, in REPORTS blocks when `every` is None. A program with reports and one without compute
    in the same blocks."""
    if every is None:
        if share is None:
            return jax.lax.scan(step, carry, None, length=n_steps)
        every = max(n_steps // REPORTS, 1)
    after = after or (lambda c: c)
    blocks, rest = divmod(n_steps, every)

    def block(carry, b, k):  # k steps from step b * every, then `after` and a report
        carry, ys = jax.lax.scan(step, carry, None, length=k)
        if share is not None:
            jax.debug.callback(Running.reached, jnp.float32(share(b * every + k)))
        return after(carry), ys

    carry, ys = jax.lax.scan(lambda c, b: block(c, b, every), carry, jnp.arange(blocks))
    ys = jax.tree.map(lambda y: y.reshape(blocks * every, *y.shape[2:]), ys)
    if rest:
        carry, tail = block(carry, blocks, rest)
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, tail)
    return carry, ys
