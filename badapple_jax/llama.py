"""Llama-family decoders (config.json model_type "llama", "qwen2", "mistral"): keys, layout and block (SPEC 15).

Keys are LlamaModel's, with or without `model.` (a ...ForCausalLM adds it); nn.Linear weights are stored
[out, in] and transposed here. No position table: `inputs_embeds` go straight into the first RMSNorm, and
position enters through the rotation of q and k (rotary.py). Grouped-query attention: n_kv key and value
heads, query head h reads key head h // (n_head / n_kv). Blocks are pre-norm, with a SwiGLU MLP:
    x += o_proj(attn(RMSNorm_1(x)));   x += down(act(gate(h)) * up(h)),  h = RMSNorm_2(x)
Llama has biases where config.json says (attention_bias, mlp_bias); Qwen2 on q, k and v only; Mistral none.
Mistral (and Qwen2 with use_sliding_window) masks columns more than sliding_window back, which the display
does not model: their sequences are limited to sliding_window tokens (n_positions), where the mask is causal.
"""
import dataclasses

import jax.numpy as jnp

from badapple_jax.errors import BadInputError
from badapple_jax.layers import (
    ACTIVATIONS,
    attention_maps,
    linear,
    merge_heads,
    rms_norm,
    shared,
    split_heads,
)
from badapple_jax.model import (
    Family,
    LayerWeights,
    ModelConfig,
    is_int,
    quoted,
    read_config,
    read_flag,
)
from badapple_jax.rotary import LLAMA3, read_rope, rotate

NAMES = {"num_hidden_layers": "n_layer", "num_attention_heads": "n_head", "hidden_size": "n_embd",
         "max_position_embeddings": "n_positions", "intermediate_size": "n_inner", "num_key_value_heads": "n_kv_head",
         "head_dim": "head_dim", "vocab_size": "n_vocab"}  # config.json name -> ModelConfig field
ARCHITECTURES = {"llama": "LlamaModel", "qwen2": "Qwen2Model", "mistral": "MistralModel"}
EXTRA = {"llama": lambda c: {"attention_bias": c.qkv_bias, "mlp_bias": c.mlp_bias},  # export's own fields
         "qwen2": lambda c: {"use_sliding_window": False}, "mistral": lambda c: {"sliding_window": None}}
LLAMA = {"eps": 1e-5, "family": "llama", "causal": True, "act": "silu", "norm": "rms", "qkv_bias": False,
         "out_bias": False, "mlp_bias": False}
RANDOM = {  # the config.json of each hub repo (values as published there; also in transformers' docs)
    # meta-llama/Llama-3.2-1B
    "llama-3.2-1b": ModelConfig(n_layer=16, n_head=32, n_embd=2048, n_positions=131072, n_inner=8192, n_kv_head=8,
                                head_dim=64, rotary_dim=64, rope_theta=500000.0,
                                rope_llama3=(32.0, 1.0, 4.0, 8192.0), **LLAMA),
    # HuggingFaceTB/SmolLM2-135M
    "smollm2-135m": ModelConfig(n_layer=30, n_head=9, n_embd=576, n_positions=8192, n_inner=1536, n_kv_head=3,
                                head_dim=64, rotary_dim=64, rope_theta=100000.0, **LLAMA),
    # Qwen/Qwen2.5-0.5B (use_sliding_window false: plain causal attention over its 32768 positions)
    "qwen2.5-0.5b": ModelConfig(n_layer=24, n_head=14, n_embd=896, n_positions=32768, n_inner=4864, n_kv_head=2,
                                rotary_dim=64, rope_theta=1000000.0,
                                **{**LLAMA, "eps": 1e-6, "family": "qwen2", "qkv_bias": True}),
}


def config_of(family: str):
    def config(raw: dict, path) -> ModelConfig:
        if family == "llama":
            bias, mlp_bias = read_flag(raw, path, "attention_bias", False), read_flag(raw, path, "mlp_bias", False)
            biases = {"qkv_bias": bias, "out_bias": bias, "mlp_bias": mlp_bias}
        else:  # Qwen2: q, k and v biases, hard-wired as transformers' Qwen2Attention has them; Mistral: none
            biases = {"qkv_bias": family == "qwen2", "out_bias": False, "mlp_bias": False}
        c = read_config(raw, path, NAMES, optional=("num_key_value_heads", "head_dim", "vocab_size"),
                        eps=("rms_norm_eps", 1e-6), act=("hidden_act", "silu"), family=family, causal=True,
                        norm="rms", **biases)
        c = dataclasses.replace(c, **read_rope(raw, path, c.d_head))
        window = raw.get("sliding_window")
        if family == "qwen2" and not (read_flag(raw, path, "use_sliding_window", False)
                                      or "sliding_attention" in (raw.get("layer_types") or ())):
            window = None
        if window is not None:
            if not is_int(window) or window < 1:
                raise BadInputError(f"{path}: sliding_window is {quoted(window)}, expected a positive integer.")
            c = dataclasses.replace(c, n_positions=min(c.n_positions, window))
        return c
    return config


def attention_inputs(c: ModelConfig, i: int) -> dict[str, tuple[int, ...]]:  # what block i's heads read of it
    E, p = c.n_embd, f"layers.{i}."
    out = {p + "input_layernorm.weight": (E,), p + "self_attn.q_proj.weight": (c.n_head * c.d_head, E),
           p + "self_attn.k_proj.weight": (c.n_kv * c.d_head, E)}
    if c.qkv_bias:
        out |= {p + "self_attn.q_proj.bias": (c.n_head * c.d_head,), p + "self_attn.k_proj.bias": (c.n_kv * c.d_head,)}
    return out


def blocks(c: ModelConfig, n: int) -> dict[str, tuple[int, ...]]:  # every key of blocks 0..n-1
    E, I = c.n_embd, c.d_mlp
    out = {}
    for i in range(n):
        p = f"layers.{i}."
        out |= attention_inputs(c, i) | {p + "self_attn.v_proj.weight": (c.n_kv * c.d_head, E),
                                         p + "self_attn.o_proj.weight": (E, c.n_head * c.d_head),
                                         p + "post_attention_layernorm.weight": (E,), p + "mlp.gate_proj.weight": (I, E),
                                         p + "mlp.up_proj.weight": (I, E), p + "mlp.down_proj.weight": (E, I)}
        out |= {p + "self_attn.v_proj.bias": (c.n_kv * c.d_head,)} if c.qkv_bias else {}
        out |= {p + "self_attn.o_proj.bias": (E,)} if c.out_bias else {}
        out |= {p + "mlp.gate_proj.bias": (I,), p + "mlp.up_proj.bias": (I,),
                p + "mlp.down_proj.bias": (E,)} if c.mlp_bias else {}
    return out


def shapes(c: ModelConfig, layer: int) -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> shape of everything `layer`'s heads read (nn.Linear as [out, in])."""
    return blocks(c, layer) | attention_inputs(c, layer)


def checkpoint(c: ModelConfig, n_layer: int) -> tuple[dict, dict]:
    """Every key of a LlamaModel (Qwen2Model, MistralModel) with `n_layer` blocks, and its config.json, in
    transformers 4's names, which 5 reads too. The vocabulary is one token: the display feeds embeddings."""
    E = c.n_embd
    keys = blocks(c, n_layer) | {"embed_tokens.weight": (1, E), "norm.weight": (E,)}
    scaling = {"rope_type": "llama3", **dict(zip(LLAMA3, c.rope_llama3))} if c.rope_llama3 else None
    config = {"model_type": c.family, "architectures": [ARCHITECTURES[c.family]], "num_hidden_layers": n_layer,
              "num_attention_heads": c.n_head, "num_key_value_heads": c.n_kv, "hidden_size": E,
              "intermediate_size": c.d_mlp, "max_position_embeddings": c.n_positions, "rms_norm_eps": c.eps,
              "hidden_act": c.act, "rope_theta": c.rope_theta, "rope_scaling": scaling, "vocab_size": 1,
              "bos_token_id": 0, "eos_token_id": 0, "tie_word_embeddings": False,
              **({"head_dim": c.head_dim} if c.head_dim else {}), **EXTRA[c.family](c)}
    return keys, config


def layer(a: dict, c: ModelConfig, L: int) -> LayerWeights:
    def lin(name, bias):  # {w: [in, out], b: [out]}, b zero where the model has none
        w = a[name + ".weight"].T
        return {"w": w, "b": a[name + ".bias"] if bias else jnp.zeros(w.shape[1], w.dtype)}

    def block(i):
        p = f"layers.{i}."
        return {"ln_1": a[p + "input_layernorm.weight"], "ln_2": a[p + "post_attention_layernorm.weight"],
                **{n: lin(p + "self_attn." + n + "_proj", c.qkv_bias) for n in "qkv"},
                "o": lin(p + "self_attn.o_proj", c.out_bias),
                **{n: lin(p + "mlp." + n + "_proj", c.mlp_bias) for n in ("gate", "up", "down")}}

    p = f"layers.{L}.self_attn."
    q, k = lin(p + "q_proj", c.qkv_bias), lin(p + "k_proj", c.qkv_bias)
    g = a[f"layers.{L}.input_layernorm.weight"]
    return LayerWeights(pos=jnp.zeros((0, c.n_embd), g.dtype), ln_g=g, ln_b=jnp.zeros_like(g), w_q=q["w"],
                        b_q=q["b"], w_k=k["w"], b_k=k["b"], blocks=tuple(block(i) for i in range(L)), config=c)


def block(x, p: dict, c: ModelConfig):  # [T, E] -> [T, E]
    h = rms_norm(x, p["ln_1"], 0.0, c.eps)
    q = rotate(split_heads(linear(h, p["q"]), c.n_head), c)  # [H, T, D]
    k = rotate(split_heads(linear(h, p["k"]), c.n_kv), c)  # [n_kv, T, D]
    v = shared(split_heads(linear(h, p["v"]), c.n_kv), c.n_head)  # [H, T, D]
    x = x + linear(merge_heads(attention_maps(q, k, causal=True) @ v), p["o"])
    h = rms_norm(x, p["ln_2"], 0.0, c.eps)
    return x + linear(ACTIVATIONS[c.act](linear(h, p["gate"])) * linear(h, p["up"]), p["down"])


def init(key: str, x, c: ModelConfig):
    """Llama's N(0, 0.02) initialisation, with norms and biases randomised too so no term vanishes."""
    if key.endswith("norm.weight"):
        return 1 + 0.1 * x
    return 0.02 * x


FAMILIES = {name: Family(config=config_of(name), shapes=shapes, layer=layer, block=block, init=init,
                         checkpoint=checkpoint, vocabulary="embed_tokens.weight", prefixes=("model.",),
                         random={k: v for k, v in RANDOM.items() if v.family == name})
            for name in ARCHITECTURES}
