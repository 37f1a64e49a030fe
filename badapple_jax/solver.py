"""Solvers: the parameters the optimiser moves, and the way back from them to an input embedding X.

The optimiser asks one object, never the solver's name (as it asks an `Encoding`):

    width(w)          P, the parameters per token for the head (or group of heads) `w`
    init(keys, w, d, scale, warm)  [S, B] random keys, [B, (H,) L, L] desired logits -> [S, B, L, P] starts: the
                      parameters of X ~ N(0, scale^2) [L, n_embd], one per key (warm: head space's start 0 by SVD)
    logits(p, w)      [L, P] -> [H, L, L] the logits each head of `w` computes from p (H = 1 for one head)
    qk(p, w)          [L, P] -> R q, R k [H, L, D]: their two sides, logits = R q (R k)^T / sqrt(D) (the loss's)
    to_x(p)           [L, P] -> [L, E] the input embedding that shows the head what p does
    project(p)        [..., L, P] -> the nearest parameters an embedding reaches (the identity where all are):
                      applied every PROJECT_EVERY steps and at the end of every phase (PROJECT_EVERY 0: at the
                      end only), before anything is lifted or reported
    check(result, i)  on the host, after a chunk of the frames at `i`: refuse a result whose X does not show
                      what the parameters did

`Embedding` optimises X itself (the reference's method, P = n_embd). `HeadSpace` (headspace.py, layer 0 only)
optimises z, 2 d_head numbers per row, and lifts it; `QKSpace` (the same, the fast preset's) the head's q and k
rows themselves, put back in reach by `project`. All are pytrees: jitted functions take them as arguments.
`make_solver` maps the name users give (`Settings.solver`) to the object, in this one place.
"""
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from badapple_jax.headspace import HeadSpace, QKSpace, head_space, qk_space
from badapple_jax.kernel import head_logits, rotated_qk
from badapple_jax.model import HeadWeights, group_of

SOLVERS = ("embedding", "headspace", "qk")
HEAD_SPACE = ("headspace", "qk")  # the solvers that lift from the head's own space: layer 0 only


@flax.struct.dataclass
class Embedding:
    """The embedding solver: the parameters are X, so every lift and check is the identity."""

    PROJECT_EVERY = 0  # every X is an embedding
    EIGEN_MATMULS = True  # on a CPU its backward [B*T, 2 d_head] x [2 d_head, n_embd] matmul is faster there (cpu.py)

    def width(self, w: HeadWeights) -> int:
        return w.config.n_embd

    def init(self, keys, w: HeadWeights, d, scale, warm_start: bool = False):  # [S, B] keys -> [S, B, L, E]
        """The random starts themselves: X ~ N(0, scale^2) [L, n_embd] from each key."""
        return random_embeddings(keys, np.shape(d)[-1], w.config.n_embd, scale)

    def logits(self, p, w: HeadWeights):  # [L, E] -> [H, L, L]: the kernel of each head p drives
        if group_of(w):  # a group: the kernel vmapped over its head axis
            return jax.vmap(head_logits, in_axes=(None, 0))(p, w)
        return head_logits(p, w)[None]  # one head: the unbatched kernel, whose float rounding a vmap would change

    def qk(self, p, w: HeadWeights):  # [L, E] -> R q, R k: [H, L, D] each, the sides of each head's logits
        if group_of(w):
            return jax.vmap(rotated_qk, in_axes=(None, 0))(p, w)
        return tuple(a[None] for a in rotated_qk(p, w))

    def to_x(self, p):
        return p

    def project(self, p):
        return p

    def check(self, result, index) -> None:
        """Nothing to check: X is what was optimised."""


Solver = Embedding | HeadSpace | QKSpace


def random_embeddings(keys, L: int, E: int, scale):  # [S, B] keys -> [S, B, L, E]: N(0, 1) * scale from each key
    return jax.vmap(jax.vmap(lambda key: jax.random.normal(key, (L, E), jnp.float32) * scale))(keys)


def make_solver(name: str, w: HeadWeights) -> Solver:
    """The solver `name` (`SOLVERS`) for the head or group of heads `w`; head space refuses, in its own terms, a
    head it cannot run (above layer 0, as many q/k columns as n_embd)."""
    return {"embedding": lambda w: Embedding(), "headspace": head_space, "qk": qk_space}[name](w)


def as_solver(solver: Solver | None) -> Solver:
    """A solver given to the API: None is the embedding solver (the reference's)."""
    return Embedding() if solver is None else solver
