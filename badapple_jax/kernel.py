"""The display: one attention head of a frozen transformer as pure JAX functions (SPEC sections 3, 13, 15).

    h = Norm(u)  with  u = X + pos[:T]  (layer 0)  or the stream after blocks 0..L-1 (the family's)
    q = h W_q + b_q ;  k = h W_k + b_k                        # [T, d_head] each; k of the query's key head
    A = (R q)(R k)^T / sqrt(d_head)                           # [T, T] logits; R_i rotates row i (RoPE)
    attention = softmax(A over the visible columns)           # causal: -inf above the diagonal

For GPT-2, pos is wpe and the norm LayerNorm ln_1, no rotation; for BERT, pos + type[0] and the embedding
LayerNorm; for Llama no pos, RMSNorm and RoPE (families.py). References: picoGPT's `gpt2.py`, transformers'
`modeling_gpt2.py`, `modeling_bert.py`, `modeling_llama.py` (eager attention). Every function takes one
sequence; batch dimensions come from `jax.vmap`.
"""
import jax
import jax.numpy as jnp

from badapple_jax.errors import BadInputError
from badapple_jax.families import FAMILIES
from badapple_jax.layers import NORMS, attention_maps, masked_softmax, split_heads
from badapple_jax.model import HeadWeights, LayerWeights, positions
from badapple_jax.rotary import rotate


def check_embedding(x, w: HeadWeights | LayerWeights) -> None:
    """Refuse, by shape alone (so also under jit and vmap), an x that is not one [T, n_embd] sequence the model
    has positions for: batches go through jax.vmap."""
    E, P = w.config.n_embd, w.config.n_positions
    if x.ndim != 2 or x.shape[1] != E:
        raise BadInputError(f"x must be one sequence of embeddings [T, n_embd={E}], got shape {tuple(x.shape)}; "
                         "batch with jax.vmap.")
    if not 1 <= x.shape[0] <= P:
        raise BadInputError(f"x has {x.shape[0]} tokens, the model has positions for 1..{P}.")


def residual(x, w: HeadWeights | LayerWeights):  # [T, E] -> [T, E]: the stream the target layer's norm reads
    check_embedding(x, w)
    u = x + positions(w.pos, x.shape[0])
    block = FAMILIES[w.config.family].block
    for params in w.blocks:
        u = block(u, params, w.config)
    return u


def head_qk(x, w: HeadWeights):  # [T, E] -> q, k: [T, d_head] each, before the rotation
    """q, k = Norm(u) [W_q W_k] + [b_q b_k], the norm folded into the projection.

    LayerNorm(u) W = rstd (u W' - mu 1^T W') + b W with W' = diag(g) W: projecting u itself and
    centring afterwards leaves no reduction over n_embd in the backward pass (~25% cheaper on CPU).
    The stop_gradient changes no derivative: the one of mean((u - mu)^2) through mu is a multiple
    of mean(u - mu) = 0; it only keeps autodiff from computing that zero at full width.
    RMSNorm(u) W = rrms u W' + b W likewise, with no mean to remove."""
    u = residual(x, w)
    W = jnp.concatenate([w.w_q, w.w_k], axis=1)  # [E, 2 d_head]: one pass over u, forward and backward
    Wg = w.ln_g[:, None] * W
    c = w.ln_b @ W + jnp.concatenate([w.b_q, w.b_k])
    if w.config.norm == "rms":
        ms = jnp.mean(jnp.square(u), axis=-1, keepdims=True)  # [T, 1]
        qk = jax.lax.rsqrt(ms + w.config.eps) * (u @ Wg) + c
    else:
        mu = jnp.mean(u, axis=-1, keepdims=True)  # [T, 1]
        var = jnp.mean(jnp.square(u - jax.lax.stop_gradient(mu)), axis=-1, keepdims=True)
        qk = jax.lax.rsqrt(var + w.config.eps) * (u @ Wg - mu * jnp.sum(Wg, axis=0)) + c
    return jnp.split(qk, 2, axis=-1)


def rotated_qk(x, w: HeadWeights):  # [T, E] -> R q, R k: [T, d_head] each, the two sides of the logits
    return tuple(rotate(a, w.config) for a in head_qk(x, w))


@jax.jit
def head_logits(x, w: HeadWeights):  # [T, E] -> [T, T] raw attention scores (pre-mask, pre-softmax)
    """Attention logits A = (R q)(R k)^T / sqrt(d_head) of one head for the input embedding `x`."""
    q, k = rotated_qk(x, w)
    return q @ k.T / jnp.sqrt(q.shape[-1])


@jax.jit
def attention(x, w: HeadWeights):  # [T, E] -> [T, T] attention map; a causal model's is zero above the diagonal
    """The head's attention map softmax(A over the columns each row sees) for the input `x`."""
    return masked_softmax(head_logits(x, w), w.config.causal)


@jax.jit
def layer_attention(x, w: LayerWeights):  # [T, E] -> [H, T, T]: every head of the layer, as output_attentions
    """All heads' attention maps at once, from one pass through the blocks below (transformers' layout)."""
    c = w.config
    h = NORMS[c.norm](residual(x, w), w.ln_g, w.ln_b, c.eps)  # [T, E]
    q = rotate(split_heads(h @ w.w_q + w.b_q, c.n_head), c)  # [H, T, D]
    k = rotate(split_heads(h @ w.w_k + w.b_k, c.n_kv), c)  # [n_kv, T, D]
    return attention_maps(q, k, c.causal)
