"""Head space (SPEC section 9): optimise what the head sees, 2 d_head numbers per row, then lift to X.

With u = X + pos (GPT-2: wpe; BERT: pos + type[0]), LayerNorm gives h = g * n + b where n has zero mean
and |n|^2 < n_embd. So
[q k] = n M + c with M = diag(g) [W_q W_k] and c = b [W_q W_k] + [b_q b_k], and since n sums to
zero only the column-centred Mc = M - mean_rows(M) matters. Take the thin SVD Mc = U S V^T and
z = n U (n's coordinates in the column space of Mc): then y = [q k] - c = z S V^T, |z| <= |n|,
and every z with |z| < sqrt(n_embd) is reached. This is SPEC's G = Mc^T Mc = L L^T with L = V S
instead of the Cholesky factor: the same ball, rotated; no inverse, so a degenerate head works too.

RMSNorm (Llama, SPEC 15) removes no mean: n is any vector with |n|^2 < n_embd, so M is not centred
and the top-up below need not be orthogonal to 1. With RoPE, z gives the unrotated [q~ k~] rows and
the logits rotate them as the kernel does, (R_i q~_i) . (R_j k~_j) / sqrt(d_head); no pos is added.

Rows are kept in the ball by a radial clip z = w min(1, R / |w|), R = sqrt(n_embd), which measured
better than a smooth squash (solutions sit near the boundary) and is the projection onto the ball.
LIFT: n = z U^T has |n| = |z|; a unit vector orthogonal to U (and to 1 for LayerNorm) tops |n|^2 up
to n_embd, a large scale makes the norm's eps negligible, and X = scale * n - pos. Only layer 0 has
this structure: above it, the norm sees the stream after whole blocks, not X + pos.

QK (`QKSpace`, the fast preset's): the same space in the coordinates the logits read, y = z S V^T + c, the
unrotated [q~ k~] rows themselves: the step computes no z S V^T and its gradient (half of a 257-token step's FLOPs). Its rows may leave the reachable
ellipsoid z = (y - c) (S V^T)^+ inside the ball; `project` puts each row back (y = ball(z) S V^T + c, exact for a
degenerate head too) every 20 steps and at the end of every phase (`optimize.run_phase`), before anything is
lifted or reported.
"""
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from badapple_jax.errors import BadInputError, OptionError
from badapple_jax.kernel import check_embedding
from badapple_jax.model import HeadWeights, ModelConfig, group_of, positions
from badapple_jax.rotary import rotate

LAYER0_ONLY = ("`solver` headspace and qk work at layer 0 only (above it the heads read the stream after whole "
               "blocks, not X + pos); use `solver` embedding for `layer` > 0.")
LIFT_RTOL, LIFT_ATOL = 1e-4, 1e-6  # the lift check's floor: float32 logits of O(10) leave ~1e-7 noise in a loss
LIFT_SCALE = 100.0  # |u| per coordinate after the lift: LayerNorm's eps then changes n by ~eps / scale^2 / 2


@flax.struct.dataclass
class HeadSpace:
    """The head-space solver (`solver.py`): z, 2 d_head numbers per row (per head of a group), lifted to X."""

    U: jax.Array  # [n_embd, 2 d_head H] orthonormal columns spanning Mc (zero where S = 0): n -> z = n U
    SVt: jax.Array  # [2 d_head H, 2 d_head H] S V^T: z -> y = [q k] - c
    c: jax.Array  # [2 d_head H]
    e_perp: jax.Array  # [n_embd] unit vector orthogonal to the columns of U (and to 1 for LayerNorm)
    pos: jax.Array  # [n_positions, n_embd]; [0, n_embd] where position enters by rotation
    config: ModelConfig = flax.struct.field(pytree_node=False)
    heads: int = flax.struct.field(pytree_node=False, default=0)  # 0: one head; H: a group sharing z (colour)

    def width(self, w) -> int:  # P: 2 d_head per head
        return self.U.shape[1]

    def init(self, keys, w, d, scale, warm_start: bool = False):  # [S, B] keys, [B, (H,) L, L] -> [S, B, L, P]
        """The z a random start X ~ N(0, scale^2) [L, n_embd] would show the head, drawn in head space
        (`random_z`); `warm_start` replaces start 0 by `svd_start`."""
        L = np.shape(d)[-1]
        p0 = jax.vmap(jax.vmap(lambda key: random_z(key, self, L, scale)))(keys)
        return p0.at[0].set(jax.vmap(svd_start, in_axes=(0, None))(d, self)) if warm_start else p0

    def logits(self, p, w):  # [L, P] -> [H, L, L], H = 1 for one head
        a = headspace_logits(p, self)
        return a if self.heads else a[None]

    def qk(self, p, w):  # [L, P] -> R q, R k: [H, L, D] each, H = 1 for one head
        q, k = headspace_qk(p, self)
        return (q, k) if self.heads else (q[None], k[None])

    def to_x(self, p):  # [L, P] -> [L, E]
        return lift(p, self)

    PROJECT_EVERY = 0  # every z is kept reachable inside the step (`ball`)
    EIGEN_MATMULS = False  # XLA's YNNPACK fusions run its step faster on a CPU (cpu.py)

    def project(self, p):
        return p

    def check(self, result, index) -> None:
        """The lifted X must show the head what z did: the same loss through the ordinary kernel (on the host:
        `result` a ChunkResult of the frames at `index`)."""
        bad = np.abs(result.loss - result.space_loss) > LIFT_RTOL * result.space_loss + LIFT_ATOL
        if np.any(bad):
            where = tuple(np.argwhere(bad)[0])  # (frame,) or (frame, view)
            raise RuntimeError(f"head-space lift failed at frame {index[where[0]]}: loss {result.space_loss[where]:.6g} "
                               f"in head space but {result.loss[where]:.6g} through the kernel (please report this)")


def head_space(w: HeadWeights) -> HeadSpace:
    """The head-space form of a layer-0 head, or of a group of heads stacked on a leading axis (their
    [q k] side by side: M is n_embd x 2 d_head H), computed once in float64 on the host."""
    if w.blocks:
        raise OptionError(LAYER0_ONLY)
    group = bool(group_of(w))
    qk = np.concatenate([w.w_q, w.w_k], axis=-1).astype(np.float64)  # [(H,) E, 2D]
    W = qk.transpose(1, 0, 2).reshape(qk.shape[1], -1) if group else qk  # [E, 2D H]: q1 k1 q2 k2 ...
    E = W.shape[0]
    first = (lambda a: np.asarray(a[0])) if group else np.asarray  # the norm and pos: shared by the group
    M = first(w.ln_g).astype(np.float64)[:, None] * W
    rms = w.config.norm == "rms"
    Mc = M if rms else M - M.mean(axis=0)  # LayerNorm's n sums to zero: only the centred columns matter
    U, S, Vt = np.linalg.svd(Mc, full_matrices=False)  # [E, 2DH], [2DH], [2DH, 2DH]
    # Directions a degenerate head ignores (S ~ 0) are zeroed, not dropped, so every head of a layer keeps
    # the same shapes (the survey stacks them): their U columns are arbitrary, not even orthogonal to 1.
    live = S > S[0] * 1e-7
    U, S = U * live, S * live
    room = E - (not rms)  # dims n may take: all of them, or those orthogonal to 1 (LayerNorm)
    if live.sum() >= room:  # the top-up of the lift needs one more (heads sharing a key head count it once)
        raise OptionError(f"head space needs q/k columns spanning fewer than {room} of n_embd = {E} dims, these "
                          f"heads' span {live.sum()}; use `solver` embedding.")
    c = first(w.ln_b).astype(np.float64) @ W + np.concatenate([w.b_q, w.b_k], axis=-1).reshape(-1)
    # Orthogonal to U (and 1): a fixed vector minus its projections (1/sqrt(E) and U are orthonormal).
    r = np.cos(np.arange(E) * 2.399963)  # deterministic, no special alignment with anything
    basis = U if rms else np.concatenate([np.full((E, 1), E**-0.5), U], axis=1)
    e = r - basis @ (basis.T @ r)
    e = e - basis @ (basis.T @ e)  # second pass: orthogonality to float64 rounding
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    pos = w.pos[0] if group else w.pos
    return HeadSpace(f32(U), f32(S[:, None] * Vt), f32(c), f32(e / np.linalg.norm(e)), pos, w.config,
                     w.w_q.shape[0] if group else 0)


def ball(p, n_embd):  # [..., T, 2D] -> z with every row inside |z| <= sqrt(n_embd)
    R2 = jnp.float32(n_embd)
    sq = jnp.sum(p * p, axis=-1, keepdims=True)
    return p * jnp.sqrt(R2 / jnp.maximum(sq, R2))  # no |p| on its own: finite gradient at p = 0


def check_z(p, hs: HeadSpace) -> None:
    """Refuse, by shape alone (so also under jit and vmap), a p that is not one sequence [T, 2 d_head (H)] the model
    has positions for: batches go through jax.vmap."""
    P, n = hs.U.shape[1], hs.config.n_positions
    if np.ndim(p) != 2 or np.shape(p)[1] != P or not 1 <= np.shape(p)[0] <= n:
        raise BadInputError(f"z must be one sequence [T, {P}] with T in 1..{n}, got shape {np.shape(p)}; batch with "
                            "jax.vmap.")


def headspace_qk(p, hs: HeadSpace):  # [T, P] -> R q, R k: [T, D] each ([H, T, D] for a group), as kernel.rotated_qk
    check_z(p, hs)
    return rotated_sides(rows(ball(p, hs.config.n_embd), hs), hs)


def rows(z, hs: HeadSpace):  # [..., T, 2D H] z -> y = z S V^T + c, the unrotated [q~ k~] rows
    return z @ hs.SVt + hs.c


def scores(q, k):  # R q, R k [..., T, D] -> [..., T, T] q k^T / sqrt(D), as kernel.head_logits
    return q @ jnp.swapaxes(k, -1, -2) / jnp.sqrt(q.shape[-1])


def rotated_sides(y, hs: HeadSpace):  # [T, 2D H] rows q~1 k~1 q~2 k~2 ... -> R q, R k: [T, D] each ([H, T, D])
    y = y.reshape(y.shape[0], max(hs.heads, 1), 2, -1).transpose(2, 1, 0, 3)  # [2, H, T, D]
    q, k = rotate(y[0], hs.config), rotate(y[1], hs.config)
    return (q, k) if hs.heads else (q[0], k[0])


@flax.struct.dataclass
class QKSpace:
    """The q/k solver (`solver.py`): y, the head's unrotated [q~ k~] rows themselves (per head of a group), kept
    reachable by `project` and lifted through z = (y - c) (S V^T)^+."""

    PROJECT_EVERY = 20  # steps: the zscore display's rows leave the ball on the way (benchmarks/RESULTS.md)
    EIGEN_MATMULS = False  # XLA's YNNPACK fusions run its step faster on a CPU (cpu.py)

    space: HeadSpace
    pinv: jax.Array  # [2 d_head H, 2 d_head H] (S V^T)^+: y - c -> z

    def width(self, w) -> int:
        return self.space.width(w)

    def init(self, keys, w, d, scale, warm_start: bool = False):  # [S, B] keys, [B, (H,) L, L] -> [S, B, L, P]
        """Head space's starts (`HeadSpace.init`), in y."""
        return self.y(ball(self.space.init(keys, w, d, scale, warm_start), self.space.config.n_embd))

    def y(self, z):  # [..., L, P] z -> y
        return rows(z, self.space)

    def z(self, p):  # [..., L, P] y -> the z it is reached from where it is reachable
        return (p - self.space.c) @ self.pinv

    def logits(self, p, w):  # [L, P] -> [H, L, L]
        return scores(*self.qk(p, w))

    def qk(self, p, w):  # [L, P] -> R q, R k: [H, L, D] each
        check_z(p, self.space)
        q, k = rotated_sides(p, self.space)
        return (q, k) if self.space.heads else (q[None], k[None])

    def project(self, p):  # [..., L, P] -> the reachable y nearest in z: every row's z clipped to the ball
        return self.y(ball(self.z(p), self.space.config.n_embd))

    def to_x(self, p):  # [L, P] -> [L, E]
        return lift(self.z(p), self.space)

    def check(self, result, index) -> None:
        self.space.check(result, index)


def qk_space(w: HeadWeights) -> QKSpace:
    """The q/k solver of a layer-0 head or group (`head_space`'s refusals)."""
    hs = head_space(w)
    return QKSpace(hs, jnp.asarray(np.linalg.pinv(np.asarray(hs.SVt, np.float64)), jnp.float32))


def headspace_logits(p, hs: HeadSpace):  # [T, P] -> [T, T] ([H, T, T] for a group), as kernel.head_logits
    return scores(*headspace_qk(p, hs))


def lift(p, hs: HeadSpace, scale: float = LIFT_SCALE):  # [T, 2D] -> X [T, n_embd]
    """A real input embedding whose head logits (through the ordinary kernel) are those of `p`."""
    check_z(p, hs)
    n = ball(p, hs.config.n_embd) @ hs.U.T  # [T, E]; |n| = |z| but for directions a degenerate head ignores
    top_up = jnp.sqrt(jnp.maximum(hs.config.n_embd - jnp.sum(n * n, axis=-1, keepdims=True), 0.0))
    n = n + top_up * hs.e_perp  # |n|^2 = n_embd (and zero mean), so Norm(scale n) = n
    return scale * n - positions(hs.pos, p.shape[0])


def to_head_space(x, hs: HeadSpace):  # [T, n_embd] -> [T, 2D]: the z an embedding shows the head
    check_embedding(x, hs)
    u = x + positions(hs.pos, x.shape[0])
    if hs.config.norm != "rms":
        u = u - jnp.mean(u, axis=-1, keepdims=True)
    n = u * jax.lax.rsqrt(jnp.mean(u * u, axis=-1, keepdims=True) + hs.config.eps)
    return n @ hs.U


def random_z(key, hs: HeadSpace, L: int, scale):  # -> [L, 2D]: to_head_space(X) of X ~ N(0, scale^2) [L, n_embd]
    """The z of a random embedding, drawn without the embedding: 2D + 2 normals per row instead of n_embd.

    to_head_space gives z = (P u) U / rms(P u) with u = X + pos and P the norm's centring (none for RMSNorm).
    U's live columns are orthonormal and orthogonal to 1 (LayerNorm), its dead ones zero, so
        P u U = pos U + scale g        g ~ N(0, 1) on the live columns, 0 on the dead
        |P u|^2 = |P u U|^2 + |r|^2     r: P u outside U's columns, m = n_embd - 1 - live dims (no 1: RMSNorm)
        |r|^2 = (a + scale h)^2 + scale^2 chi^2_(m - 1)    a = |pos's part outside U and 1|, h ~ N(0, 1)
    (r's Gaussian part split along pos's direction and across it). chi^2_k is drawn as Wilson and Hilferty's cube
    of a normal, k (1 - 2/(9k) + e sqrt(2/(9k)))^3: its quantiles within ~1e-3 at k = 30 and ~1e-5 at k = 1500
    (gpt2-xl), where jax.random.chisquare's rejection loop adds seconds to every compile."""
    c = hs.config
    E = c.n_embd
    pos = jnp.broadcast_to(positions(hs.pos, L), (L, E))
    if c.norm != "rms":
        pos = pos - jnp.mean(pos, axis=-1, keepdims=True)
    posU = pos @ hs.U  # [L, 2D]: the same for every key (vmap leaves it unbatched)
    a = jnp.sqrt(jnp.maximum(jnp.sum(pos * pos, -1) - jnp.sum(posU * posU, -1), 0.0))  # [L]
    live = jnp.any(hs.U != 0, axis=0)  # [2D]
    k = E - (c.norm != "rms") - jnp.sum(live) - 1  # dims of r across pos's direction
    noise = jax.random.normal(key, (L, posU.shape[1] + 2))  # [L, 2D + 2]: g, h, e
    g, h, e = noise[:, :-2], noise[:, -2], noise[:, -1]
    v = 2 / (9 * k)
    chi2 = k * jnp.maximum(1 - v + e * jnp.sqrt(v), 0.0) ** 3
    zu = posU + scale * g * live  # [L, 2D]: P u U
    ms = (jnp.sum(zu * zu, -1) + jnp.square(a + scale * h) + scale**2 * chi2) / E  # [L]: mean((P u)^2)
    return zu * jax.lax.rsqrt(ms + c.eps)[:, None]


def svd_start(d, space: HeadSpace):  # [L, L] desired logits -> [L, 2D] head-space start
    """q k^T / sqrt(D) = the best rank-D approximation of d, made reachable: q = U_D (s sqrt(D))^1/2,
    k = V_D (s sqrt(D))^1/2, unrotated (R^-1: the logits rotate them back), then z solves
    z S V^T = [q~ k~] - c and rows outside the ball are clipped. With fewer tokens L than D, d has rank at most L:
    q and k are its L factors, padded with zero columns to D."""
    D = space.SVt.shape[0] // 2
    U, s, Vt = jnp.linalg.svd(d)
    root = jnp.sqrt(s[:D] * jnp.sqrt(D))
    pad = lambda a: jnp.pad(a, ((0, 0), (0, D - a.shape[1])))  # noqa: E731  [L, min(L, D)] -> [L, D]
    q, k = (rotate(pad(a), space.config, inverse=True) for a in (U[:, :D] * root, Vt[:D].T * root))
    y = jnp.concatenate([q, k], axis=1) - space.c
    return y @ jnp.linalg.pinv(space.SVt)
