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


def rms_norm(x, g, b, eps):  # [..., E] -> [..., E]: Llama's RMSNorm (no mean removed; b is zero there)
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps) * g + b


NORMS = {"layer": layer_norm, "rms": rms_norm}  # ModelConfig.norm -> function


def gelu_tanh(x):  # GPT-2's "gelu_new": the tanh approximation
    return jax.nn.gelu(x, approximate=True)


def gelu_erf(x):  # BERT's "gelu": the exact form
    return jax.nn.gelu(x, approximate=False)


# config.json's activation name -> function, as transformers' ACT2FN names them
ACTIVATIONS = {"gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh, "gelu": gelu_erf, "relu": jax.nn.relu,
               "silu": jax.nn.silu}


def visible(T: int, causal: bool) -> np.ndarray:  # -> [T, T] bool: the columns each row of a head may see
    return np.tri(T, dtype=bool) if causal else np.ones((T, T), bool)


def masked_softmax(A, causal):  # [..., T, T] logits -> [..., T, T] rows summing to 1 over the visible columns
    return jax.nn.softmax(jnp.where(visible(A.shape[-1], causal), A, -jnp.inf), axis=-1)


def linear(x, p):  # [..., n_in] -> [..., n_out]
    return x @ p["w"] + p["b"]


def split_heads(a, n):  # [T, n D] -> [n, T, D]
    return a.reshape(a.shape[0], n, -1).transpose(1, 0, 2)


def merge_heads(a):  # [n, T, D] -> [T, n D]
    return a.transpose(1, 0, 2).reshape(a.shape[1], -1)


def shared(kv, n_head):  # [n_kv, T, D] -> [n_head, T, D]: query head h reads key head h // (n_head / n_kv)
    return kv if kv.shape[0] == n_head else jnp.repeat(kv, n_head // kv.shape[0], axis=0)


def attention_maps(q, k, causal):  # [H, T, D], [n_kv, T, D] -> [H, T, T]: every head's attention map
    return masked_softmax(q @ shared(k, q.shape[0]).transpose(0, 2, 1) / jnp.sqrt(q.shape[-1]), causal)


def attend(q, k, v, n_head, causal):  # [T, E] each -> [T, E]: every head's output, before the projection
    q, k, v = (split_heads(a, n_head) for a in (q, k, v))  # [H, T, D]
    return merge_heads(attention_maps(q, k, causal) @ v)
