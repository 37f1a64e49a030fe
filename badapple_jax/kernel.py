"""The display: one attention head of a frozen GPT-2 as pure JAX functions (SPEC section 3).

    h = LayerNorm(u)  with  u = X + wpe[:T]  (layer 0)  or the residual stream after blocks 0..L-1
    A = (h W_q + b_q)(h W_k + b_k)^T / sqrt(d_head)           # [T, T] logits
    attention = softmax(A with -inf above the diagonal)

References: picoGPT's `gpt2.py` and Hugging Face transformers' `modeling_gpt2.py` (eager attention).
Every function takes one sequence; batch dimensions come from `jax.vmap`.
"""
import jax
import jax.numpy as jnp

from badapple_jax.weights import HeadWeights


def layer_norm(x, g, b, eps):  # [..., E] -> [..., E]
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * g + b


def gelu(x):  # GPT-2's "gelu_new": the tanh approximation
    return 0.5 * x * (1.0 + jnp.tanh(jnp.sqrt(2.0 / jnp.pi) * (x + 0.044715 * x**3)))


def causal_mask(T):  # -> [T, T] bool, True where j <= i
    return jnp.tril(jnp.ones((T, T), dtype=bool))


def causal_softmax(A):  # [..., T, T] logits -> [..., T, T] rows summing to 1 over j <= i
    A = jnp.where(causal_mask(A.shape[-1]), A, -jnp.inf)
    return jax.nn.softmax(A, axis=-1)


def mha(x, c_attn, c_proj, n_head):  # [T, E] -> [T, E]: all heads of one block, as GPT-2 runs them
    T, E = x.shape
    q, k, v = jnp.split(x @ c_attn["w"] + c_attn["b"], 3, axis=-1)  # [T, E] each
    q, k, v = (a.reshape(T, n_head, E // n_head).transpose(1, 0, 2) for a in (q, k, v))  # [H, T, D]
    a = causal_softmax(q @ k.transpose(0, 2, 1) / jnp.sqrt(E // n_head))  # [H, T, T]
    return (a @ v).transpose(1, 0, 2).reshape(T, E) @ c_proj["w"] + c_proj["b"]


def transformer_block(x, ln_1, attn, ln_2, mlp, *, n_head, eps):  # [T, E] -> [T, E]
    x = x + mha(layer_norm(x, ln_1["g"], ln_1["b"], eps), **attn, n_head=n_head)
    h = gelu(layer_norm(x, ln_2["g"], ln_2["b"], eps) @ mlp["c_fc"]["w"] + mlp["c_fc"]["b"])
    return x + h @ mlp["c_proj"]["w"] + mlp["c_proj"]["b"]


def check_embedding(x, w: HeadWeights) -> None:
    """Refuse, by shape alone (so also under jit and vmap), an x that is not one [T, n_embd] sequence the model
    has positions for: batches go through jax.vmap."""
    E, P = w.config.n_embd, w.config.n_positions
    if x.ndim != 2 or x.shape[1] != E:
        raise ValueError(f"x must be one sequence of embeddings [T, n_embd={E}], got shape {tuple(x.shape)}; "
                         "batch with jax.vmap.")
    if not 1 <= x.shape[0] <= P:
        raise ValueError(f"x has {x.shape[0]} tokens, the model has positions for 1..{P}.")


def residual(x, w: HeadWeights):  # [T, E] -> [T, E]: the stream entering the target layer's ln_1
    check_embedding(x, w)
    u = x + w.wpe[: x.shape[0]]
    for block in w.blocks:
        u = transformer_block(u, **block, n_head=w.config.n_head, eps=w.config.eps)
    return u


def head_qk(x, w: HeadWeights):  # [T, E] -> q, k: [T, d_head] each
    """q, k = LayerNorm(u) [W_q W_k] + [b_q b_k], the LayerNorm folded into the projection.

    LayerNorm(u) W = rstd (u W' - mu 1^T W') + b W with W' = diag(g) W: projecting u itself and
    centring afterwards leaves no reduction over n_embd in the backward pass (~25% cheaper on CPU).
    The stop_gradient changes no derivative: the one of mean((u - mu)^2) through mu is a multiple
    of mean(u - mu) = 0; it only keeps autodiff from computing that zero at full width."""
    u = residual(x, w)
    mu = jnp.mean(u, axis=-1, keepdims=True)  # [T, 1]
    var = jnp.mean(jnp.square(u - jax.lax.stop_gradient(mu)), axis=-1, keepdims=True)
    W = jnp.concatenate([w.w_q, w.w_k], axis=1)  # [E, 2 d_head]: one pass over u, forward and backward
    Wg = w.ln_g[:, None] * W
    c = w.ln_b @ W + jnp.concatenate([w.b_q, w.b_k])
    qk = jax.lax.rsqrt(var + w.config.eps) * (u @ Wg - mu * jnp.sum(Wg, axis=0)) + c
    return jnp.split(qk, 2, axis=-1)


@jax.jit
def head_logits(x, w: HeadWeights):  # [T, E] -> [T, T] raw attention scores (pre-mask, pre-softmax)
    """Attention logits A = q k^T / sqrt(d_head) of one head for the input embedding `x`."""
    q, k = head_qk(x, w)
    return q @ k.T / jnp.sqrt(q.shape[-1])


@jax.jit
def attention(x, w: HeadWeights):  # [T, E] -> [T, T] attention map, zero above the diagonal
    """The head's causal attention map softmax(A masked above the diagonal) for the input `x`."""
    return causal_softmax(head_logits(x, w))
