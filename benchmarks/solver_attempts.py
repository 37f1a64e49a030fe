"""Head-space solvers tried for issue 16 and left out, timed against Adam on the same frames.

    python benchmarks/solver_attempts.py [--start 1200] [--frames 16] [--out benchmarks/solver_attempts.json]

Every method starts from the same random starts (those of the pipeline), fits the sink display's desired
logits of the same consecutive Bad Apple!! frames with `random:gpt2-xl` layer 0 head 0 in head space (SPEC 9),
and is scored by lifting to X and going through the ordinary kernel: median loss and PSNR of the picture. The
times cover the optimisation alone (vmapped over the frames, compile excluded), not the per-frame lift, pictures
and fidelity of a render. The methods:

- adam: the reference's optimiser (two phases, warm restarts, b2 0.999) and the fast one (one cosine cycle);
- als: alternating least squares with a free offset per row (centring), exact per-row solves by Cholesky of
  prefix / suffix Gram sums, optionally followed by an Adam polish;
- gauss-newton: Levenberg-Marquardt steps solved by CG on jax.linearize's JVP and its transpose, optionally
  with a Jacobi preconditioner in [q k] space and Marquardt damping;
- lbfgs: optax's L-BFGS with its zoom line search, or with a fixed step;
- svd warm start, and two Adam phases for one start.
A plot of median PSNR against time goes beside the JSON.
"""
import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

import badapple_jax as bj  # noqa: E402
from badapple_jax.headspace import ball  # noqa: E402
from badapple_jax.optimize import initial_embeddings, multi_start, run_phase, svd_start  # noqa: E402


FAST = dict(lr=0.5, b2=0.9, schedule="cosine", seeds=1)


class Case:
    """The frames, their desired logits, the head in head space and the random starts z0 [B, L, 2D]."""

    def __init__(self, frames):
        self.w = bj.pick_head(bj.load_layer("random:gpt2-xl")[0], 0)
        self.hs = bj.head_space(self.w)
        self.enc = bj.Sink(True)
        self.frames = frames
        self.d = jnp.asarray(self.enc.desired(frames))  # [B, L, L]
        self.mask = jnp.asarray(self.enc.mask(frames.shape[-1]))  # [L, L]
        B, L = len(frames), self.enc.tokens(frames.shape[-1])
        x0 = initial_embeddings(0, jnp.arange(B), 1, L, self.w.config.n_embd, 0.1)[0]
        self.z0 = jax.vmap(bj.to_head_space, in_axes=(0, None))(x0, self.hs)

    def loss(self, z, d):  # [L, 2D], [L, L] -> the head-space loss of one frame
        return bj.frame_loss(bj.headspace_logits(z, self.hs), d, self.mask)

    def residual(self, z, d):  # [L, 2D] -> [L, L] the centred logits' error over the mask
        return jnp.where(self.mask, bj.row_centred(bj.headspace_logits(z, self.hs), self.mask) - d, 0.0)

    def score(self, z) -> dict:
        x = jax.vmap(bj.lift, in_axes=(0, None))(z, self.hs)
        logits = jax.vmap(bj.head_logits, in_axes=(0, None))(x, self.w)
        loss = np.asarray(bj.frame_loss(logits, self.d, self.mask))
        picture = self.enc.picture(bj.masked_softmax(logits, True))
        psnr = bj.psnr(picture, self.frames, self.enc.region(self.frames.shape[-1]))
        return {"median_loss": float(np.median(loss)), "median_psnr": float(np.median(psnr)),
                "min_psnr": float(psnr.min())}


def timed(fn, *args):  # -> seconds of the second call, its result
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0, out


def adam(pr: Case, settings: bj.Settings):  # multi-start as the pipeline runs it, z back from the lifted X
    def run(z0, d):
        r = multi_start(pr.w, pr.hs, bj.Problem(d[None], pr.mask, jnp.ones(1, bool)), z0[None, None], settings)
        return bj.to_head_space(r.x[0], pr.hs)
    return run


def polish(pr: Case, z, d, steps: int, lr: float):  # one cosine cycle of the fast Adam from z
    settings = bj.Settings(steps=steps, lr=lr, **{k: v for k, v in FAST.items() if k != "lr"})
    problem = bj.Problem(d[None, None], pr.mask, jnp.ones(1, bool))  # d: [B, H, L, L]
    return run_phase(z[None], pr.w, pr.hs, problem, settings, steps)[0][0]


def als(pr: Case, sweeps: int, ridge: float, polish_steps: int = 0, polish_lr: float = 0.01):
    """Queries and offsets for fixed keys, then keys for fixed queries and offsets, each row / column its own
    least-squares problem. The sink display's rows see prefixes of the columns (row r: 0..r, row 0 none)."""
    D = pr.hs.SVt.shape[0] // 2
    seen = pr.mask.astype(jnp.float32)  # [L, L]
    to_z = jnp.linalg.inv(pr.hs.SVt)

    def solve(G, b):  # [N, n, n] SPD, [N, n] -> [N, n]
        return jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(G), True), b[..., None])[..., 0]

    def sweep(y, d):
        k = y[:, D:] / jnp.sqrt(D)
        phi = jnp.concatenate([k, -jnp.ones((len(k), 1))], 1)  # [L, D + 1]: q_i . k_j - s_i
        G = jnp.cumsum(phi[:, :, None] * phi[:, None, :], axis=0)  # row r: columns 0..r
        qs = solve(G + ridge * jnp.eye(D + 1), (seen * d) @ phi)
        q, s = qs[:, :D], qs[:, D]
        qh = q / jnp.sqrt(D) * seen.any(1, keepdims=True)
        H = jnp.cumsum((qh[:, :, None] * qh[:, None, :])[::-1], axis=0)[::-1]  # column j: rows j..L-1
        H = H.at[0].set(H[1])  # the sink's column is seen by every display row, as column 1
        k = solve(H + ridge * jnp.eye(D), (seen * (d + s[:, None])).T @ qh)
        return jnp.concatenate([q, k], 1)

    def run(z0, d):
        y = ball(z0, pr.w.config.n_embd) @ pr.hs.SVt + pr.hs.c
        y = jax.lax.fori_loop(0, sweeps, lambda _, y: sweep(y, d), y)
        z = ball((y - pr.hs.c) @ to_z, pr.w.config.n_embd)
        return polish(pr, z, d, polish_steps, polish_lr) if polish_steps else z
    return run


def gauss_newton(pr: Case, outer: int, cg: int, jacobi: bool):
    """Levenberg-Marquardt: (J^T J + mu M) step = -J^T r by `cg` CG iterations, M = I or Marquardt's diagonal
    (then also the preconditioner), accepted where the loss falls."""
    SVt, D = pr.hs.SVt, pr.hs.SVt.shape[0] // 2
    to_z = jnp.linalg.inv(SVt)
    seen = pr.mask.astype(jnp.float32)

    def diagonal(z):  # [L, 2D]: J^T J's diagonal in [q k] space, floored (row 0's q has no entries)
        y = ball(z, pr.w.config.n_embd) @ SVt + pr.hs.c
        q, k = y[:, :D], y[:, D:]
        count = seen.sum(1, keepdims=True)
        k_mean = seen @ k / jnp.maximum(count, 1)
        diag = jnp.concatenate([(seen @ (k * k) - count * k_mean ** 2) / D, seen.T @ (q * q) / D], 1)
        return diag + 1e-2 * diag.mean()

    def run(z0, d):
        F = lambda z: jnp.sum(pr.residual(z, d) ** 2)  # noqa: E731

        def step(carry, _):
            z, mu, f = carry
            r, jvp = jax.linearize(lambda v: pr.residual(v, d), z)
            vjp = jax.linear_transpose(jvp, z)
            if jacobi:
                diag = diagonal(z)
                damp = lambda v: ((v @ SVt) * diag) @ SVt.T  # noqa: E731
                precondition = lambda v: ((v @ to_z.T) / (diag * (1 + mu))) @ to_z  # noqa: E731
            else:
                damp, precondition = (lambda v: v), None
            delta, _ = jax.scipy.sparse.linalg.cg(lambda v: vjp(jvp(v))[0] + mu * damp(v), -vjp(r)[0],
                                                  maxiter=cg, M=precondition)
            z_new = ball(z + delta, pr.w.config.n_embd)
            f_new = F(z_new)
            better = f_new < f
            return (jnp.where(better, z_new, z), jnp.where(better, mu * 0.3, mu * 4), jnp.minimum(f_new, f)), None

        return jax.lax.scan(step, (z0, 1e-2, F(z0)), length=outer)[0][0]
    return run


def lbfgs(pr: Case, iterations: int, memory: int, linesearch: bool):
    def run(z0, d):
        f = lambda z: pr.loss(z, d)  # noqa: E731
        if linesearch:  # the line search keeps the value and gradient at the new point in its state
            opt = optax.lbfgs(memory_size=memory, linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=10))
            value_and_grad = optax.value_and_grad_from_state(f)
        else:
            opt = optax.lbfgs(learning_rate=1.0, memory_size=memory, linesearch=None)
            value_and_grad = lambda z, state: jax.value_and_grad(f)(z)  # noqa: E731

        def step(carry, _):
            z, state = carry
            value, grad = value_and_grad(z, state=state)
            updates, state = opt.update(grad, state, z, value=value, grad=grad, value_fn=f)
            return (optax.apply_updates(z, updates), state), None

        z = jax.lax.scan(step, (z0, opt.init(z0)), length=iterations)[0][0]
        return ball(z, pr.w.config.n_embd)
    return run


def svd_warm(pr: Case, steps: int, lr: float):
    return lambda z0, d: polish(pr, svd_start(d, pr.hs), d, steps, lr)


def two_phases(pr: Case, steps: int):
    first = steps // 4
    return lambda z0, d: polish(pr, polish(pr, z0, d, first, 0.5), d, steps - first, 0.5)


def attempts(pr: Case) -> dict:
    reference = dict(solver="headspace", seeds=1)
    return {
        **{("adam, reference's optimiser", f"{n} steps"): adam(pr, bj.Settings(steps=n, **reference))
           for n in (300, 400, 600, 1200)},
        **{("adam, fast optimiser", f"{n} steps"): adam(pr, bj.Settings(steps=n, solver="headspace", **FAST))
           for n in (100, 150, 200, 300, 400)},
        **{("als", f"{n} sweeps"): als(pr, n, 1e-3) for n in (1, 3, 5, 10)},
        ("als", "3 sweeps, ridge 1e-4"): als(pr, 3, 1e-4),
        **{("als + adam polish", f"{n} sweeps + {m} steps"): als(pr, n, 1e-3, m) for n, m in
           ((2, 50), (2, 70), (2, 100), (3, 100), (2, 150), (3, 150))},
        ("als + adam polish", "2 sweeps + 100 steps at lr 0.5"): als(pr, 2, 1e-3, 100, 0.5),
        **{("gauss-newton", f"{o} x {c} CG"): gauss_newton(pr, o, c, False) for o, c in
           ((10, 10), (20, 10), (20, 20), (30, 20))},
        **{("gauss-newton, jacobi", f"{o} x {c} CG"): gauss_newton(pr, o, c, True) for o, c in ((20, 10), (40, 5))},
        **{("lbfgs, line search", f"{n} iterations, memory {m}"): lbfgs(pr, n, m, True)
           for n, m in ((100, 10), (200, 10), (300, 20))},
        ("lbfgs, fixed step", "300 iterations, memory 10"): lbfgs(pr, 300, 10, False),
        **{("svd warm start + fast adam", f"150 steps, lr {lr}"): svd_warm(pr, 150, lr) for lr in (0.5, 0.2)},
        **{("two adam phases, one start", f"{n // 4} + {n - n // 4} steps"): two_phases(pr, n) for n in (150, 200)},
    }


def plot(rows: list, title: str) -> Figure:
    """Median PSNR against time: Adam's budgets as lines, every other attempt as points."""
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["ms_per_frame"], r["median_psnr"]) for r in rows if r["method"] == method)
        line = method.startswith("adam")
        ax.plot(*zip(*pts), marker="o" if line else "s", ls="-" if line else "", label=method)
    ax.set(xscale="log", xlabel="optimisation ms per frame", ylabel="median PSNR (dB)", title=title)
    ax.legend(fontsize=7)
    return fig


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default="badapple")
    p.add_argument("--start", type=int, default=1200)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--out", type=Path, default=Path("benchmarks/solver_attempts.json"))
    args = p.parse_args()
    frames = bj.read_clip(args.input, max_frames=args.start + args.frames).frames[args.start:]
    pr = Case(frames)
    rows = []
    for (method, budget), run in attempts(pr).items():
        seconds, z = timed(jax.jit(jax.vmap(run)), pr.z0, pr.d)
        rows.append({"method": method, "budget": budget, "ms_per_frame": 1e3 * seconds / len(frames), **pr.score(z)})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{len(frames)} consecutive frames from {args.start}, random:gpt2-xl layer 0 head 0, "
          f"{jax.devices()[0].device_kind}\n| method | budget | ms / frame | median PSNR | worst | median loss |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['budget']} | {r['ms_per_frame']:.0f} | {r['median_psnr']:.1f} | "
              f"{r['min_psnr']:.1f} | {r['median_loss']:.3g} |")
    plot(rows, f"{len(frames)} consecutive frames, random:gpt2-xl, {jax.devices()[0].device_kind}").savefig(
        args.out.with_suffix(".png"), dpi=110)
    args.out.write_text(json.dumps({"rows": rows, "args": vars(args) | {"out": str(args.out)},
                                    "device": jax.devices()[0].device_kind}, indent=1))


if __name__ == "__main__":
    main()
