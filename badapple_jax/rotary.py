"""Rotary position embedding (RoPE, SPEC section 15): position enters through the rotation of q and k.

Row i's first `rotary_dim` dims of q (and k) are turned pairwise by the angles i * inv_freq, with
inv_freq_m = theta^(-2m / rotary_dim) and transformers' `rotate_half` pairing (dim m with dim m + r/2):

    R_i x = x cos(i f) + rotate_half(x) sin(i f),   rotate_half([a, b]) = [-b, a]

so q_i . k_j depends on i and j only through j - i. rope_scaling type llama3 stretches the long
wavelengths (reference: transformers' `_compute_llama3_parameters`). Angles and frequencies are
computed on the host in float32, as transformers computes them, and enter the traced program as constants.
"""
import math

import jax.numpy as jnp
import numpy as np

from badapple_jax.errors import BadInputError
from badapple_jax.model import ModelConfig, quoted

LLAMA3 = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def inv_freq(c: ModelConfig) -> np.ndarray:  # -> [rotary_dim / 2] the angle per position of each pair of dims
    r = c.rotary_dim
    f = 1.0 / c.rope_theta ** (np.arange(0, r, 2, dtype=np.float32) / r)
    if c.rope_llama3:  # long wavelengths slowed by `factor`, short ones kept, a smooth blend between
        factor, low, high, context = c.rope_llama3
        wavelen = 2 * math.pi / f
        slowed = np.where(wavelen > context / low, f / factor, f)
        smooth = (context / wavelen - low) / (high - low)
        medium = (wavelen >= context / high) & (wavelen <= context / low)
        f = np.where(medium, (1 - smooth) * slowed / factor + smooth * slowed, slowed)
    return f.astype(np.float32)


def rotate(x, c: ModelConfig, inverse: bool = False):  # [..., T, D] -> [..., T, D]: row i turned by R_i (R_i^-1)
    r = c.rotary_dim
    if not r:
        return x
    angle = np.arange(x.shape[-2], dtype=np.float32)[:, None] * inv_freq(c)  # [T, r/2]
    angle = np.concatenate([angle, angle], axis=-1)  # [T, r]: as transformers' cat((freqs, freqs))
    cos, sin = np.cos(angle), np.sin(angle) * (-1.0 if inverse else 1.0)
    a, b = x[..., : r // 2], x[..., r // 2: r]
    turned = x[..., :r] * cos + jnp.concatenate([-b, a], axis=-1) * sin
    return jnp.concatenate([turned, x[..., r:]], axis=-1)


def _number(value, path, name, low=0.0):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > low):
        raise BadInputError(f"{path}: {name} is {quoted(value)}, expected a number above {low:g}.")
    return float(value)


def read_rope(raw: dict, path, d_head: int, *, theta: str = "rope_theta", fraction: tuple = (None, 1.0)) -> dict:
    """ModelConfig's rotary fields from config.json, as transformers 4 writes them (`rope_theta`, `rope_scaling`;
    GPT-NeoX: `rotary_emb_base`, `rotary_pct`) or transformers 5 (`rope_parameters`); `theta` names the base and
    `fraction` the (name, default) of the rotated share of each head, None where the family rotates all of it."""
    params = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    name = "rope_parameters" if raw.get("rope_parameters") else "rope_scaling"
    if not isinstance(params, dict) or any(isinstance(v, dict) for v in params.values()):
        raise BadInputError(f"{path}: {name} is {quoted(params)}; one set of RoPE parameters for every layer is "
                            "supported.")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", "llama3"):
        raise BadInputError(f"{path}: {name} type {quoted(kind)} is not supported; supported: default, llama3.")
    base = _number(params.get("rope_theta", raw.get(theta, 10000.0)), path, theta, 1.0)
    llama3 = ()
    if kind == "llama3":
        given = {"original_max_position_embeddings": raw.get("max_position_embeddings"), **params}
        llama3 = tuple(_number(given.get(k), path, f"{name}.{k}") for k in LLAMA3)
        if not llama3[1] < llama3[2]:
            raise BadInputError(f"{path}: {name}.low_freq_factor must be below high_freq_factor.")
    share = params.get("partial_rotary_factor", raw.get(fraction[0], fraction[1]) if fraction[0] else 1.0)
    if fraction[0] is None and share != 1.0:
        raise BadInputError(f"{path}: partial_rotary_factor is {quoted(share)}; this family rotates whole heads (1).")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise BadInputError(f"{path}: {fraction[0]} is {quoted(share)}, expected a number in [0, 1].")
    rotary_dim = int(d_head * share)
    if rotary_dim % 2:
        raise BadInputError(f"{path}: {fraction[0]} {share} rotates {rotary_dim} dims of each head, an odd number.")
    return {"rotary_dim": rotary_dim, "rope_theta": base, "rope_llama3": llama3}
