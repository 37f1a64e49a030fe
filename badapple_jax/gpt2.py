"""GPT-2 (config.json model_type "gpt2"): its keys, weight layout and block (SPEC section 2).

Keys are Hugging Face's, with or without `transformer.`; Conv1D weights are stored [in, out], so
they are used as they are. Blocks are pre-LN: x += attn(ln_1(x)); x += mlp(ln_2(x)); causal mask.
Layer L's heads read ln_1 of block L applied to the residual stream X + wpe after blocks 0..L-1.
"""
import math

import jax.numpy as jnp

from badapple_jax.layers import ACTIVATIONS, attend, layer_norm, linear
from badapple_jax.model import Family, LayerWeights, ModelConfig, read_config

NAMES = {"n_layer": "n_layer", "n_head": "n_head", "n_embd": "n_embd", "n_positions": "n_positions",
         "n_inner": "n_inner", "vocab_size": "n_vocab"}  # config.json name -> ModelConfig field
RANDOM = {  # SPEC section 2
    "gpt2": ModelConfig(n_layer=12, n_head=12, n_embd=768, n_positions=1024, eps=1e-5),
    "gpt2-medium": ModelConfig(n_layer=24, n_head=16, n_embd=1024, n_positions=1024, eps=1e-5),
    "gpt2-large": ModelConfig(n_layer=36, n_head=20, n_embd=1280, n_positions=1024, eps=1e-5),
    "gpt2-xl": ModelConfig(n_layer=48, n_head=25, n_embd=1600, n_positions=1024, eps=1e-5),
}


def config(raw: dict, path) -> ModelConfig:
    return read_config(raw, path, NAMES, optional=("n_inner", "vocab_size"), eps=("layer_norm_epsilon", 1e-5),
                       act=("activation_function", "gelu_new"), family="gpt2", causal=True)


def attention_inputs(c: ModelConfig, i: int) -> dict[str, tuple[int, ...]]:  # what block i's heads read of it
    E = c.n_embd
    return {f"h.{i}.ln_1.weight": (E,), f"h.{i}.ln_1.bias": (E,),
            f"h.{i}.attn.c_attn.weight": (E, 3 * E), f"h.{i}.attn.c_attn.bias": (3 * E,)}


def blocks(c: ModelConfig, n: int) -> dict[str, tuple[int, ...]]:  # every key of blocks 0..n-1, and wpe
    E, I = c.n_embd, c.d_mlp
    out = {"wpe.weight": (c.n_positions, E)}
    for i in range(n):
        out |= attention_inputs(c, i) | {
            f"h.{i}.attn.c_proj.weight": (E, E), f"h.{i}.attn.c_proj.bias": (E,),
            f"h.{i}.ln_2.weight": (E,), f"h.{i}.ln_2.bias": (E,),
            f"h.{i}.mlp.c_fc.weight": (E, I), f"h.{i}.mlp.c_fc.bias": (I,),
            f"h.{i}.mlp.c_proj.weight": (I, E), f"h.{i}.mlp.c_proj.bias": (E,)}
    return out


def shapes(c: ModelConfig, layer: int) -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> shape of everything `layer`'s heads read (Conv1D as [in, out])."""
    return blocks(c, layer) | attention_inputs(c, layer)


def checkpoint(c: ModelConfig, n_layer: int) -> tuple[dict, dict]:
    """Every key of a GPT2Model with `n_layer` blocks, and its config.json. The vocabulary is one token:
    the display feeds embeddings (inputs_embeds), never token ids."""
    E, I = c.n_embd, c.d_mlp
    keys = blocks(c, n_layer) | {"wte.weight": (1, E), "ln_f.weight": (E,), "ln_f.bias": (E,)}
    config = {"model_type": "gpt2", "architectures": ["GPT2Model"], "n_layer": n_layer, "n_head": c.n_head,
              "n_embd": E, "n_positions": c.n_positions, "n_inner": I, "layer_norm_epsilon": c.eps,
              "activation_function": c.act, "vocab_size": 1, "bos_token_id": 0, "eos_token_id": 0}
    return keys, config


def layer(a: dict, c: ModelConfig, L: int) -> LayerWeights:
    """c_attn holds Q, K and V blocks of n_embd columns: the heads need the first two."""
    E = c.n_embd

    def block(i):  # picoGPT's layout: LayerNorms as {g, b}, linears as {w, b}
        ln = lambda name: {"g": a[f"h.{i}.{name}.weight"], "b": a[f"h.{i}.{name}.bias"]}  # noqa: E731
        lin = lambda name: {"w": a[f"h.{i}.{name}.weight"], "b": a[f"h.{i}.{name}.bias"]}  # noqa: E731
        return {"ln_1": ln("ln_1"), "attn": {"c_attn": lin("attn.c_attn"), "c_proj": lin("attn.c_proj")},
                "ln_2": ln("ln_2"), "mlp": {"c_fc": lin("mlp.c_fc"), "c_proj": lin("mlp.c_proj")}}

    w, b = a[f"h.{L}.attn.c_attn.weight"], a[f"h.{L}.attn.c_attn.bias"]
    return LayerWeights(pos=a["wpe.weight"], ln_g=a[f"h.{L}.ln_1.weight"], ln_b=a[f"h.{L}.ln_1.bias"],
                        w_q=w[:, :E], b_q=b[:E], w_k=w[:, E: 2 * E], b_k=b[E: 2 * E],
                        blocks=tuple(block(i) for i in range(L)), config=c)


def block(x, p: dict, c: ModelConfig):  # [T, E] -> [T, E]
    h = layer_norm(x, p["ln_1"]["g"], p["ln_1"]["b"], c.eps)
    q, k, v = jnp.split(linear(h, p["attn"]["c_attn"]), 3, axis=-1)
    x = x + linear(attend(q, k, v, c.n_head, causal=True), p["attn"]["c_proj"])
    h = layer_norm(x, p["ln_2"]["g"], p["ln_2"]["b"], c.eps)
    return x + linear(ACTIVATIONS[c.act](linear(h, p["mlp"]["c_fc"])), p["mlp"]["c_proj"])


def init(key: str, x, c: ModelConfig):
    """GPT-2's initialisation, with LayerNorms and biases randomised too so no term vanishes."""
    if ".ln_" in key:
        return 1 + 0.1 * x if key.endswith(".weight") else 0.02 * x
    if key.endswith("c_proj.weight"):  # GPT-2 scales the residual projections by 1/sqrt(2 n_layer)
        return x * (0.02 / math.sqrt(2 * c.n_layer))
    return 0.02 * x


FAMILY = Family(config=config, shapes=shapes, layer=layer, block=block, init=init, checkpoint=checkpoint,
                vocabulary="wte.weight", prefixes=("transformer.",), random=RANDOM)
