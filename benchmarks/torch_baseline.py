"""PyTorch baseline: SPEC sections 3-6 exactly as the reference ran them, written here from the spec.

One chunk of frames at a time; seeds one after another, each with a fresh Adam and a fresh
CosineAnnealingWarmRestarts; ONE seed kept per chunk by the chunk's mean loss; refine; fp32;
torch.bmm for q k^T; the chunk's MEAN loss is what gets differentiated. Weights come as arrays
from badapple_jax's own loader (saved with `save_head`), so both sides use the very same numbers.
This module imports no JAX: it runs in its own process when benchmarked.
"""
import math

import numpy as np
import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

HEAD_KEYS = ("pos", "ln_g", "ln_b", "w_q", "b_q", "w_k", "b_k")


def save_head(path, w) -> None:
    """badapple_jax HeadWeights (layer 0) -> .npz the baseline reads."""
    np.savez(path, eps=w.config.eps, **{k: np.asarray(getattr(w, k)) for k in HEAD_KEYS})


def load_head(path, device) -> dict:
    with np.load(path) as f:
        head = {k: torch.from_numpy(f[k]).to(device) for k in HEAD_KEYS}
        head["eps"] = float(f["eps"])
    return head


def desired_logits(frames):  # [B, T, T] in [0, 1] -> [B, T, T] (SPEC section 4)
    T = frames.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool, device=frames.device).tril()
    p = torch.where(mask, frames + 1e-8, 0.0)
    p = p / p.sum(-1, keepdim=True)
    d = torch.where(mask, torch.log(p + 1e-8), 0.0)
    d = d - d.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
    return torch.where(mask, d, 0.0)


def logits(X, head):  # [B, T, E] -> [B, T, T] (SPEC section 3)
    T, E = X.shape[1], X.shape[2]
    h = torch.nn.functional.layer_norm(X + head["pos"][:T], (E,), head["ln_g"], head["ln_b"], head["eps"])
    q = h @ head["w_q"] + head["b_q"]
    k = h @ head["w_k"] + head["b_k"]
    return torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.shape[-1])


def frame_losses(A, d):  # [B, T, T] x2 -> [B] (SPEC section 5)
    T = A.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool, device=A.device).tril()
    c = A - torch.where(mask, A, 0.0).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
    return torch.where(mask, (c - d) ** 2, 0.0).sum((-2, -1)) / (T * (T + 1) / 2)


def phase(X0, d, head, n_steps, lr, lr_min):  # -> X [B, T, E], trace [n_steps, B]
    """Fresh Adam (PyTorch defaults) and warm-restart cosine, stepped after every update."""
    X = X0.clone().requires_grad_(True)
    opt = torch.optim.Adam([X], lr=lr)
    sched = CosineAnnealingWarmRestarts(opt, T_0=max(n_steps // 4, 50), T_mult=1, eta_min=lr_min)
    trace = []
    for _ in range(n_steps):
        opt.zero_grad(set_to_none=True)
        losses = frame_losses(logits(X, head), d)
        losses.mean().backward()
        opt.step()
        sched.step()
        trace.append(losses.detach())
    return X.detach(), torch.stack(trace)


def optimize_chunk(frames, head, x0, *, steps=1500, lr=0.1, lr_min=1e-4):
    """frames [B, T, T], starts x0 [S, B, T, E] -> dict of final X, per-frame loss, kept seed, traces."""
    d = desired_logits(frames)
    explore = steps // 4
    ends, explore_traces = [], []
    for s in range(x0.shape[0]):  # seeds one after another, as the reference
        X, trace = phase(x0[s], d, head, explore, lr, lr_min)
        ends.append(X)
        explore_traces.append(trace)
    explore_loss = torch.stack([t[-1] for t in explore_traces])  # [S, B]
    best = int(torch.argmin(explore_loss.mean(dim=1)))  # one seed for the whole chunk
    X, refine_trace = phase(ends[best], d, head, steps - explore, lr, lr_min)
    return {"x": X, "loss": refine_trace[-1], "seed": best, "explore_loss": explore_loss,
            "explore_trace": torch.stack(explore_traces), "refine_trace": refine_trace}


def initial_starts(seed, n_seeds, B, T, E, init_scale, device):  # -> [S, B, T, E]
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n_seeds, B, T, E, generator=g) * init_scale).to(device)
