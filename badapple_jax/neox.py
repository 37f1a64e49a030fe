"""GPT-NeoX / Pythia (config.json model_type "gpt_neox"): keys, layout and block (SPEC 15).

Keys are GPTNeoXModel's, with or without `gpt_neox.`; nn.Linear weights are stored [out, in] and
transposed here. The fused `query_key_value` interleaves per head: its output axis is [n_head, 3, d_head]
(q, k, v of head 0, then of head 1, ...), not GPT-2's [3, n_embd]. No position table: LayerNorm reads
`inputs_embeds` directly, and RoPE turns the first rotary_pct of each head's dims (rotary.py). Blocks are
pre-LN; with use_parallel_residual both branches read the block's input:
    parallel:  x + attn(LN_1(x)) + mlp(LN_2(x))       sequential:  y = x + attn(LN_1(x));  y + mlp(LN_2(y))
"""
import dataclasses

import jax.numpy as jnp

from badapple_jax.layers import (
    ACTIVATIONS,
    attention_maps,
    layer_norm,
    linear,
    merge_heads,
    split_heads,
)
from badapple_jax.model import Family, LayerWeights, ModelConfig, read_config, read_flag
from badapple_jax.rotary import read_rope, rotate

NAMES = {"num_hidden_layers": "n_layer", "num_attention_heads": "n_head", "hidden_size": "n_embd",
         "max_position_embeddings": "n_positions", "intermediate_size": "n_inner",
         "vocab_size": "n_vocab"}  # config.json name -> ModelConfig field
RANDOM = {  # EleutherAI/pythia-160m's config.json (its training config: EleutherAI/pythia models/160M/pythia-160m.yml)
    "pythia-160m": ModelConfig(n_layer=12, n_head=12, n_embd=768, n_positions=2048, eps=1e-5, family="gpt_neox",
                               n_inner=3072, act="gelu", rotary_dim=16, rope_theta=10000.0, parallel=True),
}


def config(raw: dict, path) -> ModelConfig:
    bias = read_flag(raw, path, "attention_bias", True)
    c = read_config(raw, path, NAMES, optional=("vocab_size",), eps=("layer_norm_eps", 1e-5),
                    act=("hidden_act", "gelu"), family="gpt_neox", causal=True, qkv_bias=bias, out_bias=bias,
                    parallel=read_flag(raw, path, "use_parallel_residual", True))
    return dataclasses.replace(c, **read_rope(raw, path, c.d_head, theta="rotary_emb_base",
                                              fraction=("rotary_pct", 0.25)))


def attention_inputs(c: ModelConfig, i: int) -> dict[str, tuple[int, ...]]:  # what block i's heads read of it
    E, p = c.n_embd, f"layers.{i}."
    out = {p + "input_layernorm.weight": (E,), p + "input_layernorm.bias": (E,),
           p + "attention.query_key_value.weight": (3 * E, E)}
    return out | ({p + "attention.query_key_value.bias": (3 * E,)} if c.qkv_bias else {})


def blocks(c: ModelConfig, n: int) -> dict[str, tuple[int, ...]]:  # every key of blocks 0..n-1
    E, I = c.n_embd, c.d_mlp
    out = {}
    for i in range(n):
        p = f"layers.{i}."
        out |= attention_inputs(c, i) | {
            p + "attention.dense.weight": (E, E), p + "post_attention_layernorm.weight": (E,),
            p + "post_attention_layernorm.bias": (E,), p + "mlp.dense_h_to_4h.weight": (I, E),
            p + "mlp.dense_h_to_4h.bias": (I,), p + "mlp.dense_4h_to_h.weight": (E, I), p + "mlp.dense_4h_to_h.bias": (E,)}
        out |= {p + "attention.dense.bias": (E,)} if c.out_bias else {}
    return out


def shapes(c: ModelConfig, layer: int) -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> shape of everything `layer`'s heads read (nn.Linear as [out, in])."""
    return blocks(c, layer) | attention_inputs(c, layer)


def checkpoint(c: ModelConfig, n_layer: int) -> tuple[dict, dict]:
    """Every key of a GPTNeoXModel with `n_layer` layers, and its config.json in transformers 4's names, which 5
    reads too. The vocabulary is one token: the display feeds embeddings (inputs_embeds), never token ids."""
    E = c.n_embd
    keys = blocks(c, n_layer) | {"embed_in.weight": (1, E), "final_layer_norm.weight": (E,),
                                 "final_layer_norm.bias": (E,)}
    config = {"model_type": "gpt_neox", "architectures": ["GPTNeoXModel"], "num_hidden_layers": n_layer,
              "num_attention_heads": c.n_head, "hidden_size": E, "intermediate_size": c.d_mlp,
              "max_position_embeddings": c.n_positions, "layer_norm_eps": c.eps, "hidden_act": c.act,
              "rotary_pct": c.rotary_dim / c.d_head, "rotary_emb_base": c.rope_theta,
              "use_parallel_residual": c.parallel, "attention_bias": c.qkv_bias, "vocab_size": 1,
              "bos_token_id": 0, "eos_token_id": 0, "tie_word_embeddings": False}
    return keys, config


def layer(a: dict, c: ModelConfig, L: int) -> LayerWeights:
    E, H, D = c.n_embd, c.n_head, c.d_head

    def ln(name):
        return {"g": a[name + ".weight"], "b": a[name + ".bias"]}

    def lin(name, bias=True):  # {w: [in, out], b: [out]}, b zero where the model has none
        w = a[name + ".weight"].T
        return {"w": w, "b": a[name + ".bias"] if bias else jnp.zeros(w.shape[1], w.dtype)}

    def qkv(i):  # the fused projection -> q, k, v as {w [E, H D], b [H D]}, head-major columns like GPT-2's
        fused = lin(f"layers.{i}.attention.query_key_value", c.qkv_bias)
        w, b = fused["w"].reshape(E, H, 3, D), fused["b"].reshape(H, 3, D)
        return [{"w": w[:, :, j].reshape(E, H * D), "b": b[:, j].reshape(H * D)} for j in range(3)]

    def block(i):
        p = f"layers.{i}."
        q, k, v = qkv(i)
        return {"ln_1": ln(p + "input_layernorm"), "q": q, "k": k, "v": v, "dense": lin(p + "attention.dense", c.out_bias),
                "ln_2": ln(p + "post_attention_layernorm"), "fc": lin(p + "mlp.dense_h_to_4h"),
                "proj": lin(p + "mlp.dense_4h_to_h")}

    q, k, _ = qkv(L)
    norm = ln(f"layers.{L}.input_layernorm")
    return LayerWeights(pos=jnp.zeros((0, E), jnp.float32), ln_g=norm["g"], ln_b=norm["b"], w_q=q["w"], b_q=q["b"],
                        w_k=k["w"], b_k=k["b"], blocks=tuple(block(i) for i in range(L)), config=c)


def block(x, p: dict, c: ModelConfig):  # [T, E] -> [T, E]
    h = layer_norm(x, p["ln_1"]["g"], p["ln_1"]["b"], c.eps)
    q, k, v = (split_heads(linear(h, p[n]), c.n_head) for n in "qkv")  # [H, T, D] each
    a = linear(merge_heads(attention_maps(rotate(q, c), rotate(k, c), causal=True) @ v), p["dense"])
    y = x if c.parallel else x + a  # the MLP's input: the block's own (parallel) or after the attention
    m = linear(ACTIVATIONS[c.act](linear(layer_norm(y, p["ln_2"]["g"], p["ln_2"]["b"], c.eps), p["fc"])), p["proj"])
    return x + a + m


def init(key: str, x, c: ModelConfig):
    """N(0, 0.02), with LayerNorms and biases randomised too so no term vanishes."""
    if "layernorm" in key or "layer_norm" in key:
        return 1 + 0.1 * x if key.endswith(".weight") else 0.02 * x
    return 0.02 * x


FAMILY = Family(config=config, shapes=shapes, layer=layer, block=block, init=init, checkpoint=checkpoint,
                vocabulary="embed_in.weight", prefixes=("gpt_neox.",), random=RANDOM)
