"""Solvers: the parameters the optimiser moves, and the way back from them to an input embedding X.

The optimiser asks one object, never the solver's name (as it asks an `Encoding`):

    width(w)          P, the parameters per token for the head (or group of heads) `w`
    init(x0, d, warm) [S, B, L, E] random embeddings, [B, (H,) L, L] desired logits -> [S, B, L, P] starts
    logits(p, w)      [L, P] -> [H, L, L] the logits each head of `w` computes from p (H = 1 for one head)
    to_x(p)           [L, P] -> [L, E] the input embedding that shows the head what p does
    check(result, i)  on the host, after a chunk of the frames at `i`: refuse a result whose X does not show
                      what the parameters did

`Embedding` optimises X itself (the reference's method, P = n_embd). `HeadSpace` (headspace.py, layer 0 only)
optimises z, 2 d_head numbers per row, and lifts it. Both are pytrees: jitted functions take them as arguments.
`make_solver` maps the name users give (`Settings.solver`) to the object, in this one place.
"""
import flax.struct
import jax

from badapple_jax.headspace import HeadSpace, head_space
from badapple_jax.kernel import head_logits
from badapple_jax.model import HeadWeights, group_of

SOLVERS = ("embedding", "headspace")


@flax.struct.dataclass
class Embedding:
    """The embedding solver: the parameters are X, so every lift and check is the identity."""

    def width(self, w: HeadWeights) -> int:
        return w.config.n_embd

    def init(self, x0, d, warm_start: bool = False):  # [S, B, L, E] -> the same: the random starts themselves
        return x0

    def logits(self, p, w: HeadWeights):  # [L, E] -> [H, L, L]: the kernel of each head p drives
        if group_of(w):  # a group: the kernel vmapped over its head axis
            return jax.vmap(head_logits, in_axes=(None, 0))(p, w)
        return head_logits(p, w)[None]  # one head: the unbatched kernel, whose float rounding a vmap would change

    def to_x(self, p):
        return p

    def check(self, result, index) -> None:
        """Nothing to check: X is what was optimised."""


Solver = Embedding | HeadSpace


def make_solver(name: str, w: HeadWeights) -> Solver:
    """The solver `name` (`SOLVERS`) for the head or group of heads `w`; head space refuses, in its own terms, a
    head it cannot run (above layer 0, as many q/k columns as n_embd)."""
    return {"embedding": lambda w: Embedding(), "headspace": head_space}[name](w)


def as_solver(solver: Solver | None) -> Solver:
    """A solver given to the API: None is the embedding solver (the reference's)."""
    return Embedding() if solver is None else solver
