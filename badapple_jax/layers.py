"""Transformer building blocks as pure functions, shared by the model families (picoGPT's style).

Every function takes one sequence; batch dimensions come from `jax.vmap`. Linear layers are {w, b}
with y = x w + b (nn.Linear checkpoints are transposed when loaded).
"""
import jax
import jax.numpy as jnp
import numpy as np


def layer_norm(x, g, b, eps):  # [..., E] -> [..., E]
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * g + b


def gelu_tanh(x):  # GPT-2's "gelu_new": the tanh approximation
    return jax.nn.gelu(x, approximate=True)


def gelu_erf(x):  # BERT's "gelu": the exact form
    return jax.nn.gelu(x, approximate=False)


# config.json's activation name -> function, as transformers' ACT2FN names them
ACTIVATIONS = {"gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh, "gelu": gelu_erf, "relu": jax.nn.relu}


def visible(T: int, causal: bool) -> np.ndarray:  # -> [T, T] bool: the columns each row of a head may see
    return np.tri(T, dtype=bool) if causal else np.ones((T, T), bool)


def masked_softmax(A, causal):  # [..., T, T] logits -> [..., T, T] rows summing to 1 over the visible columns
    return jax.nn.softmax(jnp.where(visible(A.shape[-1], causal), A, -jnp.inf), axis=-1)


def linear(x, p):  # [..., n_in] -> [..., n_out]
    return x @ p["w"] + p["b"]


def attend(q, k, v, n_head, causal):  # [T, E] each -> [T, E]: every head's output, before the projection
    T, E = q.shape
    q, k, v = (a.reshape(T, n_head, E // n_head).transpose(1, 0, 2) for a in (q, k, v))  # [H, T, D]
    a = masked_softmax(q @ k.transpose(0, 2, 1) / jnp.sqrt(E // n_head), causal)  # [H, T, T]
    return (a @ v).transpose(1, 0, 2).reshape(T, E)
